"""
The request store as the client and executor see it: requests built from upload transitions.

:class:`RequestSink` is the emission sink of the upload machine: every operation a transition emits
is written into the upload's request *inside the transition's transaction*, under the emission's
idempotency key. So an operation exists exactly when the transition that produced it committed, and
never twice. :class:`RequestStore` reads requests back as :class:`~failover.request.Request` objects
and commits them (validated, idempotent).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from failover.errors import InvalidRequest
from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
    refresh_statuses,
    request_from_dirac_json,
    validate_request,
)
from fsm.clock import Clock, format_time, parse_time, utc_now
from fsm.crashpoints import crash_point
from fsm.engine import idempotency_key
from fsm.spec import Emission
from persistence.codec import loads
from persistence.db import Store
from persistence.requests import (
    FileRow,
    NewFile,
    NewOperation,
    OperationRow,
    RequestHeader,
    RequestRow,
    commit_request,
    ensure_request,
    find_request,
    insert_operation,
    load_operations,
    load_request,
    load_requests,
    operations_of_requests,
    requests_holding,
)

__all__ = ["REQUEST_KEY", "RequestSink", "RequestStore", "header_data", "operation_from_model"]

#: The key of an upload's data that names the request its operations go to.
REQUEST_KEY = "request"


def header_data(header: RequestHeader) -> dict[str, Any]:
    """The request header as stored in an upload's data (JSON-able)."""
    return {
        "client_key": header.client_key,
        "name": header.name,
        "owner": header.owner,
        "owner_group": header.owner_group,
        "source_component": header.source_component,
        "job_id": header.job_id,
    }


def _new_file(payload: Mapping[str, Any]) -> NewFile:
    return NewFile(
        lfn=payload["lfn"],
        pfn=payload.get("pfn", ""),
        checksum=payload.get("checksum") or "",
        checksum_type=payload.get("checksum_type") or "",
        size=int(payload.get("size") or 0),
        guid=payload.get("guid") or "",
    )


def _new_operation(emission: Emission, key: str, machine_id: str) -> NewOperation:
    payload = emission.payload
    return NewOperation(
        type=payload["type"],
        files=[_new_file(f) for f in payload["files"]],
        target_se=payload["target_se"],
        source_se=payload["source_se"],
        catalog=payload["catalog"],
        idem_key=key,
        machine_id=machine_id,
    )


class RequestSink:
    """Writes an upload's emitted operations into its request, in the transition's transaction."""

    def write(self, store: Store, machine_id: str, seq: int, emissions: Sequence[Emission], at: str) -> None:
        """Append each emission as an operation of the upload's request (created as a draft if new)."""
        if not emissions:
            return
        (text,) = store.conn.execute(
            f"SELECT json_extract(data, '$.{REQUEST_KEY}') FROM machines WHERE id = ?", (machine_id,)
        ).fetchone()
        request_id = ensure_request(store.conn, RequestHeader(**loads(text)), at)
        for position, emission in enumerate(emissions):
            key = idempotency_key(machine_id, seq, position, emission.kind)
            insert_operation(store.conn, request_id, _new_operation(emission, key, machine_id), at)


def _time(text: str | None) -> Any:
    return parse_time(text) if text else None


def _file_model(row: FileRow) -> File:
    return File(
        lfn=row.lfn,
        pfn=row.pfn,
        checksum=row.checksum,
        checksum_type=row.checksum_type,
        size=row.size,
        guid=row.guid,
        status=FileStatus(row.status),
        attempt=row.attempt,
        error=row.error,
        errors=list(row.errors),
        file_id=row.id,
    )


def _operation_model(row: OperationRow, files: list[FileRow]) -> Operation:
    return Operation(
        type=OperationType(row.type),
        target_se=list(row.target_se),
        source_se=row.source_se,
        catalog=list(row.catalog),
        arguments=row.arguments,
        status=OperationStatus(row.status),
        order=row.order_no,
        error=row.error,
        files=[_file_model(f) for f in files],
        operation_id=row.id,
        idempotency_key=row.idem_key,
        machine_id=row.machine_id,
        creation_time=parse_time(row.creation_time),
        submit_time=parse_time(row.creation_time),
        last_update=parse_time(row.last_update),
    )


def _request_model(row: RequestRow, operations: list[tuple[OperationRow, list[FileRow]]]) -> Request:
    """A stored request with its operations and files, statuses derived as DIRAC does."""
    return Request(
        name=row.name,
        owner=row.owner,
        owner_group=row.owner_group,
        source_component=row.source_component,
        job_id=row.job_id,
        status=RequestStatus(row.status),
        error=row.error,
        creation_time=parse_time(row.creation_time),
        submit_time=_time(row.submit_time) or parse_time(row.creation_time),
        last_update=parse_time(row.last_update),
        not_before=_time(row.not_before),
        request_id=row.id,
        # Given whole, numbered once: add_operation checks each against all before it (20 s for 20,000).
        operations=[_operation_model(operation, files) for operation, files in operations],
    )


def operation_from_model(operation: Operation) -> NewOperation:
    """A stored-operation value from a model operation (one the caller built, not emitted)."""
    files = [
        NewFile(f.lfn, f.pfn, f.checksum, f.checksum_type, f.size, f.guid, f.status.value, f.attempt, f.error)
        for f in operation.files
    ]
    return NewOperation(
        type=operation.type.value,
        files=files,
        target_se=operation.target_se,
        source_se=operation.source_se,
        catalog=operation.catalog,
        arguments=operation.arguments,
        status=operation.status.value,
        error=operation.error,
        machine_id=operation.machine_id,
    )


class RequestStore:
    """
    Requests in a failover database, as :class:`~failover.request.Request` objects.

    Args:
        store: the database.
        clock: where stored times come from.
    """

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    @property
    def conn(self) -> sqlite3.Connection:
        """The database connection."""
        return self.store.conn

    def find(self, client_key: str) -> RequestRow | None:
        """The request row of a client session, or None when it has no operation yet."""
        return find_request(self.conn, client_key)

    def ensure(self, header: RequestHeader) -> int:
        """The id of the session's request, created as a draft if needed."""
        with self.store.transaction() as conn:
            return ensure_request(conn, header, format_time(self.clock()))

    def holding_requests(self, keys: Sequence[str]) -> dict[str, int]:
        """The request holding the operation stored under each of ``keys``, by key (absent: none stored)."""
        return requests_holding(self.conn, keys)

    def add_operations(
        self, request_id: int, operations: Sequence[Operation], *, keys: Sequence[str] | None = None
    ) -> None:
        """
        Append caller-built operations to a request, all in one transaction.

        With ``keys`` (one idempotency key per operation), an operation whose key is stored already is
        skipped, so adding the same operations again stores nothing.
        """
        at = format_time(self.clock())
        with self.store.transaction() as conn:
            for index, operation in enumerate(operations):
                key = keys[index] if keys is not None else None
                if (
                    key is not None
                    and conn.execute("SELECT 1 FROM operations WHERE idem_key = ?", (key,)).fetchone()
                ):
                    continue
                insert_operation(conn, request_id, replace(operation_from_model(operation), idem_key=key), at)

    def load(self, request_id: int) -> Request:
        """
        Load a request with its operations and files, statuses derived as DIRAC does.

        Raises:
            NotFound: no request has that id.
        """
        row = load_request(self.conn, request_id)
        return _request_model(row, load_operations(self.conn, request_id))

    def load_many(self, request_ids: Sequence[int]) -> dict[int, Request]:
        """
        Load several requests as :meth:`load` does, in three queries; by id (an id with no request is
        left out).
        """
        if not request_ids:
            return {}
        rows = load_requests(self.conn, request_ids)
        operations = operations_of_requests(self.conn, list(rows))
        return {request_id: _request_model(row, operations[request_id]) for request_id, row in rows.items()}

    def import_dirac(
        self,
        document: str,
        *,
        owner: tuple[str, str] = ("", ""),
        ses: Collection[str] | None = None,
        catalogs: Collection[str] | None = None,
    ) -> tuple[int, bool]:
        """
        Store a DIRAC request JSON document as a committed request, ready for the executor.

        The request is keyed by the document's digest, so importing the same document again finds it and
        stores nothing.

        Args:
            document: the request's JSON text.
            owner: (owner, owner group) for a document that names none.
            ses: the storage elements configured here, if the request must name only those.
            catalogs: the catalogs configured here, if the request must name only those.

        Returns:
            The request id, and True when it was stored now (False: imported before).

        Raises:
            InvalidRequest: the document is not a valid request, or names an SE or a catalog that is not
                in ``ses`` or ``catalogs`` (the executor could only fail it).
        """
        key = "import:" + hashlib.sha256(document.encode("utf-8")).hexdigest()
        found = self.find(key)
        if found is not None and found.committed_at is not None:
            return found.id, False
        request = request_from_dirac_json(document)
        request.owner, request.owner_group = request.owner or owner[0], request.owner_group or owner[1]
        validate_request(request)
        _check_known_names(request, ses, catalogs)
        header = RequestHeader(
            key, request.name, request.owner, request.owner_group, request.source_component, request.job_id
        )
        request_id = self.ensure(header)
        keys = [f"{key}/{index}" for index in range(len(request.operations))]
        self.add_operations(request_id, request.operations, keys=keys)
        return request_id, self.commit(request_id)

    def commit(self, request_id: int) -> bool:
        """
        Validate a draft request and make it executable.

        Returns:
            True when it was committed now, False when it had been committed already.

        Raises:
            InvalidRequest: the request does not validate (it stays a draft).
        """
        with self.store.transaction() as conn:
            # Loaded in the transaction: what is validated is what is committed, even with another client
            # adding to the request meanwhile.
            request = self.load(request_id)
            refresh_statuses(request)
            validate_request(request)
            committed = commit_request(conn, request_id, format_time(self.clock()))
            crash_point("before-commit-request")
        crash_point("after-commit-request")
        return committed


def _check_known_names(
    request: Request, ses: Collection[str] | None, catalogs: Collection[str] | None
) -> None:
    """Refuse a request that names an SE or a catalog not configured here (when those are given)."""
    for index, op in enumerate(request.operations):
        names = [("SE", name, ses) for name in [*op.target_se, *filter(None, [op.source_se])]]
        names += [("catalog", name, catalogs) for name in op.catalog]
        for what, name, known in names:
            if known is not None and name not in known:
                raise InvalidRequest(
                    f"operation {index} ({op.type}) names the {what} {name!r}, which is not configured here "
                    f"(configured: {', '.join(known)}): the executor could only fail it"
                )
