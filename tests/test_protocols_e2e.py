"""
End to end across protocols, on real servers: a destination on XRootD that is down, failover to S3, the
executor replicating S3 -> XRootD (verified by the server's adler32), registering, and removing the S3
copy; then the crash matrix's failover path, every crash point once, with its SEs on XRootD, S3 and WebDAV.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import S3Server, WebDavServer, XRootDServer, xrootd_server

from failover.catalog import CatalogSet, SQLiteCatalog
from failover.checksum import ChecksumType, checksum_file
from failover.crashtest import (
    SANDBOX_SES,
    SCENARIOS,
    CrashPoint,
    Sandbox,
    differences,
    read_crash_log,
    run_all,
)
from failover.crashtest.runner import run_forked
from failover.crashtest.snapshot import final_report
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.fsck import fsck
from failover.storage import StorageElement
from failover.storage.factory import storage_element
from failover.storage.s3 import S3StorageElement
from failover.storage.xrootd import XRootDStorageElement
from failover.testing import FaultInjector
from failover.workspace import DEFAULT_CATALOG
from fsm.crashpoints import CRASH_EXIT_CODE
from persistence.db import Durability, open_store
from states import UploadState

pytest_plugins = ["conftest_servers"]

ADLER32 = ChecksumType.ADLER32
LFN = "/vo/e2e/run7/out.root"
#: Retries at once: the test decides when the target comes back, not a clock.
AT_ONCE = ExecutorPolicy(backoff_base=0, jitter=0, lease_seconds=0)


@pytest.fixture
def own_xrootd() -> Iterator[XRootDServer]:
    """A private XRootD server (it starts in ~0.1 s): the test stops and restarts it."""
    with xrootd_server() as server:
        yield server


def _environment(home: Path, storage: dict[str, StorageElement]) -> Environment:
    home.mkdir(parents=True, exist_ok=True)
    store = open_store(home / "failover.db", durability=Durability.NORMAL)
    catalog = SQLiteCatalog(DEFAULT_CATALOG, home / "catalog.db", master=True, durability=Durability.NORMAL)
    return Environment(store=store, storage=storage, catalogs=CatalogSet([catalog]))


def _replicas(env: Environment, lfn: str) -> list[str]:
    return sorted(replica.se for replica in env.catalogs.get(DEFAULT_CATALOG).get_replicas(lfn))


def test_xrootd_down_fails_over_to_s3_and_the_executor_brings_it_back(
    own_xrootd: XRootDServer, s3: S3Server, tmp_path: Path
) -> None:
    """The whole failover story over the network, each step checked on the servers themselves."""
    target = storage_element("XRD-DISK", own_xrootd.url("e2e/XRD-DISK"), own_xrootd.options())
    spare = storage_element("S3-FAILOVER", s3.url(f"{tmp_path.name}/S3-FAILOVER"), s3.options())
    assert (type(target), type(spare)) == (XRootDStorageElement, S3StorageElement)
    env = _environment(tmp_path / "ws", {target.name: target, spare.name: spare})
    local = tmp_path / "job" / "out.root"
    local.parent.mkdir()
    local.write_bytes(b"reconstructed events\n" * 50_000)
    adler32 = checksum_file(local).hexdigest(ADLER32)

    own_xrootd.stop()
    client = FailoverTransfer(environment=env)
    result = client.transferAndRegisterFileWithFailover(
        local.name, str(local), LFN, target.name, spare.name, {}
    )
    assert result["OK"] and result["Value"]["uploadedSE"] == spare.name, result
    assert client.commitRequest()["OK"]
    assert env.uploads.load(LFN).state == UploadState.FAILED_OVER
    held = spare.stat(LFN)
    assert held is not None and held.size == local.stat().st_size
    assert held.checksums[ADLER32] == adler32  # x-amz-meta-adler32, read back with head_object

    Executor(env, AT_ONCE, seed=0).run_once()  # the target is still down: nothing moves yet
    assert env.uploads.load(LFN).state != UploadState.CLEANED
    assert spare.exists(LFN) and _replicas(env, LFN) == [spare.name]

    own_xrootd.start()
    time.sleep(1.1)  # the XRootD client tries a failed server again after its StreamErrorWindow (1 s)
    Executor(env, AT_ONCE, seed=0).run_once()
    assert env.uploads.load(LFN).state == UploadState.CLEANED
    replica = target.stat(LFN)
    assert replica is not None and replica.checksums == {ADLER32: adler32}  # the XRootD server's own
    assert not spare.exists(LFN) and _replicas(env, LFN) == [target.name]
    assert (own_xrootd.data / "e2e/XRD-DISK" / LFN.lstrip("/")).read_bytes() == local.read_bytes()
    report = fsck(env)
    assert report.ok, report.problems
    env.store.close()


# The crash matrix's failover path over real servers. Each case's runs are forked children (as in the
# crash matrix) that open their own clients: the clients of a parent process must not cross a fork.


#: Each sandbox SE's URL (a template of its root) and options; plain data, as it is sent to workers.
Layout = dict[str, tuple[str, dict[str, Any]]]


def _storage_layout(xrootd: XRootDServer, s3: S3Server, webdav: WebDavServer) -> Layout:
    """Where the sandbox SEs live: the destination on XRootD, the failover on S3, the others on WebDAV."""
    servers: dict[str, Any] = {"SE-A": xrootd, "FAIL-1": s3, "SE-B": webdav, "FAIL-2": webdav}
    assert set(servers) == set(SANDBOX_SES)
    return {name: (server.url("{root}"), server.options()) for name, server in servers.items()}


def _open_remote_sandbox(home: Path, layout: Layout) -> Sandbox:
    storage = {
        name: storage_element(name, url.format(root=f"{home.parent.name}/{home.name}/{name}"), options)
        for name, (url, options) in layout.items()
    }
    raw = _environment(home, storage)
    faults = FaultInjector()
    return Sandbox(home, raw, faults.wrap(raw), faults)


def _run_failover(home: Path, layout: Layout, crash: CrashPoint | None, log: Path | None) -> str | None:
    """One run of the failover scenario in a forked child; None when it ended as intended."""

    def work() -> None:
        box = _open_remote_sandbox(home, layout)
        SCENARIOS["failover"].run(box)
        if crash is None:
            (home / "report.json").write_text(json.dumps(final_report(box.raw)), encoding="utf-8")

    home.mkdir(parents=True, exist_ok=True)
    errors = home / "errors.txt"
    code = run_forked(work, crash=crash, log=log, errors=errors)
    wanted = CRASH_EXIT_CODE if crash is not None else 0
    if code == wanted:
        return None
    return f"{crash or 'restart'}: exit code {code}\n{errors.read_text() if errors.exists() else ''}"


def _case(point: CrashPoint, home: Path, layout: Layout, baseline: dict[str, Any]) -> list[str]:
    """Crash at ``point``, restart, and compare with the crash-free run."""
    for crash in (point, None):
        if (problem := _run_failover(home, layout, crash, None)) is not None:
            return [problem]
    report = json.loads((home / "report.json").read_text(encoding="utf-8"))
    problems = [f"fsck: {p['code']} {p['subject']}" for p in report["fsck"]["problems"]]
    problems += differences(baseline, report["snapshot"])
    if not problems:
        shutil.rmtree(home, ignore_errors=True)
    return [f"{point}: {line}" for line in problems]


def test_crash_matrix_failover_path_over_real_servers(
    xrootd: XRootDServer, s3: S3Server, webdav: WebDavServer, tmp_path: Path
) -> None:
    """
    Every crash point the failover scenario meets, once (its first hit), with SE-A on XRootD, FAIL-1 on
    S3 and the other SEs on WebDAV: each crashed run, restarted, leaves fsck clean and the same uploads,
    objects (with their adler32), catalog and requests as the crash-free run.
    """
    layout = _storage_layout(xrootd, s3, webdav)
    log = tmp_path / "dry" / "crash.log"
    assert _run_failover(tmp_path / "dry", layout, None, log) is None
    baseline = json.loads((tmp_path / "dry" / "report.json").read_text(encoding="utf-8"))
    assert baseline["fsck"]["problems"] == []
    assert set(baseline["snapshot"]["uploads"].values()) == {str(UploadState.CLEANED)}
    assert {name for name, *_ in baseline["snapshot"]["storage"]} == {"SE-A"}
    met = read_crash_log(log)
    # Each point once: its later hits (the job's second file) run the same code on the same servers.
    points = [point for point in met if point.nth == 1]
    assert len(met) >= 40 and len(points) >= 25, met
    jobs = [
        (point, tmp_path / f"case{index}", layout, baseline["snapshot"]) for index, point in enumerate(points)
    ]
    problems = [line for lines in run_all(_case, jobs, workers=2) for line in lines]
    assert problems == [], "\n".join(problems)
