"""
Plain-SQL access to the request store: ``requests``, ``operations`` and ``files``.

A request is first a *draft*: its operations are written by the transitions that emit them, so they
are durable at once, but no executor takes the request until it is committed (``committed_at`` set).
A request is identified by its client key (one per client session), so committing it again, or
resuming its client in another process, finds the same row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from persistence.codec import dumps, loads
from persistence.errors import NotFound

__all__ = [
    "FileRow",
    "NewFile",
    "NewOperation",
    "OperationRow",
    "RequestHeader",
    "RequestRow",
    "client_requests",
    "commit_request",
    "count_uploads_of_request",
    "ensure_request",
    "find_request",
    "insert_operation",
    "later_operations_on",
    "requests_holding",
    "load_operations",
    "load_request",
    "load_requests",
    "operations_of_requests",
    "request_keys",
    "insert_operation_after",
    "operations_of_machine",
    "set_request_status",
    "update_file",
    "update_operation",
]


@dataclass(frozen=True)
class RequestHeader:
    """What describes a request before it has an id."""

    client_key: str
    name: str = "noname_request"
    owner: str = ""
    owner_group: str = ""
    source_component: str = ""
    job_id: int = 0


@dataclass(frozen=True)
class RequestRow:
    """One stored request."""

    id: int
    client_key: str
    name: str
    owner: str
    owner_group: str
    source_component: str
    job_id: int
    status: str
    error: str
    creation_time: str
    submit_time: str | None
    last_update: str
    not_before: str | None
    committed_at: str | None
    lease_owner: str | None
    lease_expires: str | None


@dataclass(frozen=True)
class NewFile:
    """A file of an operation about to be stored."""

    lfn: str
    pfn: str = ""
    checksum: str = ""
    checksum_type: str = ""
    size: int = 0
    guid: str = ""
    status: str = "Waiting"
    attempt: int = 0
    error: str = ""


@dataclass(frozen=True)
class NewOperation:
    """An operation about to be stored; ``idem_key`` and ``machine_id`` when a transition emitted it."""

    type: str
    files: Sequence[NewFile]
    target_se: Sequence[str] = ()
    source_se: str = ""
    catalog: Sequence[str] = ()
    arguments: str = ""
    status: str = "Queued"
    error: str = ""
    idem_key: str | None = None
    machine_id: str | None = None


@dataclass(frozen=True)
class OperationRow:
    """One stored operation."""

    id: int
    request_id: int
    idem_key: str | None
    machine_id: str | None
    order_no: int
    type: str
    status: str
    target_se: list[str]
    source_se: str
    catalog: list[str]
    arguments: str
    error: str
    creation_time: str
    last_update: str


@dataclass(frozen=True)
class FileRow:
    """One stored file of an operation, with its per-attempt error history."""

    id: int
    operation_id: int
    lfn: str
    pfn: str
    checksum: str
    checksum_type: str
    size: int
    guid: str
    status: str
    attempt: int
    error: str
    errors: list[str] = field(default_factory=list)


_REQUEST_COLUMNS = (
    "id, client_key, name, owner, owner_group, source_component, job_id, status, error, creation_time, "
    "submit_time, last_update, not_before, committed_at, lease_owner, lease_expires"
)
_OPERATION_COLUMNS = (
    "id, request_id, idem_key, machine_id, order_no, type, status, target_se, source_se, catalog, arguments, "
    "error, creation_time, last_update"
)
_FILE_COLUMNS = (
    "id, operation_id, lfn, pfn, checksum, checksum_type, size, guid, status, attempt, error, errors"
)


def _qualified(columns: str, table: str) -> str:
    """``columns`` each prefixed with ``table.``, for a query that joins operations and files."""
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


_OPERATION_COLUMNS_O = _qualified(_OPERATION_COLUMNS, "o")
_FILE_COLUMNS_F = _qualified(_FILE_COLUMNS, "f")


def request_keys(client_key: str) -> Iterator[str]:
    """
    The stored keys of a client's successive requests: ``key``, then ``key#2``, ``key#3``, ...

    A client's request takes new operations only while it is a draft; once committed, the next
    operation opens the next generation, so nothing is ever added to a request an executor may hold
    or has finished.
    """
    yield client_key
    generation = 2
    while True:
        yield f"{client_key}#{generation}"
        generation += 1


def ensure_request(conn: sqlite3.Connection, header: RequestHeader, at: str) -> int:
    """The id of the client's draft request; the next generation is created (a Waiting draft) if needed."""
    for key in request_keys(header.client_key):
        found = _request_by_key(conn, key)
        if found is None:
            cursor = conn.execute(
                "INSERT INTO requests (client_key, name, owner, owner_group, source_component, job_id, "
                "status, error, creation_time, last_update) VALUES (?, ?, ?, ?, ?, ?, 'Waiting', '', ?, ?)",
                (
                    key,
                    header.name,
                    header.owner,
                    header.owner_group,
                    header.source_component,
                    header.job_id,
                    at,
                    at,
                ),
            )
            return int(cursor.lastrowid or 0)
        if found.committed_at is None:
            return found.id
    raise AssertionError("unreachable")  # pragma: no cover - request_keys never ends


def _request_by_key(conn: sqlite3.Connection, key: str) -> RequestRow | None:
    values = conn.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE client_key = ?", (key,)).fetchone()
    return RequestRow(*values) if values else None


def client_requests(conn: sqlite3.Connection, client_key: str) -> list[RequestRow]:
    """Every request of a client, one per generation (see :func:`request_keys`), oldest first."""
    found: list[RequestRow] = []
    for key in request_keys(client_key):
        row = _request_by_key(conn, key)
        if row is None:
            break
        found.append(row)
    return found


def find_request(conn: sqlite3.Connection, client_key: str) -> RequestRow | None:
    """The client's latest request (its draft if it has one), or None when it has none."""
    generations = client_requests(conn, client_key)
    return generations[-1] if generations else None


def load_request(conn: sqlite3.Connection, request_id: int) -> RequestRow:
    """
    Load one request.

    Raises:
        NotFound: no request has that id.
    """
    values = conn.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE id = ?", (request_id,)).fetchone()
    if values is None:
        raise NotFound(f"no request {request_id}")
    return RequestRow(*values)


def load_requests(conn: sqlite3.Connection, request_ids: Sequence[int]) -> dict[int, RequestRow]:
    """Load several requests in one query, by id (an id with no request is left out)."""
    marks = ", ".join("?" * len(request_ids))
    query = f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE id IN ({marks})"
    return {
        row.id: row for row in (RequestRow(*values) for values in conn.execute(query, tuple(request_ids)))
    }


def insert_operation(conn: sqlite3.Connection, request_id: int, operation: NewOperation, at: str) -> int:
    """Append an operation (and its files) after the request's last one; return its id."""
    (order_no,) = conn.execute(
        "SELECT COALESCE(MAX(order_no) + 1, 0) FROM operations WHERE request_id = ?", (request_id,)
    ).fetchone()
    cursor = conn.execute(
        f"INSERT INTO operations ({_OPERATION_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            request_id,
            operation.idem_key,
            operation.machine_id,
            order_no,
            operation.type,
            operation.status,
            dumps(list(operation.target_se)),
            operation.source_se,
            dumps(list(operation.catalog)),
            operation.arguments,
            operation.error,
            at,
            at,
        ),
    )
    operation_id = int(cursor.lastrowid or 0)
    conn.executemany(
        f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]')",
        [
            (
                operation_id,
                f.lfn,
                f.pfn,
                f.checksum,
                f.checksum_type,
                f.size,
                f.guid,
                f.status,
                f.attempt,
                f.error,
            )
            for f in operation.files
        ],
    )
    return operation_id


def _operation(values: tuple[Any, ...]) -> OperationRow:
    fields = list(values)
    fields[7], fields[9] = loads(fields[7]), loads(fields[9])
    return OperationRow(*fields)


def _file(values: tuple[Any, ...]) -> FileRow:
    file_id, operation_id, lfn, pfn, checksum, checksum_type, size, guid, status, attempt, error, errors = (
        values
    )
    return FileRow(
        file_id,
        operation_id,
        lfn,
        pfn,
        checksum,
        checksum_type,
        size,
        guid,
        status,
        attempt,
        error,
        loads(errors),
    )


def load_operations(conn: sqlite3.Connection, request_id: int) -> list[tuple[OperationRow, list[FileRow]]]:
    """A request's operations in order, each with its files in insertion order."""
    return operations_of_requests(conn, [request_id])[request_id]


def operations_of_requests(
    conn: sqlite3.Connection, request_ids: Sequence[int]
) -> dict[int, list[tuple[OperationRow, list[FileRow]]]]:
    """:func:`load_operations` of several requests in two queries, by request id."""
    marks = ", ".join("?" * len(request_ids))
    found: dict[int, list[tuple[OperationRow, list[FileRow]]]] = {n: [] for n in request_ids}
    files: dict[int, list[FileRow]] = {}
    operations = conn.execute(
        f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE request_id IN ({marks}) "
        "ORDER BY request_id, order_no",
        tuple(request_ids),
    )
    for values in operations:
        op = _operation(values)
        files[op.id] = []
        found[op.request_id].append((op, files[op.id]))
    query = (
        f"SELECT {_FILE_COLUMNS_F} FROM files f "
        f"JOIN operations o ON o.id = f.operation_id WHERE o.request_id IN ({marks}) ORDER BY f.id"
    )
    for values in conn.execute(query, tuple(request_ids)):
        files[values[1]].append(_file(values))
    return found


def operations_of_machine(conn: sqlite3.Connection, machine_id: str) -> list[OperationRow]:
    """Every operation a machine's transitions emitted, in emission order."""
    rows = conn.execute(
        f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE machine_id = ? ORDER BY id", (machine_id,)
    )
    return [_operation(values) for values in rows]


def requests_holding(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, int]:
    """The request holding the operation stored under each of ``keys``, by key (absent: none stored)."""
    if not keys:
        return {}
    marks = ", ".join("?" * len(keys))
    rows = conn.execute(
        f"SELECT idem_key, request_id FROM operations WHERE idem_key IN ({marks})", tuple(keys)
    )
    return {key: int(request_id) for key, request_id in rows}


def later_operations_on(
    conn: sqlite3.Connection, lfn: str, machine_id: str, since: str
) -> list[OperationRow]:
    """
    The operations on ``lfn`` whose file is Done, recorded at ``since`` or later, that ``machine_id`` did not
    emit (a job's own requests, imported ones), in the order they were recorded.
    """
    rows = conn.execute(
        f"SELECT {_OPERATION_COLUMNS_O} FROM files f JOIN operations o ON o.id = f.operation_id "
        "WHERE f.lfn = ? AND f.status = 'Done' AND (o.machine_id IS NULL OR o.machine_id != ?) "
        "AND o.last_update >= ? ORDER BY o.last_update, o.id",
        (lfn, machine_id, since),
    )
    return [_operation(values) for values in rows]


def count_uploads_of_request(conn: sqlite3.Connection, request_id: int, state: str) -> int:
    """How many distinct machines the request's operations belong to are in ``state`` now."""
    row = conn.execute(
        "SELECT COUNT(DISTINCT machines.id) FROM operations "
        "JOIN machines ON machines.id = operations.machine_id "
        "WHERE operations.request_id = ? AND machines.state = ?",
        (request_id, state),
    ).fetchone()
    return int(row[0])


def commit_request(conn: sqlite3.Connection, request_id: int, at: str) -> bool:
    """Make a draft request executable; False when it was committed already (nothing changes then)."""
    cursor = conn.execute(
        "UPDATE requests SET committed_at = ?, submit_time = ?, last_update = ? "
        "WHERE id = ? AND committed_at IS NULL",
        (at, at, at, request_id),
    )
    return cursor.rowcount == 1


def update_file(
    conn: sqlite3.Connection, file_id: int, *, status: str, attempt: int, error: str, errors: list[str]
) -> None:
    """Store a file's status, attempt count, last error and error history."""
    conn.execute(
        "UPDATE files SET status = ?, attempt = ?, error = ?, errors = ? WHERE id = ?",
        (status, attempt, error, dumps(errors), file_id),
    )


def update_operation(
    conn: sqlite3.Connection, operation_id: int, *, status: str, error: str, at: str
) -> None:
    """Store an operation's status and error."""
    conn.execute(
        "UPDATE operations SET status = ?, error = ?, last_update = ? WHERE id = ?",
        (status, error, at, operation_id),
    )


def set_request_status(conn: sqlite3.Connection, request_id: int, status: str, error: str, at: str) -> None:
    """Store a request's status and error (lease untouched)."""
    conn.execute(
        "UPDATE requests SET status = ?, error = ?, last_update = ? WHERE id = ?",
        (status, error, at, request_id),
    )


def insert_operation_after(
    conn: sqlite3.Connection, request_id: int, after_order: int, operation: NewOperation, at: str
) -> int:
    """Insert an operation right after the one at ``after_order``, later ones moving down; return its id."""
    # Two steps through negative numbers: UNIQUE (request_id, order_no) is checked row by row.
    conn.execute(
        "UPDATE operations SET order_no = -(order_no + 1) WHERE request_id = ? AND order_no > ?",
        (request_id, after_order),
    )
    conn.execute(
        "UPDATE operations SET order_no = -order_no WHERE request_id = ? AND order_no < 0", (request_id,)
    )
    operation_id = insert_operation(conn, request_id, operation, at)
    conn.execute("UPDATE operations SET order_no = ? WHERE id = ?", (after_order + 1, operation_id))
    return operation_id
