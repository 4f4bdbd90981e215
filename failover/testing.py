"""
Test helpers shipped for users: scripted faults on storage elements and catalogs.

A :class:`FaultInjector` wraps an :class:`~failover.environment.Environment`'s SEs and catalogs; each
call is counted, and a scripted fault makes the next ``times`` calls (or every call) of one
operation on one SE or catalog raise the typed error that the real failure would map to::

    faults = FaultInjector()
    env = faults.wrap(env)
    faults.inject("SE-A", Fault.STORAGE_UNAVAILABLE)              # the next call to SE-A fails
    faults.inject("Catalog", Fault.CATALOG_UNAVAILABLE, times=None)  # the catalog is down for good
    faults.inject("SE-B", Fault.CHECKSUM_MISMATCH, operation="put", times=2)
    ...
    faults.clear("Catalog")                                       # it comes back
    assert faults.calls[("SE-A", "put")] == 1

Storage operations: ``put``, ``copy`` (the target side of a copy), ``read`` (the source side),
``stat``, ``exists``, ``checksum``, ``remove``. Catalog operations: ``get_file``, ``get_replicas``,
``find_guid``, ``path_conflict``, ``register_file``, ``register_replica``, ``remove_replica``,
``remove_file``, ``iter_files``. ``"*"`` matches every operation.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, _GeneratorContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO

from failover.catalog import CatalogSet, FileCatalog, FileEntry, Replica
from failover.checksum import ChecksumType
from failover.environment import Environment
from failover.errors import (
    CatalogUnavailable,
    FailoverError,
    PermissionDenied,
    RegistrationRefused,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
)
from failover.storage import ObjectInfo, PutItem, PutResult, StorageElement

__all__ = ["Fault", "FaultInjector", "FaultyCatalog", "FaultyStorage"]


class Fault(StrEnum):
    """A failure to script, named for what happened on the real system."""

    PUT_ERROR = "put_error"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    CATALOG_UNAVAILABLE = "catalog_unavailable"
    REGISTRATION_REFUSED = "registration_refused"
    NAME_TOO_LONG = "name_too_long"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    PARTIAL_WRITE = "partial_write"


_ERRORS: dict[Fault, tuple[type[FailoverError], str, str]] = {
    Fault.PUT_ERROR: (PermissionDenied, "put", "permission denied"),
    Fault.STORAGE_UNAVAILABLE: (StorageUnavailable, "*", "storage element unreachable"),
    Fault.CATALOG_UNAVAILABLE: (CatalogUnavailable, "*", "catalog unreachable"),
    Fault.REGISTRATION_REFUSED: (RegistrationRefused, "register_file", "registration refused"),
    Fault.NAME_TOO_LONG: (StorageRefused, "put", "file name too long for this storage element"),
    Fault.CHECKSUM_MISMATCH: (TransferCorrupted, "put", "checksum mismatch after transfer"),
    Fault.PARTIAL_WRITE: (TransferCorrupted, "put", "partial write: size differs after transfer"),
}


@dataclass
class _Rule:
    target: str
    operation: str
    fault: Fault
    remaining: int | None
    lfn: str | None = None


class FaultInjector:
    """Scripted faults and call counts for the SEs and catalogs of an environment."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        #: Calls seen, by (SE or catalog name, operation), failed ones included.
        self.calls: Counter[tuple[str, str]] = Counter()

    def inject(
        self,
        target: str,
        fault: Fault | str,
        *,
        operation: str | None = None,
        times: int | None = 1,
        lfn: str | None = None,
    ) -> None:
        """
        Make the next ``times`` matching calls fail (``times=None``: every call until cleared).

        Args:
            target: the SE or catalog name.
            fault: what goes wrong.
            operation: which operation fails (default: the one the fault belongs to, see :class:`Fault`).
            times: how many calls fail; ``None`` for all of them.
            lfn: only calls for this LFN fail (default: calls for any LFN, or none).
        """
        kind = Fault(fault)
        self._rules.append(_Rule(target, operation or _ERRORS[kind][1], kind, times, lfn))

    def clear(self, target: str | None = None) -> None:
        """Remove the faults of one SE or catalog, or all of them."""
        self._rules = [rule for rule in self._rules if target is not None and rule.target != target]

    def check(self, target: str, operation: str, lfn: str | None = None) -> None:
        """
        Count a call, and raise the scripted fault if one applies.

        Raises:
            FailoverError: the scripted fault's error.
        """
        self.calls[(target, operation)] += 1
        for rule in self._rules:
            if rule.lfn is not None and rule.lfn != lfn:
                continue
            if rule.target == target and rule.operation in ("*", operation) and rule.remaining != 0:
                if rule.remaining is not None:
                    rule.remaining -= 1
                raise _error(rule.fault, target, lfn)

    def wrap(self, env: Environment) -> Environment:
        """A copy of ``env`` whose SEs and catalogs go through this injector."""
        storage = {name: FaultyStorage(se, self) for name, se in env.storage.items()}
        catalogs = CatalogSet(FaultyCatalog(catalog, self) for catalog in env.catalogs)
        return dataclasses.replace(env, storage=storage, catalogs=catalogs)


def _error(fault: Fault, target: str, lfn: str | None) -> FailoverError:
    cls, _, message = _ERRORS[fault]
    if cls in (CatalogUnavailable, RegistrationRefused):
        return cls(f"{target}: {message}", catalog=target, lfn=lfn)
    return cls(f"{target}: {message}", se=target, lfn=lfn)


class FaultyStorage(StorageElement):
    """A storage element sharing another's filesystem, whose calls go through a :class:`FaultInjector`."""

    def __init__(self, inner: StorageElement, injector: FaultInjector) -> None:
        # Share the inner SE's state (filesystem, root, backend) instead of opening it again.
        self.__dict__.update(inner.__dict__)
        self.injector = injector

    def put(self, local_path: str | os.PathLike[str], lfn: str, **options: Any) -> PutResult:
        """Put, unless a fault is scripted."""
        self.injector.check(self.name, "put", lfn)
        return super().put(local_path, lfn, **options)

    def put_many(self, items: Sequence[PutItem]) -> list[PutResult | FailoverError]:
        """Put many, each failing alone if a fault is scripted for its put."""
        return _unless_faulted(
            [item.lfn for item in items],
            lambda lfn: self.injector.check(self.name, "put", lfn),
            lambda kept: super(FaultyStorage, self).put_many([items[i] for i in kept]),
        )

    def copy_many_to(
        self, target: StorageElement, lfns: Sequence[str], **options: Any
    ) -> list[PutResult | FailoverError]:
        """Copy many, each failing alone if a fault is scripted on its read or on the target's write."""
        return _unless_faulted(
            lfns,
            lambda lfn: self._check_copy(target, lfn),
            lambda kept: super(FaultyStorage, self).copy_many_to(target, [lfns[i] for i in kept], **options),
        )

    def _check_copy(self, target: StorageElement, lfn: str) -> None:
        self.injector.check(self.name, "read", lfn)
        if isinstance(target, FaultyStorage):
            target.injector.check(target.name, "copy", lfn)

    def copy_to(self, target: StorageElement, lfn: str, **options: Any) -> PutResult:
        """Copy, unless a fault is scripted on this SE's read or the target's write."""
        self._check_copy(target, lfn)
        return super().copy_to(target, lfn, **options)

    def stat(self, lfn: str) -> ObjectInfo | None:
        """Stat, unless a fault is scripted."""
        self.injector.check(self.name, "stat", lfn)
        return super().stat(lfn)

    def exists(self, lfn: str) -> bool:
        """Exists, unless a fault is scripted."""
        self.injector.check(self.name, "exists", lfn)
        return super().exists(lfn)

    def checksum(self, lfn: str, kind: ChecksumType) -> str:
        """Checksum, unless a fault is scripted."""
        self.injector.check(self.name, "checksum", lfn)
        return super().checksum(lfn, kind)

    def open_read(self, lfn: str) -> _GeneratorContextManager[BinaryIO, None, None]:
        """Open for reading, unless a fault is scripted."""
        self.injector.check(self.name, "read", lfn)
        return super().open_read(lfn)

    def remove(self, lfn: str) -> bool:
        """Remove, unless a fault is scripted."""
        self.injector.check(self.name, "remove", lfn)
        return super().remove(lfn)


def _unless_faulted(
    lfns: Sequence[str],
    check: Callable[[str], None],
    run: Callable[[list[int]], list[PutResult | FailoverError]],
) -> list[PutResult | FailoverError]:
    """Check each LFN's call (a scripted fault is that LFN's outcome), run the rest together, in order."""
    outcomes: dict[int, PutResult | FailoverError] = {}
    kept: list[int] = []
    for index, lfn in enumerate(lfns):
        try:
            check(lfn)
            kept.append(index)
        except FailoverError as err:
            outcomes[index] = err
    outcomes.update(zip(kept, run(kept), strict=True))
    return [outcomes[index] for index in range(len(lfns))]


class FaultyCatalog:
    """A catalog whose calls go through a :class:`FaultInjector` before reaching the real one."""

    def __init__(self, inner: FileCatalog, injector: FaultInjector) -> None:
        self.inner = inner
        self.injector = injector
        self.name = inner.name
        self.master = inner.master

    def _check(self, operation: str, lfn: str | None = None) -> None:
        self.injector.check(self.name, operation, lfn)

    def get_file(self, lfn: str) -> FileEntry | None:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("get_file", lfn)
        return self.inner.get_file(lfn)

    def get_replicas(self, lfn: str) -> list[Replica]:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("get_replicas", lfn)
        return self.inner.get_replicas(lfn)

    def find_guid(self, guid: str) -> str | None:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("find_guid")
        return self.inner.find_guid(guid)

    def path_conflict(self, lfn: str) -> str | None:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("path_conflict", lfn)
        return self.inner.path_conflict(lfn)

    def register_file(self, entry: FileEntry, replica: Replica) -> bool:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("register_file", entry.lfn)
        return self.inner.register_file(entry, replica)

    def register_replica(self, replica: Replica) -> bool:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("register_replica", replica.lfn)
        return self.inner.register_replica(replica)

    def remove_replica(self, lfn: str, se: str) -> bool:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("remove_replica", lfn)
        return self.inner.remove_replica(lfn, se)

    def remove_file(self, lfn: str) -> bool:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("remove_file", lfn)
        return self.inner.remove_file(lfn)

    def iter_files(self) -> Iterator[tuple[FileEntry, list[Replica]]]:
        """See :class:`~failover.catalog.FileCatalog`."""
        self._check("iter_files")
        return self.inner.iter_files()

    def batch(self) -> AbstractContextManager[None]:
        """See :class:`~failover.catalog.FileCatalog` (no fault: a batch itself writes nothing)."""
        return self.inner.batch()
