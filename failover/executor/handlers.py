"""
Operation handlers (SPEC.md §5), each split in two: is the effect already there, and do it.

Handlers never record anything: :func:`failover.executor.operations.run_file` calls ``done`` first
and ``act`` only when needed, then records the result. ``act`` may return follow-up operations to
insert right after the current one (a ``RegisterReplica`` when a replica was copied but could not be
registered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from failover.catalog import FileCatalog, FileEntry, Replica, conflicting_field
from failover.checksum import parse_checksum_type, same_checksum
from failover.environment import Environment
from failover.errors import FailoverError, SoleReplica, SourceMissing, TransferCorrupted
from failover.request import File, Operation, OperationType
from failover.storage import StorageElement
from fsm.crashpoints import crash_point
from persistence.requests import NewFile, NewOperation

__all__ = ["HANDLERS", "Handler"]


@dataclass(frozen=True)
class Handler:
    """The two halves of an operation type's work on one file."""

    done: Callable[[Environment, Operation, File], bool]
    act: Callable[[Environment, Operation, File], list[NewOperation]]


def _catalogs(env: Environment, op: Operation) -> list[FileCatalog]:
    names = op.catalog or env.catalogs.names()
    return [env.catalogs.get(name) for name in names]


def _verified(se: StorageElement, size: int, checksum: str, checksum_type: str, lfn: str) -> bool:
    """The SE holds ``lfn`` with this size and checksum (an unknown size or checksum is not compared)."""
    info = se.stat(lfn)
    if info is None or (size and info.size != size):
        return False
    if not checksum:
        return True
    kind = parse_checksum_type(checksum_type)
    return same_checksum(se.checksum(lfn, kind), checksum, kind)


def _file_ok(se: StorageElement, file: File) -> bool:
    return _verified(se, file.size, file.checksum, file.checksum_type, file.lfn)


def _has_replica(catalog: FileCatalog, lfn: str, se: str) -> bool:
    return any(replica.se == se for replica in catalog.get_replicas(lfn))


# ReplicateAndRegister ------------------------------------------------------------------------------


def _replicated(env: Environment, op: Operation, file: File) -> bool:
    catalogs = _catalogs(env, op)
    return all(
        _file_ok(env.se(target), file) and all(_has_replica(c, file.lfn, target) for c in catalogs)
        for target in op.target_se
    )


def _source(env: Environment, op: Operation, file: File) -> StorageElement:
    names = [op.source_se] if op.source_se else []
    names += [r.se for c in _catalogs(env, op) for r in c.get_replicas(file.lfn) if r.se not in op.target_se]
    for name in dict.fromkeys(names):
        if name in env.storage and _file_ok(env.se(name), file):
            return env.se(name)
    raise SourceMissing(f"no good replica of {file.lfn} to copy from (source {op.source_se!r})", lfn=file.lfn)


def _copy(env: Environment, op: Operation, file: File, target: StorageElement) -> None:
    kind = parse_checksum_type(file.checksum_type)
    crash_point("before-copy")
    _source(env, op, file).copy_to(target, file.lfn, checksum_types=(kind,))
    crash_point("after-copy")
    if not _file_ok(target, file):
        target.remove(file.lfn)
        raise TransferCorrupted(
            f"{target.name}: copy of {file.lfn} does not match size/checksum", se=target.name
        )


def _replicate(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    unregistered: list[str] = []
    for name in op.target_se:
        target = env.se(name)
        if not _file_ok(target, file):
            _copy(env, op, file, target)
        for catalog in _catalogs(env, op):
            crash_point("before-register-replica")
            try:
                catalog.register_replica(Replica(file.lfn, name, target.pfn(file.lfn)))
            except FailoverError:
                unregistered.append(name)
            crash_point("after-register-replica")
    return [_register_replica(op, file, env, name) for name in dict.fromkeys(unregistered)]


def _register_replica(op: Operation, file: File, env: Environment, se: str) -> NewOperation:
    pfn = env.se(se).pfn(file.lfn)
    files = [NewFile(file.lfn, pfn, file.checksum, file.checksum_type, file.size, file.guid)]
    return NewOperation(OperationType.RegisterReplica.value, files, target_se=[se], catalog=op.catalog)


# RemoveReplica ---------------------------------------------------------------------------------------


def _removed(env: Environment, op: Operation, file: File) -> bool:
    return all(
        not env.se(se).exists(file.lfn) and not any(_has_replica(c, file.lfn, se) for c in _catalogs(env, op))
        for se in op.target_se
    )


def _another_good_copy(env: Environment, op: Operation, lfn: str, doomed: str) -> bool:
    """SPEC §5 Fix: a verified and registered copy must remain elsewhere before a replica is removed."""
    for catalog in _catalogs(env, op):
        entry = catalog.get_file(lfn)
        for replica in catalog.get_replicas(lfn) if entry else []:
            if replica.se != doomed and replica.se in env.storage:
                se = env.se(replica.se)
                if _verified(se, entry.size, entry.checksum, entry.checksum_type, lfn):  # type: ignore[union-attr]
                    return True
    return False


def _remove_replica(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    for se in op.target_se:
        if not _another_good_copy(env, op, file.lfn, se):
            raise SoleReplica(
                f"{file.lfn} at {se} is the sole verified replica: not removed", se=se, lfn=file.lfn
            )
        # Catalog first: a crash in between leaves an unregistered copy, never a dangling catalog entry.
        for catalog in _catalogs(env, op):
            crash_point("before-remove-catalog-replica")
            catalog.remove_replica(file.lfn, se)
            crash_point("after-remove-catalog-replica")
        crash_point("before-remove-replica")
        env.se(se).remove(file.lfn)
        crash_point("after-remove-replica")
    return []


# RegisterFile / RegisterReplica / RemoveFile ------------------------------------------------------------


def _entry(file: File) -> FileEntry:
    return FileEntry(file.lfn, file.size, file.checksum, file.checksum_type, file.guid)


def _file_registered(env: Environment, op: Operation, file: File) -> bool:
    return all(
        (entry := c.get_file(file.lfn)) is not None
        and conflicting_field(entry, _entry(file)) is None
        and all(_has_replica(c, file.lfn, se) for se in op.target_se)
        for c in _catalogs(env, op)
    )


def _register_file(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    for catalog in _catalogs(env, op):
        for se in op.target_se or [""]:
            crash_point("before-register-file")
            catalog.register_file(_entry(file), Replica(file.lfn, se, file.pfn))
            crash_point("after-register-file")
    return []


def _replica_registered(env: Environment, op: Operation, file: File) -> bool:
    return all(_has_replica(c, file.lfn, se) for c in _catalogs(env, op) for se in op.target_se)


def _add_replica(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    for se in op.target_se:
        if not env.se(se).exists(file.lfn):
            continue  # SPEC §5: the file vanished from the SE meanwhile: nothing to register
        for catalog in _catalogs(env, op):
            crash_point("before-register-replica")
            catalog.register_replica(Replica(file.lfn, se, file.pfn or env.se(se).pfn(file.lfn)))
            crash_point("after-register-replica")
    return []


def _file_gone(env: Environment, op: Operation, file: File) -> bool:
    return all(c.get_file(file.lfn) is None for c in _catalogs(env, op)) and not any(
        se.exists(file.lfn) for se in env.storage.values()
    )


def _remove_file(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    crash_point("before-remove-file")
    for catalog in _catalogs(env, op):
        for replica in catalog.get_replicas(file.lfn):
            catalog.remove_replica(file.lfn, replica.se)
        catalog.remove_file(file.lfn)
    for se in env.storage.values():
        se.remove(file.lfn)
    crash_point("after-remove-file")
    return []


HANDLERS: dict[OperationType, Handler] = {
    OperationType.ReplicateAndRegister: Handler(_replicated, _replicate),
    OperationType.RemoveReplica: Handler(_removed, _remove_replica),
    OperationType.RegisterFile: Handler(_file_registered, _register_file),
    OperationType.RegisterReplica: Handler(_replica_registered, _add_replica),
    OperationType.RemoveFile: Handler(_file_gone, _remove_file),
}
