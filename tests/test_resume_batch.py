"""resume drives in-flight uploads in batches: one commit per batch, the one-file path for the rest."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from failover import Environment, batch, fsck, open_workspace, resume
from failover.batch import BatchItem, drive_many, upload_many
from failover.storage import StorageElement
from failover.storage.paths import temporary_path
from failover.testing import Fault, FaultInjector
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from persistence.requests import RequestHeader
from states import UploadState

REQUEST = RequestHeader("resume-batch-test")
SES = ("DEST", "FAIL")


def _in_flight(tmp_path: Path, count: int, batch_size: int = 256) -> tuple[Path, list[BatchItem]]:
    """
    A workspace where a killed process left uploads created in Uploading, nothing put: the first
    ``batch_size`` of ``count``.
    """
    folder = tmp_path / "out"
    folder.mkdir()
    items = []
    for i in range(count):
        path = folder / f"f{i}"
        path.write_bytes(bytes([i % 256]) * (50 + i))
        items.append(BatchItem(path, f"/vo/resume/f{i}"))
    home = tmp_path / "ws"
    pid = os.fork()
    if pid == 0:
        os.environ[CRASH_AT] = "after-commit:batch:create"
        env = open_workspace(home, ses=SES)
        upload_many(
            env, items, destinations=["DEST"], failovers=["FAIL"], request=REQUEST, batch_size=batch_size
        )
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == CRASH_EXIT_CODE
    return home, items


def _states(env: Environment) -> dict[str, int]:
    rows = env.store.conn.execute("SELECT state, COUNT(*) FROM machines GROUP BY state")
    return dict(rows.fetchall())


def test_resume_records_a_batch_of_outcomes_in_one_commit(tmp_path: Path) -> None:
    home, items = _in_flight(tmp_path, 6)
    env = open_workspace(home, ses=SES)
    assert _states(env) == {UploadState.UPLOADING.value: 6}
    commits: list[str] = []
    env.store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    report = resume(env, commit_drafts=False)
    env.store.conn.set_trace_callback(None)
    assert len(commits) == 1, "six outcomes, one transaction"
    assert [r.lfn for r in report.finished] == sorted(i.lfn for i in items)
    assert report.failed == {}
    assert _states(env) == {UploadState.REGISTERED.value: 6}
    assert fsck(env).ok, fsck(env).problems


def test_an_upload_whose_put_fails_takes_the_one_file_path_to_its_failover(tmp_path: Path) -> None:
    home, items = _in_flight(tmp_path, 4)
    env = open_workspace(home, ses=SES)
    faults = FaultInjector()
    wrapped = faults.wrap(env)
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=1)
    outcomes = drive_many(wrapped, [i.lfn for i in items], batch_size=3)
    states = [o.state for o in outcomes]  # type: ignore[union-attr]
    assert states == [UploadState.FAILED_OVER] + [UploadState.REGISTERED] * 3
    assert faults.calls[("DEST", "put")] == 4, "each file tried at DEST once"
    assert faults.calls[("FAIL", "put")] == 1
    assert fsck(wrapped).ok, fsck(wrapped).problems


def test_a_finished_upload_is_reported_as_it_stands(tmp_path: Path) -> None:
    home, items = _in_flight(tmp_path, 2)
    env = open_workspace(home, ses=SES)
    first = drive_many(env, [items[0].lfn])
    faults = FaultInjector()
    again = drive_many(faults.wrap(env), [items[0].lfn, items[1].lfn])
    assert [o.state for o in again] == [UploadState.REGISTERED] * 2  # type: ignore[union-attr]
    assert again[0] == first[0]
    assert faults.calls[("DEST", "put")] == 1, "only the unfinished upload is put"


def test_a_stopped_resume_finishes_its_batch_and_leaves_the_rest_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _ = _in_flight(tmp_path, 300, batch_size=300)
    env = open_workspace(home, ses=SES)
    stopping = threading.Event()
    crash_point = batch.crash_point

    def stop_while_registering(name: str) -> None:
        crash_point(name)
        if name == "before-register":
            stopping.set()

    monkeypatch.setattr(batch, "crash_point", stop_while_registering)
    report = resume(env, stopping=stopping)
    assert (len(report.finished), report.left, report.failed) == (256, 44, {})
    assert _states(env) == {UploadState.REGISTERED.value: 256, UploadState.UPLOADING.value: 44}
    monkeypatch.undo()
    again = resume(env)
    assert (len(again.finished), again.left, again.failed) == (44, 0, {})
    assert fsck(env).ok, fsck(env).problems


def test_removing_temporaries_passes_over_an_se_that_does_not_answer(tmp_path: Path) -> None:
    """
    After a crash, DEST's storage is not mounted: resume --remove-temporary cleans FAIL, names DEST as
    not cleaned, and still drives the upload in flight (to FAIL, DEST being down).
    """
    home, items = _in_flight(tmp_path, 1)
    env = open_workspace(home, ses=SES)
    leftovers = []
    for name in SES:
        final = env.se(name).pfn("/vo/resume/left.root").removeprefix("file://")
        os.makedirs(os.path.dirname(final), exist_ok=True)
        leftovers.append(Path(temporary_path(final)))
        leftovers[-1].write_bytes(b"half a file")
    dest_root = leftovers[0].parents[2]  # <root>/vo/resume/.left.root.failover-tmp-...
    env.storage["DEST"] = StorageElement("DEST", env.se("DEST").url, mount=dest_root)
    report = resume(env, remove_temporary=True, commit_drafts=False)  # the test's request has no owner
    assert report.temporary_removed == 1 and not leftovers[1].exists()
    assert leftovers[0].exists()
    assert report.temporary_not_removed == {
        "DEST": f"DEST: {dest_root}, its configured mount, is not mounted: nothing beneath it is read or "
        "written until it is"
    }
    assert [(r.lfn, r.state, r.se) for r in report.finished] == [
        (items[0].lfn, UploadState.FAILED_OVER, "FAIL")
    ]
