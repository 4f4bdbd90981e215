"""
Status derivation: files drive their operation, operations drive the request (DIRAC's ``_notify``).

Operation rule (DIRAC ``Operation._notify``), for an operation that has files and is not Canceled; the first
matching line wins:

==============================  =================
files                           operation
==============================  =================
any Scheduled                   Scheduled
any Waiting                     Queued (see below)
any Failed                      Failed (so Failed + Done is Failed)
all Done                        Done, error cleared
==============================  =================

An operation without files keeps the status it was given, as in DIRAC.

Request rule (DIRAC ``Request._notify``): walk the operations in order, skipping Done and Canceled ones.

- A Failed operation met before any runnable one fails the request; the operations after it are left
  as they are and never run.
- Otherwise the first remaining operation is the *current* one: Queued becomes Waiting; the request is
  Scheduled if the current operation is Scheduled, else Waiting. Later Waiting operations become Queued.
- No current operation: the request is Done (error cleared) if some operation is Done, Canceled if every
  operation was canceled, and Waiting if it has no operation at all.

A Canceled request is left untouched: cancelling is an operator's decision that derivation never undoes.
Assigned is not derived: the executor sets it while it holds the request, and the derived status replaces
it when the executor refreshes, as DIRAC's ``putRequest`` does.

Deliberate differences from DIRAC: the result does not depend on how often it is computed (DIRAC's scan
can report Waiting for a request whose current operation is Scheduled until it is run again); Canceled
operations and requests are never overwritten; every status change stamps ``last_update``, on the
operation and on the request.

>>> from failover.request.model import File, Operation, OperationType, Request
>>> request = Request(operations=[
...     Operation(OperationType.RemoveFile, files=[File("/a", status=FileStatus.Done)]),
...     Operation(OperationType.RemoveFile, files=[File("/b")]),
...     Operation(OperationType.RemoveFile, files=[File("/c")]),
... ])
>>> refresh_statuses(request) is request.operations[1]  # it returns the current operation
True
>>> [str(op.status) for op in request], str(request.status)
(['Done', 'Waiting', 'Queued'], 'Waiting')
>>> current_operation(request) is request.operations[1]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from failover.request.model import (
    FileStatus,
    Operation,
    OperationStatus,
    Request,
    RequestStatus,
    utc_now,
)

__all__ = ["current_operation", "operation_status_from_files", "refresh_statuses"]

# Precedence of file statuses over the operation's status: first present wins; none present means all Done.
_FILE_PRECEDENCE: tuple[tuple[FileStatus, OperationStatus], ...] = (
    (FileStatus.Scheduled, OperationStatus.Scheduled),
    (FileStatus.Waiting, OperationStatus.Queued),
    (FileStatus.Failed, OperationStatus.Failed),
)

_PASSED = frozenset({OperationStatus.Done, OperationStatus.Canceled})

# The request's status while an operation is current, by that operation's status.
_REQUEST_FOR_CURRENT: dict[OperationStatus, RequestStatus] = {
    OperationStatus.Scheduled: RequestStatus.Scheduled,
}


def operation_status_from_files(statuses: Iterable[FileStatus]) -> OperationStatus | None:
    """
    Derive an operation's status from its files' statuses.

    Args:
        statuses: the status of each file of the operation.

    Returns:
        Scheduled, Queued, Failed or Done by the table in this module's docstring, or ``None`` when there are
        no files (the operation then keeps its own status).
    """
    present = set(statuses)
    if not present:
        return None
    for file_status, operation_status in _FILE_PRECEDENCE:
        if file_status in present:
            return operation_status
    return OperationStatus.Done


def current_operation(request: Request) -> Operation | None:
    """
    Return the operation to execute next, without changing anything.

    File statuses are taken into account even if :func:`refresh_statuses` has not run since they changed.

    Args:
        request: the request to look at.

    Returns:
        The first operation that is neither Done nor Canceled, or ``None`` when the request is Canceled,
        empty, finished, or blocked by a Failed operation before any runnable one.
    """
    if request.status == RequestStatus.Canceled:
        return None
    index = _derive(request.operations)[1]
    return None if index is None else request.operations[index]


def failure_reason(request: Request) -> str:
    """
    Why ``request`` failed, or was canceled: the first Failed operation's type and error (else its
    first failed file's), else the request's own error; "" when there is none.
    """
    for op in request.operations:
        if op.status == OperationStatus.Failed:
            errors = [f.error for f in op.files if f.error]
            return f"{op.type}: {op.error or (errors[0] if errors else 'failed')}"
    return request.error


def refresh_statuses(
    request: Request, *, now: datetime | None = None, changed: Sequence[Operation] | None = None
) -> Operation | None:
    """
    Recompute, in place, every operation's status from its files and the request's status from its operations.

    The rules are in this module's docstring. Running it twice changes nothing the second time, not even
    ``last_update``.

    Args:
        request: the request to update.
        now: the time to stamp on what changed (default: the current UTC time); pass it for repeatable runs.
        changed: the operations whose files or status changed since this request's last refresh, when the
            caller knows (the executor does: the operations it just ran). Then only they, and the
            operations from the current one on until the next current one, are looked at, with the same
            result as looking at all: a request of 20,000 operations run one pair at a time otherwise
            costs its whole length per pair. None: look at every operation.

    Returns:
        The current operation afterwards (as :func:`current_operation` would return it), or None.
    """
    if request.status == RequestStatus.Canceled:
        return None
    stamp = now if now is not None else utc_now()
    if changed is not None and (found := _refresh_from_hint(request, changed, stamp)) is not None:
        return found
    statuses, current, new_status = _derive(request.operations)
    pairs = zip(request.operations, statuses, strict=True)
    updated = [_set_status(operation, status, stamp) for operation, status in pairs]
    if new_status == RequestStatus.Done:
        request.error = ""
    _set_request_status(request, new_status, any(updated), stamp)
    request.current_hint = current
    return None if current is None else request.operations[current]


def _refresh_from_hint(request: Request, changed: Sequence[Operation], stamp: datetime) -> Operation | None:
    """
    The incremental refresh: from the last refresh's current operation, with only ``changed`` moved since.
    Returns the new current operation; None when it cannot tell (no hint, an operation changed before the
    hint, or no operation left to run, or a Failed one: rare ends), and then nothing was changed.
    """
    ops, start = request.operations, request.current_hint
    if start is None or start >= len(ops):
        return None
    derived: dict[int, OperationStatus] = {}
    for operation in changed:
        try:
            index = request.index_of(operation)
        except ValueError:
            return None
        if index < start:
            return None
        derived[index] = _from_files(operation)
    current = start
    # Unchanged operations still hold what the last refresh derived: passed and Failed read the same.
    while (status := derived.get(current, ops[current].status)) in _PASSED:
        current += 1
        if current == len(ops):
            return None
    if status == OperationStatus.Failed:
        return None
    updated = False
    for index, status in derived.items():
        if index == current and status == OperationStatus.Queued:
            status = OperationStatus.Waiting
        elif index > current and status == OperationStatus.Waiting:
            status = OperationStatus.Queued
        updated = _set_status(ops[index], status, stamp) or updated
    if current not in derived and ops[current].status == OperationStatus.Queued:
        updated = _set_status(ops[current], OperationStatus.Waiting, stamp) or updated
    new_status = _REQUEST_FOR_CURRENT.get(ops[current].status, RequestStatus.Waiting)
    _set_request_status(request, new_status, updated, stamp)
    request.current_hint = current
    return ops[current]


def _set_request_status(
    request: Request, status: RequestStatus, operations_changed: bool, stamp: datetime
) -> None:
    if status != request.status or operations_changed:
        request.status = status
        request.last_update = stamp


def _derive(operations: Sequence[Operation]) -> tuple[list[OperationStatus], int | None, RequestStatus]:
    """Return the derived status of each operation, the index of the current one and the request's status."""
    statuses = [_from_files(operation) for operation in operations]
    current, failed = _scan(statuses)
    if current is not None:
        if statuses[current] == OperationStatus.Queued:
            statuses[current] = OperationStatus.Waiting
        for index in range(current + 1, len(statuses)):
            if statuses[index] == OperationStatus.Waiting:
                statuses[index] = OperationStatus.Queued
    return statuses, current, _request_status(statuses, current, failed)


def _from_files(operation: Operation) -> OperationStatus:
    if operation.status == OperationStatus.Canceled:
        return operation.status
    derived = operation_status_from_files(file.status for file in operation.files)
    return operation.status if derived is None else derived


def _scan(statuses: Sequence[OperationStatus]) -> tuple[int | None, bool]:
    """Return (index of the current operation, whether a Failed operation blocks the request)."""
    for index, status in enumerate(statuses):
        if status in _PASSED:
            continue
        if status == OperationStatus.Failed:
            return None, True
        return index, False
    return None, False


def _request_status(statuses: Sequence[OperationStatus], current: int | None, failed: bool) -> RequestStatus:
    if failed:
        return RequestStatus.Failed
    if current is not None:
        return _REQUEST_FOR_CURRENT.get(statuses[current], RequestStatus.Waiting)
    if not statuses:
        return RequestStatus.Waiting
    if OperationStatus.Done in statuses:
        return RequestStatus.Done
    return RequestStatus.Canceled


def _set_status(operation: Operation, status: OperationStatus, stamp: datetime) -> bool:
    if status == OperationStatus.Done:
        operation.error = ""
    if status == operation.status:
        return False
    operation.status = status
    operation.last_update = stamp
    return True
