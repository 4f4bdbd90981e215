"""
The executor drives the upload machines (DESIGN.md): Registering → Registered; FailedOver → Replicating
→ Cleaned; an upload whose request failed → Stuck (or Failed, from Registering) with the reason. Each
transition commits with the operation status that causes it. Operators retry a Stuck upload or cancel
a request; everything is journaled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory, TickingDateTimeFactory

from failover.catalog import FileEntry, Replica
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.errors import InvalidInput
from failover.executor import Executor, ExecutorPolicy
from failover.operator import cancel_request, cancel_upload, retry_upload
from failover.request import File, FileStatus, Operation, OperationType, RequestStatus, refresh_statuses
from failover.testing import Fault, FaultInjector
from fsm.replay import verify_replay
from persistence.errors import StoreError
from persistence.journal import read_journal
from states import UPLOAD_MACHINE, UploadState

#: What ``freeze_time(...)`` yields.
Frozen = FrozenDateTimeFactory | StepTickTimeFactory | TickingDateTimeFactory
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ExecutorPolicy(backoff_base=10.0, jitter=0.0)

FailedOver = Callable[..., int]


def _run(env: Environment, policy: ExecutorPolicy = POLICY) -> int:
    return Executor(env, policy, name="uploads").run_once()


def _triggers(env: Environment, machine_id: str = LFN) -> list[str]:
    return [row.trigger for row in read_journal(env.store.conn, machine_id)]


def _state(env: Environment, machine_id: str = LFN) -> str:
    return env.uploads.load(machine_id).state


def _replayed(env: Environment, machine_id: str = LFN) -> None:
    """Invariant 4: the stored state is what replaying the journal gives."""
    verify_replay(UPLOAD_MACHINE, env.uploads.load(machine_id), read_journal(env.store.conn, machine_id))


def _operation_ids(env: Environment, request_id: int) -> list[int]:
    return [op.operation_id or 0 for op in env.requests.load(request_id).operations]


def _lose_source(env: Environment, lfn: str = LFN) -> None:
    """The failover copy disappears behind the executor's back."""
    assert env.se("FAIL-1").remove(lfn)


# The failover path -------------------------------------------------------------------------------------


def test_failover_upload_goes_replicating_then_cleaned(
    client_env: Environment, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN)
    replicate_id, remove_id = _operation_ids(client_env, request_id)

    _run(client_env)

    journal = read_journal(client_env.store.conn, LFN)
    assert [(row.trigger, row.src, row.dst) for row in journal[2:]] == [
        ("replication_started", "FailedOver", "Replicating"),
        ("cleaned", "Replicating", "Cleaned"),
    ]
    assert [row.payload["event"] for row in journal[2:]] == [
        {"operation": replicate_id},
        {"operation": remove_id},
    ]
    assert _state(client_env) == UploadState.CLEANED
    _replayed(client_env)


def test_loaded_operations_name_the_upload_that_emitted_them(
    client_env: Environment, failed_over: FailedOver
) -> None:
    """The executor moves the upload an operation names, without asking the store which one it is."""
    request_id = failed_over(LFN)
    assert [op.machine_id for op in client_env.requests.load(request_id).operations] == [LFN, LFN]
    client_env.requests.add_operations(request_id, [Operation(OperationType.RemoveFile, files=[File(LFN)])])
    assert client_env.requests.load(request_id).operations[-1].machine_id is None


@pytest.mark.parametrize("batch_size", [1, 32], ids=["one-at-a-time", "batch"])
def test_upload_transition_and_operation_status_commit_together(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver, batch_size: int
) -> None:
    """
    The journal refuses the ``cleaned`` row (a crash inside the transaction): the RemoveReplica's Done
    status is rolled back with it (in a batch, the whole round's record is). The next executor finds the
    replica gone and records what is left.
    """
    conn = client_env.store.conn
    policy = replace(POLICY, batch_size=batch_size)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        conn.execute(
            "CREATE TEMP TRIGGER refuse_cleaned BEFORE INSERT ON journal WHEN NEW.trigger = 'cleaned' "
            "BEGIN SELECT RAISE(ABORT, 'crash while journaling cleaned'); END"
        )

        with pytest.raises(StoreError):
            _run(client_env, policy)

        replicate, remove = client_env.requests.load(request_id).operations
        assert (str(remove.status), remove.files[0].status, remove.files[0].attempt) == (
            "Queued",
            FileStatus.Waiting,
            0,
        )
        if batch_size == 1:
            assert _state(client_env) == UploadState.REPLICATING
        else:
            assert (replicate.files[0].status, _state(client_env)) == (
                FileStatus.Waiting,
                UploadState.FAILED_OVER,
            )
        assert not client_env.se("FAIL-1").exists(LFN)

        conn.execute("DROP TRIGGER refuse_cleaned")
        frozen.tick(timedelta(seconds=POLICY.lease_seconds + 1))
        assert _run(client_env, policy) == 1

    assert _state(client_env) == UploadState.CLEANED
    assert client_env.requests.load(request_id).status is RequestStatus.Done
    assert _triggers(client_env).count("cleaned") == 1
    assert injector.calls[("FAIL-1", "remove")] == 1


def test_failover_upload_with_deferred_registration_registers_replicates_and_cleans(
    client_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """The catalog was down at upload time: RegisterFile at the failover SE runs first, then the rest."""
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=client_env)
    result = client.transferAndRegisterFileFailover("out.root", str(output_file), LFN, "SE-A", "FAIL-1", {})
    assert result["Value"]["registration"] == "request"
    request_id = int(client.commitRequest()["Value"])
    injector.clear()

    _run(client_env)

    request = client_env.requests.load(request_id)
    assert [(str(op.type), str(op.status)) for op in request.operations] == [
        ("RegisterFile", "Done"),
        ("ReplicateAndRegister", "Done"),
        ("RemoveReplica", "Done"),
    ]
    assert _state(client_env) == UploadState.CLEANED
    assert [r.se for r in client_env.catalogs.get(CATALOG).get_replicas(LFN)] == ["SE-A"]
    _replayed(client_env)


def test_all_uploads_of_a_request_are_cleaned(client_env: Environment, failed_over: FailedOver) -> None:
    lfns = [f"{LFN}.{n}" for n in range(3)]
    failed_over(*lfns)

    _run(client_env)

    assert [_state(client_env, lfn) for lfn in lfns] == [UploadState.CLEANED] * 3


def test_failover_upload_whose_request_failed_is_stuck_with_the_reason(
    client_env: Environment, failed_over: FailedOver
) -> None:
    """The reason names what failed (the lost source), not just the request's status."""
    request_id = failed_over(LFN)
    _lose_source(client_env)

    _run(client_env)

    upload = client_env.uploads.load(LFN)
    assert upload.state == UploadState.STUCK
    assert (upload.data["stuck_from"], upload.data["stuck_request"]) == ("FailedOver", request_id)
    error = client_env.requests.load(request_id).operations[0].files[0].error
    assert error.startswith("SourceMissing: ")
    assert error in upload.data["stuck_reason"]
    assert _triggers(client_env)[-1] == "request_failed"
    assert (
        read_journal(client_env.store.conn, LFN)[-1].payload["event"]["reason"] == upload.data["stuck_reason"]
    )
    _replayed(client_env)


def test_every_unfinished_upload_of_a_failed_request_is_stuck(
    client_env: Environment, failed_over: FailedOver
) -> None:
    first, second = f"{LFN}.1", f"{LFN}.2"
    failed_over(first, second)
    _lose_source(client_env, first)

    _run(client_env)

    assert [_state(client_env, lfn) for lfn in (first, second)] == [UploadState.STUCK] * 2
    assert client_env.se("FAIL-1").exists(second)


def _stuck_while_replicating(env: Environment, injector: FaultInjector, frozen: Frozen) -> int:
    """
    Replicated, then the target copy vanished before the failover copy could be removed: the removal is
    refused (SoleReplica) until its last attempt, and the upload is Stuck from Replicating.
    """
    policy = ExecutorPolicy(max_attempts=2, backoff_base=10.0, jitter=0.0)
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, operation="remove_replica", times=1)
    assert _run(env, policy) == 1
    assert _state(env) == UploadState.REPLICATING
    assert env.se("SE-A").remove(LFN)
    frozen.tick(timedelta(seconds=10))
    assert _run(env, policy) == 1
    return int(env.uploads.load(LFN).data["stuck_request"])


def test_replicating_upload_whose_removal_ran_out_of_attempts_is_stuck(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        assert _stuck_while_replicating(client_env, injector, frozen) == request_id

    upload = client_env.uploads.load(LFN)
    assert (upload.state, upload.data["stuck_from"]) == (UploadState.STUCK, "Replicating")
    assert "SoleReplica" in upload.data["stuck_reason"]
    assert client_env.se("FAIL-1").exists(LFN)
    _replayed(client_env)


# The registration path ---------------------------------------------------------------------------------


def _deferred_upload(env: Environment, injector: FaultInjector, local: Path, *catalogs: str) -> int:
    """Upload to SE-A while ``catalogs`` are down: Registering, one RegisterFile each, committed."""
    for catalog in catalogs:
        injector.inject(catalog, Fault.CATALOG_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=env)
    result = client.transferAndRegisterFile("out.root", str(local), LFN, "SE-A", {"GUID": GUID})
    assert result["Value"]["registration"] == "request"
    committed = client.commitRequest()
    assert committed["OK"]
    assert _state(env) == UploadState.REGISTERING
    return int(committed["Value"])


def test_registering_upload_is_registered_once_every_register_file_is_done(
    two_catalog_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    env = two_catalog_env
    with freeze_time(T0) as frozen:
        request_id = _deferred_upload(env, injector, output_file, "A", "B")
        injector.clear("A")

        _run(env)

        assert [op.files[0].status for op in env.requests.load(request_id).operations] == [
            FileStatus.Done,
            FileStatus.Waiting,
        ]
        assert _state(env) == UploadState.REGISTERING

        injector.clear()
        frozen.tick(timedelta(seconds=10))
        _run(env)

    assert _state(env) == UploadState.REGISTERED
    assert _triggers(env) == ["create", "registration_deferred", "registered"]
    assert env.uploads.load(LFN).data["registered_catalogs"] == ["A", "B"]
    _replayed(env)


def test_registering_upload_whose_registration_is_refused_fails_with_the_reason(
    client_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    _deferred_upload(client_env, injector, output_file, CATALOG)
    injector.clear()
    other = FileEntry(LFN, 1, "00000001", "ADLER32", "00000000-0000-4000-8000-000000000000")
    client_env.catalogs.get(CATALOG).register_file(other, Replica(LFN, "SE-B", "file:///elsewhere"))

    _run(client_env)

    upload = client_env.uploads.load(LFN)
    assert upload.state == UploadState.FAILED
    assert "RegistrationRefused" in upload.data["refusal"]["message"]
    assert _triggers(client_env)[-1] == "registration_failed"
    assert client_env.se("SE-A").exists(LFN)
    _replayed(client_env)


# Operator actions --------------------------------------------------------------------------------------


def test_operator_retry_of_a_stuck_upload_runs_a_new_request_to_cleaned(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    with freeze_time(T0) as frozen:
        first = failed_over(LFN)
        _stuck_while_replicating(client_env, injector, frozen)

        second = retry_upload(client_env, LFN)

        assert second != first
        assert _state(client_env) == UploadState.FAILED_OVER
        retried = client_env.requests.load(second)
        assert [str(op.type) for op in retried.operations] == ["ReplicateAndRegister", "RemoveReplica"]
        assert all(file.attempt == 0 for op in retried.operations for file in op.files)
        assert _run(client_env) == 1

    assert client_env.requests.load(first).status is RequestStatus.Failed
    assert client_env.requests.load(second).status is RequestStatus.Done
    assert _state(client_env) == UploadState.CLEANED
    assert _triggers(client_env)[2:] == [
        "replication_started",
        "request_failed",
        "operator_retry",
        "replication_started",
        "cleaned",
    ]
    assert client_env.se("SE-A").exists(LFN) and not client_env.se("FAIL-1").exists(LFN)
    _replayed(client_env)


def test_operator_retry_after_a_lost_source_copies_from_the_restored_replica(
    client_env: Environment, failed_over: FailedOver, tmp_path: Path
) -> None:
    failed_over(LFN)
    local = tmp_path / "restored"
    with client_env.se("FAIL-1").open_read(LFN) as stream:
        local.write_bytes(stream.read())
    _lose_source(client_env)
    _run(client_env)
    assert _state(client_env) == UploadState.STUCK
    client_env.se("FAIL-1").put(local, LFN)

    retry_upload(client_env, LFN)
    _run(client_env)

    assert _state(client_env) == UploadState.CLEANED
    assert client_env.se("SE-A").exists(LFN)


def test_operator_retry_after_a_failed_replica_registration_registers_and_cleans(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """
    Copied but never registered (the inserted RegisterReplica ran out of attempts): Stuck from Replicating,
    the failover copy kept; the retried replication finds the copy, registers it, and cleanup follows.
    """
    failed_over(LFN)
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, operation="register_replica", times=None)
    _run(client_env, ExecutorPolicy(max_attempts=1))
    upload = client_env.uploads.load(LFN)
    assert (upload.state, upload.data["stuck_from"]) == (UploadState.STUCK, "Replicating")
    assert "RegisterReplica" in upload.data["stuck_reason"]
    assert client_env.se("FAIL-1").exists(LFN)
    injector.clear()

    retry_upload(client_env, LFN)
    _run(client_env)

    assert _state(client_env) == UploadState.CLEANED
    assert [r.se for r in client_env.catalogs.get(CATALOG).get_replicas(LFN)] == ["SE-A"]
    assert injector.calls[("SE-A", "copy")] == 1
    _replayed(client_env)


@pytest.mark.parametrize("state", ["FailedOver", "Cleaned"])
def test_operator_retry_of_an_upload_that_is_not_stuck_is_refused(
    client_env: Environment, failed_over: FailedOver, state: str
) -> None:
    failed_over(LFN)
    if state == "Cleaned":
        _run(client_env)

    with pytest.raises(InvalidInput, match="not Stuck"):
        retry_upload(client_env, LFN)
    assert _state(client_env) == state


def test_operator_cancel_of_a_request_cancels_its_operations_and_sticks_its_uploads(
    client_env: Environment, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN)

    cancel_request(client_env, request_id, "job was killed")

    request = client_env.requests.load(request_id)
    assert (request.status, request.error) == (RequestStatus.Canceled, "job was killed")
    refresh_statuses(request)
    assert [(str(op.status), op.error) for op in request.operations] == [("Canceled", "job was killed")] * 2
    upload = client_env.uploads.load(LFN)
    assert (upload.state, upload.data["stuck_reason"]) == (UploadState.STUCK, "job was killed")
    assert _triggers(client_env)[-1] == "request_failed"
    assert _run(client_env) == 0
    assert client_env.se("FAIL-1").exists(LFN) and not client_env.se("SE-A").exists(LFN)
    with pytest.raises(InvalidInput):
        cancel_request(client_env, request_id)


def test_operator_cancel_of_a_stuck_upload_fails_it_with_the_reason(
    client_env: Environment, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN)
    cancel_request(client_env, request_id, "job was killed")

    cancel_upload(client_env, LFN)

    upload = client_env.uploads.load(LFN)
    assert upload.state == UploadState.FAILED
    assert "job was killed" in upload.data["refusal"]["message"]
    assert _triggers(client_env)[-2:] == ["request_failed", "cancelled"]
    _replayed(client_env)


def test_the_triggers_fired_on_a_done_operation_each_have_one_source_state() -> None:
    """upload_hooks fires these without looking at the state first: a second source would be a new path."""
    sources: dict[str, list[str]] = {}
    for transition in UPLOAD_MACHINE.transitions:
        sources.setdefault(transition.trigger, []).extend(transition.sources)
    assert sources["replication_started"] == [UploadState.FAILED_OVER]
    assert sources["cleaned"] == [UploadState.REPLICATING]
    assert sources["registered"] == [UploadState.REGISTERING]
