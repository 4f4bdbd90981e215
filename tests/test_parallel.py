"""upload_in_processes: the files shared among forked workers, each upload done once, in one request."""

from __future__ import annotations

import functools
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from batch_support import batch_files

from failover import Environment, UploadInterrupted, UploadResult, fsck, open_workspace, resume
from failover.batch import BatchItem
from failover.errors import InvalidInput
from failover.parallel import auto_jobs, cpu_quota, upload_in_processes, usable_cpus
from failover.testing import Fault, FaultInjector
from fsm.crashpoints import CRASH_AT
from persistence.requests import RequestHeader
from states import UploadState

SES = ("DEST", "FAIL")


def _open_noting_pid(home: Path, notes: Path) -> Environment:
    """The workers' opener: notes the process it runs in, then opens the workspace."""
    (notes / str(os.getpid())).touch()
    return open_workspace(home, ses=SES)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    open_workspace(home, ses=SES).store.close()  # created here, so the test can read it afterwards
    return home


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    notes = tmp_path / "opened-in"
    notes.mkdir()
    return notes


@pytest.mark.parametrize(
    ("files", "cpus", "jobs"),
    [(0, 4, 1), (1, 8, 1), (256, 8, 1), (257, 8, 2), (2000, 2, 2), (2000, 1, 1), (5000, 16, 4)],
)
def test_auto_jobs_is_one_per_batch_and_per_cpu_at_most_four(files: int, cpus: int, jobs: int) -> None:
    assert auto_jobs(files, cpus) == jobs


@pytest.mark.parametrize(
    ("own", "files", "quota"),
    [
        ("0::/job.slice/job42\n", {"job.slice/job42/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        (
            "4:memory:/x\n3:cpu,cpuacct:/slot1\n0::/\n",
            {
                "cpu,cpuacct/slot1/cpu.cfs_quota_us": "50000\n",
                "cpu,cpuacct/slot1/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        (
            "3:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
        ),
        ("0::/gone\n", {}, None),
        ("0::/\n", {"cpu.max": "garbage\n"}, None),
    ],
)
def test_the_cpu_quota_of_the_process_control_group_is_read_for_v1_and_v2(
    tmp_path: Path, own: str, files: dict[str, str], quota: float | None
) -> None:
    (tmp_path / "self-cgroup").write_text(own)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)

    assert cpu_quota(str(tmp_path / "fs"), str(tmp_path / "self-cgroup")) == quota
    cpus = usable_cpus(str(tmp_path / "fs"), str(tmp_path / "self-cgroup"))
    assert cpus == (
        min(len(os.sched_getaffinity(0)), math.ceil(quota)) if quota else len(os.sched_getaffinity(0))
    )


def test_every_file_is_uploaded_once_by_the_workers_in_order(tmp_path: Path, home: Path, notes: Path) -> None:
    items = batch_files(tmp_path, 12, lfn_dir="/vo/par")
    opener = functools.partial(_open_noting_pid, home, notes)
    header = RequestHeader("parallel-test")

    results = upload_in_processes(opener, items, jobs=3, batch_size=4, request=header, destinations=["DEST"])

    assert [r.lfn for r in results] == [i.lfn for i in items]  # type: ignore[union-attr]
    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    opened_in = {int(name.name) for name in notes.iterdir()}
    assert os.getpid() not in opened_in and 1 <= len(opened_in) <= 3
    env = open_workspace(home, ses=SES)
    assert sorted(env.se("DEST").list_lfns()) == sorted(i.lfn for i in items)
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (12,)
    assert fsck(env).ok


def test_a_bad_file_fails_alone_in_its_place(tmp_path: Path, home: Path) -> None:
    items = batch_files(tmp_path, 5, lfn_dir="/vo/par")
    items[2] = BatchItem(tmp_path / "missing", "/vo/par/missing")
    opener = functools.partial(open_workspace, home, ses=SES)

    results = upload_in_processes(
        opener, items, jobs=2, batch_size=2, request=RequestHeader("bad"), destinations=["DEST"]
    )

    assert isinstance(results[2], InvalidInput) and "does not exist" in str(results[2])
    assert [type(r) for i, r in enumerate(results) if i != 2] == [UploadResult] * 4


def test_operations_of_every_worker_go_to_the_one_request(tmp_path: Path, home: Path) -> None:
    """DEST refuses all under /blocked: each upload fails over, its operations in the caller's request."""
    (home / "se" / "DEST").mkdir(parents=True, exist_ok=True)
    (home / "se" / "DEST" / "blocked").write_text("a file where a directory would go")
    items = batch_files(tmp_path, 6, lfn_dir="/blocked/par")
    opener = functools.partial(open_workspace, home, ses=SES)
    header = RequestHeader("one-request")

    results = upload_in_processes(
        opener, items, jobs=3, batch_size=2, request=header, destinations=["DEST"], failovers=["FAIL"]
    )

    assert {r.state for r in results} == {UploadState.FAILED_OVER}  # type: ignore[union-attr]
    env = open_workspace(home, ses=SES)
    request = env.requests.find(header.client_key)
    assert request is not None
    assert env.store.conn.execute("SELECT COUNT(*) FROM requests").fetchone() == (1,)
    lfns = {f.lfn for op in env.requests.load(request.id).operations for f in op.files}
    assert lfns == {i.lfn for i in items}


@pytest.mark.parametrize(
    "point",
    [
        "after-commit:batch:create",
        "after-publish",
        "after-register",
        "before-commit:batch:outcomes",
        "after-commit:batch:outcomes",
    ],
)
def test_workers_killed_at_any_step_leave_nothing_that_resume_and_a_rerun_do_not_finish(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """
    Each worker dies at ``point`` in its first batch (a real kill: no cleanup): every file is reported
    interrupted; resume finishes the uploads in flight, the same upload again does the rest, and every
    file ends with one machine, one replica and one catalog entry.
    """
    items = batch_files(tmp_path, 8, lfn_dir="/vo/par")
    opener = functools.partial(open_workspace, home, ses=SES)
    options = {"request": RequestHeader("killed"), "destinations": ["DEST"]}
    monkeypatch.setenv(CRASH_AT, point)

    results = upload_in_processes(opener, items, jobs=2, batch_size=2, **options)  # type: ignore[arg-type]

    assert {type(r) for r in results} == {UploadInterrupted}
    assert all(r.lfn == i.lfn for r, i in zip(results, items, strict=True))  # type: ignore[union-attr]
    monkeypatch.delenv(CRASH_AT)
    env = open_workspace(home, ses=SES)
    in_flight = env.store.conn.execute("SELECT COUNT(*) FROM machines WHERE state = 'Uploading'").fetchone()
    assert len(resume(env, remove_temporary=True).finished) == in_flight[0]

    again = upload_in_processes(opener, items, jobs=2, batch_size=2, **options)  # type: ignore[arg-type]

    assert {r.state for r in again} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (8,)
    assert sorted(env.se("DEST").list_lfns()) == sorted(i.lfn for i in items)
    catalog = env.catalogs.get(env.catalog_choices()[0].name)
    assert sorted(entry.lfn for entry, _ in catalog.iter_files()) == sorted(i.lfn for i in items)  # type: ignore[attr-defined]
    assert fsck(env).ok


def test_two_files_with_one_lfn_are_refused_before_any_worker_starts(tmp_path: Path, home: Path) -> None:
    items = batch_files(tmp_path, 2, lfn_dir="/vo/par")
    twice = [items[0], BatchItem(items[1].local_path, items[0].lfn)]
    with pytest.raises(ValueError, match="same LFN"):
        upload_in_processes(
            functools.partial(open_workspace, home), twice, jobs=2, request=RequestHeader("x")
        )


def test_a_file_below_another_files_lfn_is_refused_before_any_worker_starts(
    tmp_path: Path, home: Path
) -> None:
    """In two workers, which of the two would be stored would depend on which worker went first."""
    items = batch_files(tmp_path, 2, lfn_dir="/vo/par")
    clashing = [items[0], BatchItem(items[1].local_path, f"{items[0].lfn}/part1")]
    with pytest.raises(ValueError, match=f"is below {items[0].lfn}, another file of this upload"):
        upload_in_processes(
            functools.partial(open_workspace, home), clashing, jobs=2, request=RequestHeader("x")
        )
    assert not (home / "se").exists() or not any((home / "se").rglob("f*"))


def test_a_stop_hands_out_no_more_batches_and_the_running_ones_finish(tmp_path: Path, home: Path) -> None:
    """Stopped as the first batch ends: at most the batches already handed out are uploaded, wholly."""
    items = batch_files(tmp_path, 40, lfn_dir="/vo/stop")
    stopping = threading.Event()
    results = upload_in_processes(
        functools.partial(open_workspace, home, ses=SES),
        items,
        jobs=2,
        batch_size=2,
        request=RequestHeader("stopped"),
        destinations=["DEST"],
        on_batch=lambda _: stopping.set(),
        stopping=stopping,
    )
    uploaded = [r for r in results if isinstance(r, UploadResult)]
    left = [r for r in results if not isinstance(r, UploadResult)]
    assert 2 <= len(uploaded) <= 2 * 4, "the first batch, and at most the three handed out with it"
    assert {r.state for r in uploaded} == {UploadState.REGISTERED}
    assert {type(r) for r in left} == {UploadInterrupted}
    assert all("was not uploaded" in str(r) for r in left)
    env = open_workspace(home, ses=SES)
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (len(uploaded),)
    assert fsck(env).ok


def _open_with_dest_down(home: Path) -> Environment:
    """The workers' opener: DEST is unreachable from them, for good."""
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=None)
    return faults.wrap(open_workspace(home, ses=SES))


def test_a_stop_cuts_short_the_retry_waits_of_the_workers(tmp_path: Path, home: Path) -> None:
    """
    With retryUpload, the workers' batches wait 10 s before trying DEST again: a stop (Ctrl-C) reaches
    them, they end their wait at once, and the files are left in flight for the same call again.
    """
    items = batch_files(tmp_path, 4, lfn_dir="/vo/waiting")
    stopping = threading.Event()
    stopper = threading.Timer(1.0, stopping.set)
    stopper.start()
    results = upload_in_processes(
        functools.partial(_open_with_dest_down, home),
        items,
        jobs=2,
        batch_size=2,
        request=RequestHeader("waiting"),
        destinations=["DEST"],
        retry_upload=True,
        stopping=stopping,
    )
    # Sat out, the waits (10, 60, 300 s) would end with every file failed, not left in flight.
    assert all(isinstance(r, UploadInterrupted) and "left in flight" in str(r) for r in results), results
    env = open_workspace(home, ses=SES)
    assert {env.uploads.load(item.lfn).state for item in items} == {UploadState.UPLOADING}


_ORPHANING_PARENT = """
import functools, sys
from batch_support import batch_files
from failover import open_workspace
from failover.parallel import upload_in_processes
from persistence.requests import RequestHeader
from pathlib import Path

tmp, home = Path(sys.argv[1]), Path(sys.argv[2])
opener = functools.partial(open_workspace, home, ses=("DEST", "FAIL"))
items = batch_files(tmp, 4000, lfn_dir="/vo/orphan")
upload_in_processes(opener, items, jobs=2, batch_size=200, request=RequestHeader("o"), destinations=["DEST"])
"""


def test_workers_whose_caller_is_killed_end_after_their_batch(tmp_path: Path, home: Path) -> None:
    """SIGKILL to the caller: each worker finishes the batch it holds, then ends; nothing left in flight."""
    command = [sys.executable, "-c", _ORPHANING_PARENT, str(tmp_path), str(home)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    parent = subprocess.Popen(command, env=env, start_new_session=True)
    db = sqlite3.connect(home / "failover.db")
    deadline = time.monotonic() + 60
    try:
        while not db.execute("SELECT COUNT(*) FROM machines WHERE state = 'Registered'").fetchone()[0]:
            assert time.monotonic() < deadline and parent.poll() is None, "no batch ended"
            time.sleep(0.01)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        while subprocess.run(["pgrep", "-s", str(parent.pid)], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the workers outlived their caller"
            time.sleep(0.05)
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(parent.pid)], check=False)
    states = dict(db.execute("SELECT state, COUNT(*) FROM machines GROUP BY state").fetchall())
    assert set(states) == {"Registered"} and states["Registered"] < 4000
    assert fsck(open_workspace(home, ses=SES)).ok
