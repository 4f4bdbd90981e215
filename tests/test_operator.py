"""
Operator actions end to end, through the DIRAC-compatible client on the embedded workspace.

An upload that failed over to ``FAILOVER-DISK`` because ``LOCAL-DISK`` was down gets Stuck when its request
is canceled (or fails in the executor); ``retry_upload`` re-issues its operations in a new committed
request and the executor takes it to Cleaned; ``cancel_upload`` gives up on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import failover
from failover import Environment, Executor, ExecutorPolicy, FailoverTransfer, InvalidInput, Request
from failover.request import File, FileStatus, Operation, OperationStatus, OperationType
from failover.testing import Fault, FaultInjector
from failover.workspace import open_workspace
from fsm.engine import idempotency_key
from fsm.replay import verify_replay
from persistence.journal import read_journal
from persistence.requests import load_operations, load_request
from states import UPLOAD_MACHINE, UploadState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
LOCAL, FAILOVER, CATALOG = "LOCAL-DISK", "FAILOVER-DISK", "LocalCatalog"
#: What the failed-over upload's request holds: (type, target SEs, source SE, catalogs).
FAILOVER_OPERATIONS = [
    ("ReplicateAndRegister", [LOCAL], FAILOVER, [CATALOG]),
    ("RemoveReplica", [FAILOVER], "", []),
]


@pytest.fixture
def env(tmp_path: Path, injector: FaultInjector) -> Iterator[Environment]:
    """
    The embedded workspace (``LOCAL-DISK``, ``FAILOVER-DISK``, one master catalog) on a fixed clock,
    wrapped by ``injector`` with ``LOCAL-DISK`` unreachable, so an upload to it fails over.
    """
    workspace = dataclasses.replace(open_workspace(tmp_path / "ws"), clock=lambda: NOW)
    injector.inject(LOCAL, Fault.STORAGE_UNAVAILABLE, times=None)
    yield injector.wrap(workspace)
    workspace.store.close()


def _fail_over(env: Environment, local: Path, request: Request | None = None) -> int:
    """Upload ``local`` to LOCAL-DISK with FAILOVER-DISK as failover, commit; return the request id."""
    client = FailoverTransfer(request, environment=env)
    result = client.transferAndRegisterFileWithFailover(
        "out.root", str(local), LFN, LOCAL, FAILOVER, {"GUID": GUID}
    )
    assert result == {"OK": True, "Value": {"uploadedSE": FAILOVER, "lfn": LFN}}
    committed = client.commitRequest()
    assert committed["OK"] is True
    return int(committed["Value"])


def _operations(env: Environment, request_id: int) -> list[tuple[str, list[str], str, list[str]]]:
    return [
        (op.type, op.target_se, op.source_se, op.catalog)
        for op, _ in load_operations(env.store.conn, request_id)
    ]


def _statuses(env: Environment, request_id: int) -> list[str]:
    return [op.status for op, _ in load_operations(env.store.conn, request_id)]


def _files(env: Environment, request_id: int) -> list[list[tuple[Any, ...]]]:
    """Each operation's files: what they are, and where they stand (status, attempt)."""
    return [
        [(f.lfn, f.pfn, f.checksum, f.checksum_type, f.size, f.guid, f.status, f.attempt) for f in files]
        for _, files in load_operations(env.store.conn, request_id)
    ]


def _triggers(env: Environment) -> list[str]:
    return [row.trigger for row in read_journal(env.store.conn, LFN)]


def test_a_canceled_request_is_retried_and_executed_until_the_upload_is_cleaned(
    env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """Cancel → Stuck; retry → a new request with the same operations; execute → Cleaned at LOCAL-DISK."""
    first = _fail_over(env, output_file)
    assert _operations(env, first) == FAILOVER_OPERATIONS
    failed_over_files = _files(env, first)

    failover.cancel_request(env, first)
    stuck = env.uploads.load(LFN)
    assert stuck.state == UploadState.STUCK
    assert [stuck.data[k] for k in ("stuck_from", "stuck_reason", "stuck_request")] == [
        UploadState.FAILED_OVER,
        "canceled by operator",
        first,
    ]
    assert (load_request(env.store.conn, first).status, load_request(env.store.conn, first).error) == (
        "Canceled",
        "canceled by operator",
    )
    assert _statuses(env, first) == ["Canceled", "Canceled"]

    injector.clear()
    second = failover.retry_upload(env, LFN)
    assert second != first
    request = load_request(env.store.conn, second)
    assert (request.client_key, request.status) == (f"retry:{LFN}:1", "Waiting")
    assert request.committed_at is not None
    assert _operations(env, second) == FAILOVER_OPERATIONS
    assert _files(env, second) == failed_over_files
    retried = env.uploads.load(LFN)
    assert retried.state == UploadState.FAILED_OVER
    assert [retried.data[k] for k in ("stuck_from", "stuck_reason", "stuck_request")] == [None] * 3
    assert retried.data["operator_retries"] == 1
    assert retried.data["request"]["client_key"] == request.client_key
    # The operations are the operator_retry transition's emissions, stored under its idempotency keys.
    stored = load_operations(env.store.conn, second)
    assert [(op.machine_id, op.idem_key) for op, _ in stored] == [
        (LFN, idempotency_key(LFN, retried.version, i, op.type)) for i, (op, _) in enumerate(stored)
    ]

    assert Executor(env, name="executor-1").run_once() == 1
    cleaned = env.uploads.load(LFN)
    assert cleaned.state == UploadState.CLEANED
    assert load_request(env.store.conn, second).status == "Done"
    assert load_request(env.store.conn, first).status == "Canceled"
    assert _statuses(env, first) == ["Canceled", "Canceled"]
    assert (env.se(LOCAL).exists(LFN), env.se(FAILOVER).exists(LFN)) == (True, False)
    assert [replica.se for catalog in env.catalogs for replica in catalog.get_replicas(LFN)] == [LOCAL]
    assert _triggers(env) == [
        "create",
        "attempt_failed",
        "failed_over",
        "request_failed",
        "operator_retry",
        "replication_started",
        "cleaned",
    ]
    verify_replay(UPLOAD_MACHINE, cleaned, read_journal(env.store.conn, LFN))


def test_a_request_failed_by_the_executor_is_retried_and_kept_as_history(
    env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """The failed request stays Failed; its failed replication and open removal are re-issued fresh."""
    first = _fail_over(env, output_file)
    assert Executor(env, ExecutorPolicy(max_attempts=1), name="executor-1").run_once() == 1
    assert load_request(env.store.conn, first).status == "Failed"
    assert _statuses(env, first) == ["Failed", "Queued"]
    stuck = env.uploads.load(LFN)
    assert (stuck.state, stuck.data["stuck_from"], stuck.data["stuck_request"]) == (
        UploadState.STUCK,
        UploadState.FAILED_OVER,
        first,
    )

    injector.clear()
    second = failover.retry_upload(env, LFN)
    assert _operations(env, second) == FAILOVER_OPERATIONS
    assert [[(f[6], f[7]) for f in files] for files in _files(env, second)] == [[("Waiting", 0)]] * 2
    assert Executor(env, name="executor-1").run_once() == 1
    assert env.uploads.load(LFN).state == UploadState.CLEANED
    assert load_request(env.store.conn, first).status == "Failed"
    assert _statuses(env, first) == ["Failed", "Queued"]
    assert _triggers(env)[3:] == ["request_failed", "operator_retry", "replication_started", "cleaned"]


def test_an_upload_stuck_by_a_failed_request_keeps_the_reason_the_operation_failed(
    env: Environment, output_file: Path
) -> None:
    """SPEC §6 invariant 2: a stuck upload keeps its reasons; the request's status alone is not one."""
    _fail_over(env, output_file)
    Executor(env, ExecutorPolicy(max_attempts=1), name="executor-1").run_once()
    assert "storage element unreachable" in env.uploads.load(LFN).data["stuck_reason"]


def test_cancel_request_cancels_the_open_operations_and_leaves_the_failed_ones(
    env: Environment, output_file: Path
) -> None:
    """An operation that had already failed stays Failed, with its own error; the open ones are Canceled."""
    earlier = Operation(
        OperationType.RemoveFile,
        status=OperationStatus.Failed,
        files=[File("/vo/user/a/alice/run41/old.root", status=FileStatus.Failed, error="no such file")],
    )
    request_id = _fail_over(env, output_file, Request(name="job-42", operations=[earlier]))
    assert _statuses(env, request_id) == ["Failed", "Queued", "Queued"]
    failover.cancel_request(env, request_id, "job killed")
    assert _statuses(env, request_id) == ["Failed", "Canceled", "Canceled"]
    assert [op.error for op, _ in load_operations(env.store.conn, request_id)] == [
        "",
        "job killed",
        "job killed",
    ]
    assert load_request(env.store.conn, request_id).status == "Canceled"
    assert env.uploads.load(LFN).state == UploadState.STUCK


def test_a_request_the_executor_ends_just_before_the_cancel_is_not_canceled(
    env: Environment, output_file: Path, injector: FaultInjector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The executor's commit lands between the operator's command and its transaction: the request is
    Done, its upload Cleaned, and the cancel says so instead of marking them Canceled and Stuck.
    """
    request_id = _fail_over(env, output_file)
    injector.clear(LOCAL)
    executor_env = open_workspace(Path(env.store.path).parent)
    begin = env.store.transaction

    def executor_first(*args: Any, **kwargs: Any) -> Any:
        Executor(executor_env, name="executor-1").run_once()  # commits in its own connection
        return begin(*args, **kwargs)

    monkeypatch.setattr(env.store, "transaction", executor_first)
    try:
        with pytest.raises(InvalidInput, match=f"request {request_id} is Done already"):
            failover.cancel_request(env, request_id, "job killed")
    finally:
        executor_env.close()
    monkeypatch.undo()
    assert load_request(env.store.conn, request_id).status == "Done"
    assert env.uploads.load(LFN).state == UploadState.CLEANED


def test_cancel_upload_fails_a_stuck_upload_with_the_reason_it_got_stuck_for(
    env: Environment, output_file: Path
) -> None:
    failover.cancel_request(env, _fail_over(env, output_file), "job killed")
    failover.cancel_upload(env, LFN)
    failed = env.uploads.load(LFN)
    assert failed.state == UploadState.FAILED
    assert failed.data["refusal"] == {"code": "cancelled", "message": "cancelled: job killed"}
    assert _triggers(env)[-2:] == ["request_failed", "cancelled"]
    with pytest.raises(InvalidInput, match="is Failed, not Stuck"):
        failover.retry_upload(env, LFN)


@pytest.mark.parametrize("action", [failover.retry_upload, failover.cancel_upload], ids=["retry", "cancel"])
def test_an_operator_action_on_an_upload_that_is_not_stuck_is_refused(
    env: Environment, output_file: Path, action: Callable[[Environment, str], object]
) -> None:
    """Nothing is stored: the upload stays FailedOver and its request untouched."""
    request_id = _fail_over(env, output_file)
    before = (env.uploads.load(LFN), _statuses(env, request_id))
    with pytest.raises(InvalidInput, match="is FailedOver, not Stuck"):
        action(env, LFN)
    assert (env.uploads.load(LFN), _statuses(env, request_id)) == before


def test_a_retry_of_a_cleaned_upload_is_refused(
    env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    failover.cancel_request(env, _fail_over(env, output_file))
    injector.clear()
    failover.retry_upload(env, LFN)
    Executor(env, name="executor-1").run_once()
    with pytest.raises(InvalidInput, match="is Cleaned, not Stuck"):
        failover.retry_upload(env, LFN)


@pytest.mark.parametrize("ended", ["Done", "Canceled"])
def test_cancel_of_a_request_that_has_ended_is_refused(
    env: Environment, injector: FaultInjector, output_file: Path, ended: str
) -> None:
    first = _fail_over(env, output_file)
    failover.cancel_request(env, first)
    injector.clear()
    second = failover.retry_upload(env, LFN)
    Executor(env, name="executor-1").run_once()
    request_id = {"Canceled": first, "Done": second}[ended]
    before = (load_request(env.store.conn, request_id), _statuses(env, request_id), env.uploads.load(LFN))
    with pytest.raises(InvalidInput, match=f"request {request_id} is {ended} already"):
        failover.cancel_request(env, request_id)
    assert (
        load_request(env.store.conn, request_id),
        _statuses(env, request_id),
        env.uploads.load(LFN),
    ) == before


def test_a_request_failed_on_its_first_file_leaves_the_rest_stuck_and_retry_all_frees_them(
    tmp_path: Path,
) -> None:
    """
    One job's request of five failed-over uploads fails on the first file (other bytes at its target):
    every upload is Stuck. Retried together, each gets a request of its own, so the four good ones end
    Cleaned and only the bad one is Stuck again.
    """
    faults = FaultInjector()
    base = open_workspace(tmp_path / "ws")
    env = faults.wrap(base)
    faults.inject(LOCAL, Fault.STORAGE_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=env)
    lfns = [f"/vo/job/out{i}.root" for i in range(5)]
    for i, lfn in enumerate(lfns):
        local = tmp_path / f"out{i}.root"
        local.write_bytes(f"event data {i}\n".encode() * 50)
        assert client.transferAndRegisterFileWithFailover(local.name, str(local), lfn, LOCAL, FAILOVER, {})[
            "OK"
        ]
    assert client.commitRequest()["OK"]
    taken = Path(base.se(LOCAL).pfn(lfns[0]).removeprefix("file://"))
    taken.parent.mkdir(parents=True, exist_ok=True)
    taken.write_bytes(b"someone else's bytes")
    Executor(base).run_once()
    assert {base.uploads.load(lfn).state for lfn in lfns} == {UploadState.STUCK}

    requests = failover.operator.retry_uploads(base, lfns)

    assert len(set(requests)) == len(lfns), "a request of its own for each upload"
    Executor(base).run_once()
    states = [base.uploads.load(lfn).state for lfn in lfns]
    assert states == [UploadState.STUCK] + [UploadState.CLEANED] * 4
    assert failover.fsck(base).problems == []
