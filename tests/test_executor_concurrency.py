"""
Three executors in real processes on one database: 200 failover uploads, each of its own job (200
requests), all end Cleaned, every effect happens exactly once and no request is run by two executors.

"Exactly once" is checked three ways: the storage and catalog contents, the calls each worker made
(summed over the workers), and the journal. "Never two executors" is checked on a log that SQLite
triggers, installed by the test, write inside the executors' own transactions: every change of a
request's status or lease, and the lease owner at every file update.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from executor_support import failed_over_workspace, job_content, job_lfn, lease_takers

from failover import fsck
from failover.environment import Environment
from persistence.journal import read_journal
from states import UploadState

WORKER = Path(__file__).with_name("executor_worker.py")
WORKERS = ("exec-1", "exec-2", "exec-3")
UPLOADS = 200
CATALOG = "LocalCatalog"
#: Upper bound on any wait for the workers; only reached when one hangs.
WAIT_S = 60.0


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Environment]:
    """A workspace with 200 committed failover uploads, one job (request) each, and the lease log."""
    env = failed_over_workspace(tmp_path / "ws", tmp_path / "job", UPLOADS)
    yield env
    env.store.close()


def _run_workers(home: Path, go_file: Path) -> list[dict[str, Any]]:
    """Start the workers, release them together once all are ready, and collect their reports."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "once", str(home), name, str(go_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in WORKERS
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        go_file.touch()
        deadline = time.monotonic() + WAIT_S
        outputs = [proc.communicate(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * len(procs), [err for _, err in outputs]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def test_three_executor_processes_run_every_upload_exactly_once(
    workspace: Environment, tmp_path: Path
) -> None:
    env = workspace

    reports = _run_workers(tmp_path / "ws", tmp_path / "go")

    # Every request taken by exactly one executor, and every file recorded under its taker's lease.
    takers = lease_takers(env)
    assert len(takers) == UPLOADS
    assert {r["name"]: r["taken"] for r in reports} == {
        name: sum(1 for taker in takers.values() if taker == name) for name in WORKERS
    }
    assert sum(1 for r in reports if r["taken"]) >= 2, "the executors did not overlap"
    recorded = env.store.conn.execute("SELECT request_id, owner FROM test_file_log").fetchall()
    assert len(recorded) == 2 * UPLOADS
    assert all(owner == takers[request_id] for request_id, owner in recorded)
    assert env.store.conn.execute(
        "SELECT status, COUNT(*), MAX(lease_owner) FROM requests GROUP BY status"
    ).fetchall() == [("Done", UPLOADS, None)]

    # Each effect once: summed over the workers, one copy, one registration, one removal per upload.
    calls: Counter[tuple[str, str]] = Counter()
    for report in reports:
        for target, operation, count in report["calls"]:
            calls[(target, operation)] += count
    once = [
        ("SE-A", "copy"),
        (CATALOG, "register_replica"),
        (CATALOG, "remove_replica"),
        ("FAIL-1", "remove"),
    ]
    assert [calls[key] for key in once] == [UPLOADS] * len(once)

    # Storage, catalog and journal agree.
    catalog = env.catalogs.get(CATALOG)
    for n in range(UPLOADS):
        target = env.se("SE-A").pfn(job_lfn(n)).removeprefix("file://")
        assert Path(target).read_bytes() == job_content(n)
        assert not env.se("FAIL-1").exists(job_lfn(n))
        assert [replica.se for replica in catalog.get_replicas(job_lfn(n))] == ["SE-A"]
        journal = [row.trigger for row in read_journal(env.store.conn, job_lfn(n))]
        assert journal == ["create", "failed_over", "replication_started", "cleaned"]
        assert env.uploads.load(job_lfn(n)).state == UploadState.CLEANED
    checked = fsck(env)
    assert checked.ok, checked.problems
