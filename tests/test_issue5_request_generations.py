"""Regression (found by the issue 5 crash matrix): uploads after a request ended were never executed."""

from __future__ import annotations

from pathlib import Path

from failover import Executor, ExecutorPolicy, FailoverTransfer, fsck, open_workspace
from failover.testing import Fault, FaultInjector
from states import UploadState


def test_uploads_after_the_request_finished_go_to_a_new_request_that_runs(tmp_path: Path) -> None:
    """A job keeps uploading after its committed request was executed: the new operations still run."""
    faults = FaultInjector()
    env = faults.wrap(open_workspace(tmp_path / "ws", ses=("SE-A", "FAIL-1")))
    faults.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    client = FailoverTransfer(environment=env, client_key="job-7")
    first, second = tmp_path / "one.root", tmp_path / "two.root"
    first.write_bytes(b"1" * 100)
    second.write_bytes(b"2" * 100)
    executor = Executor(env, ExecutorPolicy(backoff_base=0, jitter=0))

    assert client.transferAndRegisterFileFailover("one", str(first), "/vo/one", "SE-A", "FAIL-1", {})["OK"]
    first_id = client.commitRequest()["Value"]
    executor.run_once()
    assert env.uploads.load("/vo/one").state == UploadState.CLEANED

    assert client.transferAndRegisterFileFailover("two", str(second), "/vo/two", "SE-A", "FAIL-1", {})["OK"]
    request = client.getRequest()
    assert request.request_id != first_id
    assert [f.lfn for op in request.operations for f in op.files] == ["/vo/two", "/vo/two"]
    second_id = client.commitRequest()["Value"]
    assert second_id == request.request_id
    assert client.commitRequest()["Value"] == second_id, "committing again returns the same id"
    executor.run_once()
    assert env.uploads.load("/vo/two").state == UploadState.CLEANED
    assert fsck(env).ok, fsck(env).problems


def test_fsck_reports_an_upload_left_with_nothing_to_run(tmp_path: Path) -> None:
    """An upload waiting on the executor whose operations sit in an ended request is stranded."""
    faults = FaultInjector()
    env = faults.wrap(open_workspace(tmp_path / "ws", ses=("SE-A", "FAIL-1")))
    faults.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    local = tmp_path / "one.root"
    local.write_bytes(b"1" * 100)
    client = FailoverTransfer(environment=env, client_key="job-8")
    client.transferAndRegisterFileFailover("one", str(local), "/vo/one", "SE-A", "FAIL-1", {})
    request_id = client.commitRequest()["Value"]
    with (
        env.store.transaction() as conn
    ):  # what the bug left behind: the request ended, its operations not run
        conn.execute("UPDATE requests SET status = 'Done' WHERE id = ?", (request_id,))
    codes = [problem.code for problem in fsck(env).problems]
    assert codes == ["stranded-upload"]
