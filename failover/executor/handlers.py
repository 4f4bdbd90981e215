"""
Operation handlers (SPEC.md §5), each split in two: is the effect already there, and do it.

Handlers never record anything: :func:`failover.executor.operations.run_file` calls ``done`` first
and ``act`` only when needed, then records the result. ``act`` may return follow-up operations to
insert right after the current one (a ``RegisterReplica`` when a replica was copied but could not be
registered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from failover.catalog import FileCatalog, FileEntry, Replica, conflicting_field
from failover.checksum import ChecksumType, parse_checksum_type, same_checksum
from failover.environment import Environment
from failover.errors import FailoverError, SoleReplica, SourceMissing
from failover.request import File, Operation, OperationType
from failover.storage import PutResult, StorageElement
from fsm.crashpoints import crash_point
from persistence.requests import NewFile, NewOperation

__all__ = [
    "HANDLERS",
    "CopyPlan",
    "Handler",
    "copy_is_right",
    "place_copies",
    "plan_copies",
    "register_copies",
    "remove_objects",
    "replicas_registered",
    "unregister_replicas",
]


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


def _has_replica(catalog: FileCatalog, lfn: str, se: str) -> bool:
    return any(replica.se == se for replica in catalog.get_replicas(lfn))


# ReplicateAndRegister ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    """What a replica must hold: from the request's file, completed from the catalog entry."""

    size: int
    checksum: str
    checksum_type: str


def _expected(env: Environment, op: Operation, file: File) -> _Expected:
    """SPEC §5: a copy is verified against the request, or the catalog where the request says nothing."""
    if file.size and file.checksum:
        return _Expected(file.size, file.checksum, file.checksum_type)
    for catalog in _catalogs(env, op):
        entry = catalog.get_file(file.lfn)
        if entry is not None:
            return _Expected(
                file.size or entry.size,
                file.checksum or entry.checksum,
                file.checksum_type or entry.checksum_type,
            )
    return _Expected(file.size, file.checksum, file.checksum_type)


def _holds(se: StorageElement, lfn: str, want: _Expected) -> bool:
    return _verified(se, want.size, want.checksum, want.checksum_type, lfn)


def _replicated(env: Environment, op: Operation, file: File) -> bool:
    want = _expected(env, op, file)
    return all(_holds(env.se(target), file.lfn, want) for target in op.target_se) and replicas_registered(
        env, op, file
    )


def replicas_registered(env: Environment, op: Operation, file: File) -> bool:
    """Every catalog of the operation lists a replica of ``file`` at each of its target SEs."""
    catalogs = _catalogs(env, op)
    return all(_has_replica(c, file.lfn, target) for target in op.target_se for c in catalogs)


def _sources(env: Environment, op: Operation, file: File, want: _Expected) -> list[StorageElement]:
    """SEs holding an object of the right size: the request's source first, then the catalog's replicas."""
    names = [op.source_se] if op.source_se else []
    names += [r.se for c in _catalogs(env, op) for r in c.get_replicas(file.lfn) if r.se not in op.target_se]
    infos = {name: env.se(name).stat(file.lfn) for name in dict.fromkeys(names) if name in env.storage}
    return [
        env.se(name)
        for name, info in infos.items()
        if info is not None and (not want.size or info.size == want.size)
    ]


def _copy(env: Environment, op: Operation, file: File, target: StorageElement, want: _Expected) -> None:
    """
    Copy from the first good source; the checksum computed while streaming verifies source and copy at once.

    A copy whose bytes do not match is removed before anyone can register it.
    """
    kind = parse_checksum_type(want.checksum_type)
    for source in _sources(env, op, file, want):
        crash_point("before-copy")
        put = source.copy_to(target, file.lfn, checksum_types=(kind,))
        crash_point("after-copy")
        if copy_is_right(CopyPlan(file, target, source, kind, want.checksum), put):
            return
    raise _no_source(op, file)


def _no_source(op: Operation, file: File) -> SourceMissing:
    message = f"no good replica of {file.lfn} to copy from (source {op.source_se!r})"
    return SourceMissing(message, lfn=file.lfn)


def _replicate(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    place_copies(env, op, file)
    return register_copies(env, op, file)


def place_copies(env: Environment, op: Operation, file: File) -> None:
    """ReplicateAndRegister's first half: a verified copy at each target SE that lacks one."""
    want = _expected(env, op, file)
    for target in _lacking(env, op, file, want):
        _copy(env, op, file, target, want)


def _lacking(env: Environment, op: Operation, file: File, want: _Expected) -> Iterator[StorageElement]:
    """The operation's target SEs that do not hold a verified copy of ``file`` (checked one by one)."""
    for name in op.target_se:
        target = env.se(name)
        if not _holds(target, file.lfn, want):
            yield target


@dataclass(frozen=True)
class CopyPlan:
    """A copy that ReplicateAndRegister still has to make, and how to tell it is right."""

    file: File
    target: StorageElement
    source: StorageElement
    kind: ChecksumType
    checksum: str


def plan_copies(env: Environment, op: Operation, file: File) -> list[CopyPlan]:
    """
    The copies :func:`place_copies` would make for ``file``, each from its first good source.

    Raises:
        SourceMissing: a target lacks the file and no SE holds a copy of the right size.
    """
    want = _expected(env, op, file)
    plans = []
    for target in _lacking(env, op, file, want):
        sources = _sources(env, op, file, want)
        if not sources:
            raise _no_source(op, file)
        kind = parse_checksum_type(want.checksum_type)
        plans.append(CopyPlan(file, target, sources[0], kind, want.checksum))
    return plans


def copy_is_right(plan: CopyPlan, put: PutResult) -> bool:
    """
    Whether a planned copy holds the expected checksum (computed while streaming: it verifies the source
    and the copy at once); a wrong copy is removed at once, before anyone can register it.
    """
    if not plan.checksum or same_checksum(put.checksums[plan.kind], plan.checksum, plan.kind):
        return True
    plan.target.remove(plan.file.lfn)
    return False


def register_copies(
    env: Environment, op: Operation, file: File, placed: Mapping[str, PutResult] | None = None
) -> list[NewOperation]:
    """
    ReplicateAndRegister's second half, once the copies are placed: register each in the catalogs.

    Args:
        placed: the copies the caller has just made, by target SE (their PFNs are used as they are).

    Returns:
        A ``RegisterReplica`` operation per target whose registration failed, to run next.
    """
    unregistered: list[str] = []
    for name in op.target_se:
        put = (placed or {}).get(name)
        pfn = put.pfn if put is not None else env.se(name).pfn(file.lfn)
        for catalog in _catalogs(env, op):
            crash_point("before-register-replica")
            try:
                catalog.register_replica(Replica(file.lfn, name, pfn))
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


def _another_good_copy(
    env: Environment, op: Operation, lfn: str, doomed: str, fresh: Mapping[str, PutResult]
) -> bool:
    """
    SPEC §5 Fix: a verified and registered copy must remain elsewhere before a replica is removed. A
    copy at an SE sharing the doomed replica's storage is that replica, not another copy.

    A copy in ``fresh`` (made and verified by the caller just now) is compared with the catalog entry
    from what its put reported, without reading it back.
    """
    for catalog in _catalogs(env, op):
        entry = catalog.get_file(lfn)
        if entry is None:
            continue
        for replica in catalog.get_replicas(lfn):
            if replica.se == doomed or replica.se not in env.storage:
                continue
            if env.se(replica.se).holds_same_object(env.se(doomed), lfn):
                continue
            put = fresh.get(replica.se)
            known = None if put is None else _put_matches(put, entry)
            if known is None:
                known = _verified(env.se(replica.se), entry.size, entry.checksum, entry.checksum_type, lfn)
            if known:
                return True
    return False


def _sharing(env: Environment, lfn: str, doomed: str) -> str:
    """What a refused removal adds when other SEs hold the replica as the same object (shared storage)."""
    alike = [
        name
        for name, se in env.storage.items()
        if name != doomed and se.holds_same_object(env.se(doomed), lfn)
    ]
    if not alike:
        return ""
    return f" ({', '.join(alike)} share{'s' if len(alike) == 1 else ''} its storage: the same object)"


def _put_matches(put: PutResult, entry: FileEntry) -> bool | None:
    """Whether a put's result holds the entry's size and checksum; None when the put lacks that checksum."""
    if entry.size and put.size != entry.size:
        return False
    if not entry.checksum:
        return True
    kind = parse_checksum_type(entry.checksum_type)
    theirs = put.checksums.get(kind)
    return None if theirs is None else same_checksum(theirs, entry.checksum, kind)


def _remove_replica(env: Environment, op: Operation, file: File) -> list[NewOperation]:
    # Catalog first: a crash in between leaves an unregistered copy, never a dangling catalog entry.
    unregister_replicas(env, op, file)
    remove_objects(env, op, file)
    return []


def unregister_replicas(
    env: Environment, op: Operation, file: File, fresh: Mapping[str, PutResult] | None = None
) -> None:
    """
    RemoveReplica's first half: remove the replicas' catalog entries, each only while a verified and
    registered copy remains elsewhere.

    Args:
        fresh: the copies of the file the caller has just made, by SE, with what their puts verified
            (compared with the catalog entry instead of read back).

    Raises:
        SoleReplica: a replica is the sole verified one (nothing more is removed).
    """
    for se in op.target_se:
        if not _another_good_copy(env, op, file.lfn, se, fresh or {}):
            raise SoleReplica(
                f"{file.lfn} at {se} is the sole verified replica: not removed{_sharing(env, file.lfn, se)}",
                se=se,
                lfn=file.lfn,
            )
        for catalog in _catalogs(env, op):
            crash_point("before-remove-catalog-replica")
            catalog.remove_replica(file.lfn, se)
            crash_point("after-remove-catalog-replica")


def remove_objects(env: Environment, op: Operation, file: File) -> None:
    """RemoveReplica's second half, once the catalog entries are gone: remove the objects."""
    for se in op.target_se:
        crash_point("before-remove-replica")
        env.se(se).remove(file.lfn)
        crash_point("after-remove-replica")


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
