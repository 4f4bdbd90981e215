"""
SPEC.md §5 handlers, run by the request executor: each checks whether its effect is already there,
acts only if not, and never loses the only good copy of a file.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from failover.catalog import FileEntry, Replica
from failover.checksum import ChecksumType, checksum_file
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.executor.operations import run_file
from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationType,
    RequestStatus,
    current_operation,
    refresh_statuses,
)
from failover.storage import StorageElement
from failover.testing import Fault, FaultInjector

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"
#: No jitter, one retry a minute: outcomes do not depend on the random draw.
POLICY = ExecutorPolicy(jitter=0.0, backoff_base=60.0)

FailedOver = Callable[..., int]
Submit = Callable[..., int]


def _run(env: Environment, policy: ExecutorPolicy = POLICY) -> int:
    return Executor(env, policy, name="handlers").run_once()


def _path(env: Environment, se: str, lfn: str) -> Path:
    return Path(urlparse(env.se(se).pfn(lfn)).path)


def _content(lfn: str) -> bytes:
    """What the ``failed_over`` fixture uploads for ``lfn``."""
    return f"output of {lfn}\n".encode() * 64


def _replica_ses(env: Environment, lfn: str, catalog: str = CATALOG) -> list[str]:
    return [replica.se for replica in env.catalogs.get(catalog).get_replicas(lfn)]


def _operations(env: Environment, request_id: int) -> list[tuple[str, str]]:
    """Each operation's type and status, statuses derived from the files as DIRAC does."""
    request = env.requests.load(request_id)
    refresh_statuses(request)
    return [(str(op.type), str(op.status)) for op in request.operations]


def _file(env: Environment, request_id: int, index: int) -> File:
    (file,) = env.requests.load(request_id).operations[index].files
    return file


def _status(env: Environment, request_id: int) -> RequestStatus:
    return env.requests.load(request_id).status


def _registered_at(client_env: Environment, local: Path, se: str) -> None:
    """Upload ``local`` as LFN straight to ``se`` (registered there, no request)."""
    client = FailoverTransfer(environment=client_env)
    result = client.transferAndRegisterFile("out.root", str(local), LFN, se, {"GUID": GUID})
    assert result == {"OK": True, "Value": {"uploadedSE": se, "lfn": LFN}}


def _copy_to(env: Environment, source: str, target: str, *, register: bool) -> None:
    env.se(source).copy_to(env.se(target), LFN)
    if register:
        env.catalogs.get(CATALOG).register_replica(Replica(LFN, target, env.se(target).pfn(LFN)))


# ReplicateAndRegister --------------------------------------------------------------------------------


def test_failover_request_replicates_registers_then_removes_the_temporary_replica(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN)

    assert _run(client_env) == 1

    assert _operations(client_env, request_id) == [
        ("ReplicateAndRegister", "Done"),
        ("RemoveReplica", "Done"),
    ]
    assert _status(client_env, request_id) is RequestStatus.Done
    assert _path(client_env, "SE-A", LFN).read_bytes() == _content(LFN)
    assert not _path(client_env, "FAIL-1", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["SE-A"]
    assert (injector.calls[("SE-A", "copy")], injector.calls[("FAIL-1", "remove")]) == (1, 1)


def test_replication_to_several_targets_copies_and_registers_at_each(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN, target="SE-A, SE-B")

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    for se in ("SE-A", "SE-B"):
        assert _path(client_env, se, LFN).read_bytes() == _content(LFN)
    assert _replica_ses(client_env, LFN) == ["SE-A", "SE-B"]
    assert (injector.calls[("SE-A", "copy")], injector.calls[("SE-B", "copy")]) == (1, 1)


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unregistered"])
def test_replication_already_at_the_target_is_not_copied_again(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver, registered: bool
) -> None:
    """A verified copy at the target is reused; only a missing registration is added."""
    request_id = failed_over(LFN)
    _copy_to(client_env, "FAIL-1", "SE-A", register=registered)
    injector.calls.clear()

    _run(client_env)

    assert _operations(client_env, request_id)[0] == ("ReplicateAndRegister", "Done")
    assert injector.calls[("SE-A", "copy")] == 0
    assert injector.calls[(CATALOG, "register_replica")] == (0 if registered else 1)
    assert _replica_ses(client_env, LFN) == ["SE-A"]


def test_replication_copies_from_another_good_replica_when_the_source_se_lost_it(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """SourceSE gone, but the catalog lists a verified copy at SE-B: the copy comes from there."""
    request_id = failed_over(LFN)
    _copy_to(client_env, "FAIL-1", "SE-B", register=True)
    _path(client_env, "FAIL-1", LFN).unlink()

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert injector.calls[("SE-B", "read")] >= 1
    assert _path(client_env, "SE-A", LFN).read_bytes() == _content(LFN)
    assert _replica_ses(client_env, LFN) == ["SE-A", "SE-B"]


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_replication_without_a_good_source_fails_the_file_and_never_removes_anything(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver, damage: str
) -> None:
    """
    SourceSE lost the file, or holds other bytes than the request's size/checksum: the file is Failed
    at once (SourceMissing), nothing reaches the target, and the RemoveReplica after it never runs.
    """
    request_id = failed_over(LFN)
    source = _path(client_env, "FAIL-1", LFN)
    if damage == "deleted":
        source.unlink()
    else:
        source.write_bytes(b"X" * len(_content(LFN)))

    _run(client_env)

    failed = _file(client_env, request_id, 0)
    assert (failed.status, failed.attempt) == (FileStatus.Failed, 1)
    assert failed.error.startswith("SourceMissing: ")
    assert _operations(client_env, request_id) == [
        ("ReplicateAndRegister", "Failed"),
        ("RemoveReplica", "Queued"),
    ]
    assert _status(client_env, request_id) is RequestStatus.Failed
    assert not _path(client_env, "SE-A", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["FAIL-1"]
    assert injector.calls[("FAIL-1", "remove")] == 0
    assert source.exists() == (damage == "corrupted")


def test_replication_is_checked_against_the_request_checksum(
    client_env: Environment, injector: FaultInjector, output_file: Path, submit: Submit
) -> None:
    """A request whose checksum differs from every replica's content copies and registers nothing."""
    _registered_at(client_env, output_file, "FAIL-1")
    data = output_file.read_bytes()
    wrong = File(LFN, checksum="00000001", checksum_type="ADLER32", size=len(data), guid=GUID)
    replicate = Operation(
        OperationType.ReplicateAndRegister, target_se=["SE-A"], source_se="FAIL-1", files=[wrong]
    )
    request_id = submit(replicate)

    _run(client_env)

    assert _file(client_env, request_id, 0).status is FileStatus.Failed
    # One streaming pass verifies source and copy together; a copy that does not match is removed.
    assert not _path(client_env, "SE-A", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["FAIL-1"]


def test_replication_without_checksum_in_the_request_is_checked_against_the_catalog(
    client_env: Environment, injector: FaultInjector, output_file: Path, submit: Submit
) -> None:
    """
    A DIRAC request's ReplicateAndRegister file may carry only its LFN: the copy is then verified against
    the catalog's size and checksum (SPEC §5 "against the request/catalog"), so a source whose bytes
    changed is neither copied nor registered.
    """
    _registered_at(client_env, output_file, "FAIL-1")
    source = _path(client_env, "FAIL-1", LFN)
    source.write_bytes(b"X" * source.stat().st_size)
    replicate = Operation(
        OperationType.ReplicateAndRegister, target_se=["SE-A"], source_se="FAIL-1", files=[File(LFN)]
    )
    request_id = submit(replicate)

    _run(client_env)

    assert _file(client_env, request_id, 0).status is FileStatus.Failed
    assert _replica_ses(client_env, LFN) == ["FAIL-1"]
    assert not _path(client_env, "SE-A", LFN).exists()


def test_replication_without_checksum_in_the_request_copies_a_good_source(
    client_env: Environment, output_file: Path, submit: Submit
) -> None:
    _registered_at(client_env, output_file, "FAIL-1")
    replicate = Operation(
        OperationType.ReplicateAndRegister, target_se=["SE-A"], source_se="FAIL-1", files=[File(LFN)]
    )
    request_id = submit(replicate)

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert _path(client_env, "SE-A", LFN).read_bytes() == output_file.read_bytes()
    assert _replica_ses(client_env, LFN) == ["FAIL-1", "SE-A"]


def test_copy_corrupted_in_transit_is_retried_and_not_registered(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    request_id = failed_over(LFN)
    injector.inject("SE-A", Fault.CHECKSUM_MISMATCH, operation="copy")

    _run(client_env)

    waiting = _file(client_env, request_id, 0)
    assert (waiting.status, waiting.attempt) == (FileStatus.Waiting, 1)
    assert waiting.error.startswith("TransferCorrupted: ")
    assert _status(client_env, request_id) is RequestStatus.Waiting
    assert _replica_ses(client_env, LFN) == ["FAIL-1"]
    assert _path(client_env, "FAIL-1", LFN).exists()


def test_registration_failure_inserts_register_replica_right_after_the_replication(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """
    Copied but not registered: ReplicateAndRegister is Done, a RegisterReplica for the target comes next,
    and the failover replica stays until that registration succeeds.
    """
    request_id = failed_over(LFN)
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, operation="register_replica", times=None)

    _run(client_env)

    assert _operations(client_env, request_id) == [
        ("ReplicateAndRegister", "Done"),
        ("RegisterReplica", "Waiting"),
        ("RemoveReplica", "Queued"),
    ]
    request = client_env.requests.load(request_id)
    register = request.operations[1]
    assert (register.target_se, [f.lfn for f in register.files]) == (["SE-A"], [LFN])
    assert register.files[0].pfn == client_env.se("SE-A").pfn(LFN)
    assert _path(client_env, "SE-A", LFN).read_bytes() == _content(LFN)
    assert _path(client_env, "FAIL-1", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["FAIL-1"]
    assert injector.calls[("FAIL-1", "remove")] == 0

    injector.clear(CATALOG)
    client_env.store.conn.execute("UPDATE requests SET not_before = NULL WHERE id = ?", (request_id,))
    _run(client_env)

    assert [status for _, status in _operations(client_env, request_id)] == ["Done", "Done", "Done"]
    assert _replica_ses(client_env, LFN) == ["SE-A"]
    assert not _path(client_env, "FAIL-1", LFN).exists()
    assert injector.calls[("SE-A", "copy")] == 1


# RemoveReplica -----------------------------------------------------------------------------------------


def _break_target(env: Environment, how: str) -> None:
    """Leave SE-A's copy of LFN in one of the states where it must not count as a good replica."""
    if how == "missing":
        return
    _copy_to(env, "FAIL-1", "SE-A", register=how != "unregistered")
    if how == "registered-but-deleted":
        _path(env, "SE-A", LFN).unlink()
    elif how == "registered-but-corrupt":
        target = _path(env, "SE-A", LFN)
        target.write_bytes(b"Z" * target.stat().st_size)


@pytest.mark.parametrize(
    "target", ["missing", "unregistered", "registered-but-deleted", "registered-but-corrupt"]
)
def test_remove_replica_keeps_the_failover_copy_until_the_target_is_verified_and_registered(
    client_env: Environment, injector: FaultInjector, output_file: Path, submit: Submit, target: str
) -> None:
    """SPEC §5 Fix: the only good copy is never removed; SoleReplica is transient (retried later)."""
    _registered_at(client_env, output_file, "FAIL-1")
    _break_target(client_env, target)
    request_id = submit(Operation(OperationType.RemoveReplica, target_se=["FAIL-1"], files=[File(LFN)]))

    _run(client_env)

    kept = _file(client_env, request_id, 0)
    assert (kept.status, kept.attempt) == (FileStatus.Waiting, 1)
    assert kept.error.startswith("SoleReplica: ")
    assert _path(client_env, "FAIL-1", LFN).read_bytes() == output_file.read_bytes()
    assert "FAIL-1" in _replica_ses(client_env, LFN)
    assert injector.calls[("FAIL-1", "remove")] == 0


def test_remove_replica_removes_once_the_target_is_verified_and_registered(
    client_env: Environment, output_file: Path, submit: Submit
) -> None:
    _registered_at(client_env, output_file, "FAIL-1")
    _copy_to(client_env, "FAIL-1", "SE-A", register=True)
    request_id = submit(Operation(OperationType.RemoveReplica, target_se=["FAIL-1"], files=[File(LFN)]))

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert not _path(client_env, "FAIL-1", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["SE-A"]


def test_remove_replica_of_the_only_replica_is_never_done(
    client_env: Environment, output_file: Path, submit: Submit
) -> None:
    """Even run to its last attempt, a RemoveReplica of the sole replica removes nothing."""
    _registered_at(client_env, output_file, "SE-A")
    request_id = submit(Operation(OperationType.RemoveReplica, target_se=["SE-A"], files=[File(LFN)]))

    _run(client_env, ExecutorPolicy(max_attempts=1))

    assert _file(client_env, request_id, 0).status is FileStatus.Failed
    assert _path(client_env, "SE-A", LFN).exists()
    assert _replica_ses(client_env, LFN) == ["SE-A"]


def test_a_target_se_sharing_the_failover_ses_storage_is_no_second_copy(
    client_env: Environment, failed_over: FailedOver
) -> None:
    """
    SE-A configured (by hand: a configuration refuses it) on FAIL-1's root: the replication finds the
    file "already there", and removing FAIL-1's replica would have deleted the only copy, with the
    catalog still listing SE-A's.
    """
    request_id = failed_over(LFN)
    client_env.storage["SE-A"] = StorageElement("SE-A", client_env.se("FAIL-1").url)

    _run(client_env, ExecutorPolicy(max_attempts=1))

    assert _path(client_env, "FAIL-1", LFN).read_bytes() == _content(LFN)
    removal = _file(client_env, request_id, 1)
    assert removal.status is FileStatus.Failed
    assert "at FAIL-1 is the sole verified replica: not removed (SE-A shares its storage" in removal.error


@pytest.mark.parametrize("catalog_entry", [False, True], ids=["fully-absent", "dangling-catalog-entry"])
def test_remove_replica_already_absent_is_done(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    submit: Submit,
    catalog_entry: bool,
) -> None:
    """The object is gone from FAIL-1: Done, and a catalog entry left behind is cleaned up."""
    _registered_at(client_env, output_file, "SE-A")
    if catalog_entry:
        pfn = client_env.se("FAIL-1").pfn(LFN)
        client_env.catalogs.get(CATALOG).register_replica(Replica(LFN, "FAIL-1", pfn))
    request_id = submit(Operation(OperationType.RemoveReplica, target_se=["FAIL-1"], files=[File(LFN)]))

    _run(client_env)

    done = _file(client_env, request_id, 0)
    assert (done.status, done.error) == (FileStatus.Done, "")
    assert _replica_ses(client_env, LFN) == ["SE-A"]
    assert _path(client_env, "SE-A", LFN).exists()


# RegisterFile ------------------------------------------------------------------------------------------


def _register_file(env: Environment, local: Path, *, catalog: list[str], guid: str = GUID) -> Operation:
    summed = checksum_file(local)
    file = File(
        LFN,
        pfn=env.se("SE-A").pfn(LFN),
        checksum=summed.hexdigest(ChecksumType.ADLER32),
        checksum_type="ADLER32",
        size=local.stat().st_size,
        guid=guid,
    )
    return Operation(OperationType.RegisterFile, target_se=["SE-A"], catalog=catalog, files=[file])


def _entry(env: Environment, catalog: str) -> FileEntry | None:
    return env.catalogs.get(catalog).get_file(LFN)


@pytest.mark.parametrize(("catalog", "expected"), [(["B"], [False, True]), ([], [True, True])])
def test_register_file_registers_in_the_operation_catalog_or_all(
    two_catalog_env: Environment,
    output_file: Path,
    submit: Submit,
    catalog: list[str],
    expected: list[bool],
) -> None:
    env = two_catalog_env
    env.se("SE-A").put(output_file, LFN)
    request_id = submit(_register_file(env, output_file, catalog=catalog), env=env)

    _run(env)

    assert _status(env, request_id) is RequestStatus.Done
    assert [_entry(env, name) is not None for name in ("A", "B")] == expected
    for name in ("A", "B"):
        entry = _entry(env, name)
        if entry is not None:
            assert (entry.size, entry.guid) == (output_file.stat().st_size, GUID)
            assert _replica_ses(env, LFN, name) == ["SE-A"]


def test_register_file_identical_entry_is_done_without_writing(
    client_env: Environment, injector: FaultInjector, output_file: Path, submit: Submit
) -> None:
    _registered_at(client_env, output_file, "SE-A")
    request_id = submit(_register_file(client_env, output_file, catalog=[CATALOG]))
    injector.calls.clear()

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert injector.calls[(CATALOG, "register_file")] == 0


def test_register_file_conflicting_entry_fails_at_once_with_the_reason(
    client_env: Environment, output_file: Path, submit: Submit
) -> None:
    _registered_at(client_env, output_file, "SE-A")
    other_guid = "00000000-0000-4000-8000-000000000000"
    request_id = submit(_register_file(client_env, output_file, catalog=[CATALOG], guid=other_guid))

    _run(client_env)

    refused = _file(client_env, request_id, 0)
    assert (refused.status, refused.attempt) == (FileStatus.Failed, 1)
    assert refused.error.startswith("RegistrationRefused: ")
    assert "guid" in refused.error
    assert _status(client_env, request_id) is RequestStatus.Failed
    assert _entry(client_env, CATALOG).guid == GUID  # type: ignore[union-attr]


# RegisterReplica ---------------------------------------------------------------------------------------


def _register_replica() -> Operation:
    return Operation(OperationType.RegisterReplica, target_se=["SE-B"], files=[File(LFN, pfn="")])


@pytest.mark.parametrize("present", [True, False], ids=["present", "vanished"])
def test_register_replica_adds_the_replica_or_is_done_when_the_file_vanished(
    client_env: Environment, output_file: Path, submit: Submit, present: bool
) -> None:
    _registered_at(client_env, output_file, "SE-A")
    if present:
        _copy_to(client_env, "SE-A", "SE-B", register=False)
    operation = _register_replica()
    operation.files[0].pfn = client_env.se("SE-B").pfn(LFN)
    request_id = submit(operation)

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert _replica_ses(client_env, LFN) == (["SE-A", "SE-B"] if present else ["SE-A"])


# RemoveFile --------------------------------------------------------------------------------------------


def test_remove_file_removes_every_replica_and_the_entry(
    client_env: Environment, output_file: Path, submit: Submit
) -> None:
    _registered_at(client_env, output_file, "SE-A")
    _copy_to(client_env, "SE-A", "SE-B", register=True)
    request_id = submit(Operation(OperationType.RemoveFile, files=[File(LFN)]))

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert _entry(client_env, CATALOG) is None
    assert not _path(client_env, "SE-A", LFN).exists()
    assert not _path(client_env, "SE-B", LFN).exists()


def test_remove_file_already_gone_is_done(
    client_env: Environment, injector: FaultInjector, submit: Submit
) -> None:
    request_id = submit(Operation(OperationType.RemoveFile, files=[File(LFN)]))

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert sum(count for (_, op), count in injector.calls.items() if op.startswith("remove")) == 0


# Idempotency: a crash between acting and recording -----------------------------------------------------


def _act_without_recording(env: Environment, request_id: int) -> None:
    """Run the current operation's handler as an executor would, then "crash" before recording it."""
    request = env.requests.load(request_id)
    refresh_statuses(request)
    operation = current_operation(request)
    assert operation is not None
    run_file(env, operation, operation.files[0], POLICY, random.Random(0))


def test_replication_done_before_a_crash_is_found_and_not_repeated(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """The copy and the registration happen once: the next executor finds them and only records them."""
    request_id = failed_over(LFN)
    _act_without_recording(client_env, request_id)
    assert (injector.calls[("SE-A", "copy")], injector.calls[(CATALOG, "register_replica")]) == (1, 1)

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert (injector.calls[("SE-A", "copy")], injector.calls[(CATALOG, "register_replica")]) == (1, 1)
    assert _replica_ses(client_env, LFN) == ["SE-A"]


def test_removal_done_before_a_crash_is_found_and_not_repeated(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """The failover replica is removed once: the next executor finds it gone and only records it."""
    request_id = failed_over(LFN)
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, operation="remove_replica")
    _run(client_env)
    assert _operations(client_env, request_id)[1] == ("RemoveReplica", "Waiting")
    client_env.store.conn.execute("UPDATE requests SET not_before = NULL WHERE id = ?", (request_id,))
    _act_without_recording(client_env, request_id)
    assert not _path(client_env, "FAIL-1", LFN).exists()
    removals = (injector.calls[("FAIL-1", "remove")], injector.calls[(CATALOG, "remove_replica")])

    _run(client_env)

    assert _status(client_env, request_id) is RequestStatus.Done
    assert (injector.calls[("FAIL-1", "remove")], injector.calls[(CATALOG, "remove_replica")]) == removals
    assert _replica_ses(client_env, LFN) == ["SE-A"]
