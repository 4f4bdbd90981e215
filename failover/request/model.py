"""
The request: an ordered list of operations, each on a list of files, as DIRAC's RMS models it.

The classes are plain mutable dataclasses because the executor updates statuses in place. Statuses
are enums valued by DIRAC's names, so ``RequestStatus.Done == "Done"``. Operation lists of SEs and
catalogs are Python lists here; DIRAC's comma-separated strings exist only at the JSON edge
(:mod:`failover.request.dirac_json`). Derived statuses are computed by
:func:`failover.request.status.refresh_statuses`, never implicitly by these classes.

>>> request = Request(owner="alice", owner_group="vo_user")
>>> request.add_operation(Operation(OperationType.RemoveFile, files=[File("/vo/a")]))
>>> request.add_operation(Operation(OperationType.RemoveFile, files=[File("/vo/b")]))
>>> [op.order for op in request], len(request), request.is_empty
([0, 1], 2, False)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

__all__ = [
    "File",
    "FileStatus",
    "Operation",
    "OperationStatus",
    "OperationType",
    "Request",
    "RequestStatus",
    "utc_now",
]


def utc_now() -> datetime:
    """
    Return the current UTC time, aware, truncated to whole seconds.

    DIRAC stores times to the second, so truncating here keeps a fresh object equal to its JSON round trip.

    Returns:
        The current time in UTC, with ``microsecond == 0``.
    """
    return datetime.now(UTC).replace(microsecond=0)


class RequestStatus(StrEnum):
    """Status of a whole request (DIRAC's ``Request.ALL_STATES``)."""

    Waiting = "Waiting"
    Scheduled = "Scheduled"
    Assigned = "Assigned"
    Done = "Done"
    Failed = "Failed"
    Canceled = "Canceled"

    @property
    def is_final(self) -> bool:
        """True for Done, Failed and Canceled: nothing more will run."""
        return self in _FINAL_REQUEST


class OperationStatus(StrEnum):
    """Status of one operation (DIRAC's ``Operation.ALL_STATES``)."""

    Queued = "Queued"
    Waiting = "Waiting"
    Scheduled = "Scheduled"
    Assigned = "Assigned"
    Done = "Done"
    Failed = "Failed"
    Canceled = "Canceled"

    @property
    def is_final(self) -> bool:
        """True for Done, Failed and Canceled."""
        return self in _FINAL_OPERATION


class FileStatus(StrEnum):
    """Status of one file within an operation."""

    Waiting = "Waiting"
    Scheduled = "Scheduled"
    Done = "Done"
    Failed = "Failed"

    @property
    def is_final(self) -> bool:
        """True for Done and Failed."""
        return self in _FINAL_FILE


class OperationType(StrEnum):
    """The operation types failover emits and executes; any other DIRAC type is rejected."""

    ReplicateAndRegister = "ReplicateAndRegister"
    RemoveReplica = "RemoveReplica"
    RegisterFile = "RegisterFile"
    RegisterReplica = "RegisterReplica"
    RemoveFile = "RemoveFile"


_FINAL_REQUEST = frozenset({RequestStatus.Done, RequestStatus.Failed, RequestStatus.Canceled})
_FINAL_OPERATION = frozenset({OperationStatus.Done, OperationStatus.Failed, OperationStatus.Canceled})
_FINAL_FILE = frozenset({FileStatus.Done, FileStatus.Failed})


@dataclass(slots=True)
class File:
    """
    One file of an operation.

    Args:
        lfn: logical file name, an absolute path.
        pfn: physical file name (URL) of the replica, when the operation needs one.
        checksum: checksum value, empty if unknown.
        checksum_type: ``ADLER32``, ``MD5`` or ``SHA1``; empty exactly when ``checksum`` is.
        size: size in bytes.
        guid: the file's GUID (8-4-4-4-12 hex).
        status: where this file is in the operation.
        attempt: how many times the executor has tried this file.
        error: the last error, for DIRAC's ``Error`` field.
        errors: one reason per failed attempt, oldest first (not carried by DIRAC's JSON).
        file_id: the store's id, ``None`` until stored.
    """

    lfn: str
    pfn: str = ""
    checksum: str = ""
    checksum_type: str = ""
    size: int = 0
    guid: str = ""
    status: FileStatus = FileStatus.Waiting
    attempt: int = 0
    error: str = ""
    errors: list[str] = field(default_factory=list)
    file_id: int | None = None


@dataclass(slots=True)
class Operation:
    """
    One step of a request, applied to each of its files.

    Args:
        type: what to do.
        target_se: target SE names, in order.
        source_se: the SE to copy from, if any.
        catalog: catalog names; empty means every configured catalog.
        arguments: DIRAC's free-form ``Arguments`` (text).
        status: derived from the files by :func:`~failover.request.status.refresh_statuses`.
        order: position in the request, kept by :class:`Request`.
        error: the last error, if any.
        files: the files to act on.
        operation_id: the store's id, ``None`` until stored.
        idempotency_key: failover's key that makes emitting this operation idempotent (not carried by DIRAC).
        machine_id: the upload whose transition emitted it (failover's, not carried by DIRAC); ``None`` for
            an operation made by hand.
        creation_time: when it was created (UTC).
        submit_time: when it was submitted (UTC).
        last_update: when its status last changed (UTC).
    """

    type: OperationType
    target_se: list[str] = field(default_factory=list)
    source_se: str = ""
    catalog: list[str] = field(default_factory=list)
    arguments: str = ""
    status: OperationStatus = OperationStatus.Queued
    order: int = 0
    error: str = ""
    files: list[File] = field(default_factory=list)
    operation_id: int | None = None
    idempotency_key: str | None = None
    machine_id: str | None = None
    creation_time: datetime = field(default_factory=utc_now)
    submit_time: datetime = field(default_factory=utc_now)
    last_update: datetime | None = field(default_factory=utc_now)

    def add_file(self, file: File) -> None:
        """
        Append a file to this operation.

        Args:
            file: the file; it must not already be in this operation.

        Raises:
            ValueError: this very file object is already in the operation.
        """
        if any(existing is file for existing in self.files):
            raise ValueError(f"file {file.lfn} is already in this operation")
        self.files.append(file)

    def __len__(self) -> int:
        """Return the number of files."""
        return len(self.files)

    def __iter__(self) -> Iterator[File]:
        """Iterate over the files in order."""
        return iter(self.files)

    def __bool__(self) -> bool:
        """Return True: an operation without files is still an operation (``__len__`` would say otherwise)."""
        return True


@dataclass(slots=True)
class Request:
    """
    A named, owned list of operations that run in order.

    Args:
        name: DIRAC's ``RequestName``.
        owner: the owner's user name (DIRAC ``Owner``).
        owner_group: the owner's group (DIRAC ``OwnerGroup``).
        source_component: what created the request, e.g. ``FailoverTransfer``.
        job_id: the grid job that made it, 0 if none.
        status: derived from the operations by :func:`~failover.request.status.refresh_statuses`.
        error: the last error, if any.
        creation_time: when it was created (UTC).
        submit_time: when it was submitted (UTC).
        last_update: when it last changed (UTC).
        not_before: do not execute before this time (UTC); ``None`` means at once.
        operations: the operations, in execution order.
        request_id: the store's id, ``None`` until stored.
    """

    name: str = "noname_request"
    owner: str = ""
    owner_group: str = ""
    source_component: str = ""
    job_id: int = 0
    status: RequestStatus = RequestStatus.Waiting
    error: str = ""
    creation_time: datetime = field(default_factory=utc_now)
    submit_time: datetime = field(default_factory=utc_now)
    last_update: datetime | None = field(default_factory=utc_now)
    not_before: datetime | None = None
    operations: list[Operation] = field(default_factory=list)
    request_id: int | None = None
    #: The index of the current operation as the last :func:`~failover.request.status.refresh_statuses`
    #: left it (None: unknown, or none): where an incremental refresh starts looking.
    current_hint: int | None = field(default=None, init=False, repr=False, compare=False)
    #: The client key of the ``FailoverTransfer`` this object is the request of (None: none yet): a
    #: second ``FailoverTransfer`` given the same object, as DIRAC's workflow modules share one, adds to
    #: the same stored request.
    client_key: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._renumber()

    @property
    def is_empty(self) -> bool:
        """True when the request has no operation (an empty request is never committed)."""
        return not self.operations

    def add_operation(self, operation: Operation) -> None:
        """
        Append an operation at the end and set its ``order``.

        Args:
            operation: the operation; it must not already be in this request.

        Raises:
            ValueError: this very operation object is already in the request.
        """
        self._insert(len(self.operations), operation)

    def insert_after(self, existing: Operation, operation: Operation) -> None:
        """
        Insert ``operation`` right after ``existing`` and renumber.

        The executor uses this to add a ``RegisterReplica`` right after the replication it completes.

        Args:
            existing: an operation of this request.
            operation: the new operation.

        Raises:
            ValueError: ``existing`` is not in the request, or ``operation`` already is.
        """
        self._insert(self.index_of(existing) + 1, operation)

    def insert_before(self, existing: Operation, operation: Operation) -> None:
        """
        Insert ``operation`` right before ``existing`` and renumber.

        Args:
            existing: an operation of this request.
            operation: the new operation.

        Raises:
            ValueError: ``existing`` is not in the request, or ``operation`` already is.
        """
        self._insert(self.index_of(existing), operation)

    def __len__(self) -> int:
        """Return the number of operations."""
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        """Iterate over the operations in execution order."""
        return iter(self.operations)

    def __bool__(self) -> bool:
        """Return True: an empty request is still a request (use :attr:`is_empty`)."""
        return True

    def index_of(self, operation: Operation) -> int:
        """
        Where this very operation stands in the request (identity, not equality: two operations may be
        equal field by field and still be distinct steps). Its ``order`` says at once, unless the list was
        changed by hand.

        Raises:
            ValueError: the operation is not in this request.
        """
        if 0 <= operation.order < len(self.operations) and self.operations[operation.order] is operation:
            return operation.order
        for index, candidate in enumerate(self.operations):
            if candidate is operation:
                return index
        raise ValueError(f"operation {operation.type} is not in this request")

    def _insert(self, index: int, operation: Operation) -> None:
        if any(candidate is operation for candidate in self.operations):
            raise ValueError(f"operation {operation.type} is already in this request")
        self.operations.insert(index, operation)
        self._renumber(index)
        self.current_hint = None  # the operations moved: the next refresh looks at them all

    def _renumber(self, start: int = 0) -> None:
        for index in range(start, len(self.operations)):
            self.operations[index].order = index
