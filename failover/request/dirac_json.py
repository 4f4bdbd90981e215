"""
Requests to and from DIRAC's request JSON: what ``Request.toJSON()`` writes and ``Request(json)`` reads.

What matches DIRAC (8.1 and later):

- the keys and their order are those of DIRAC's ``_getJSONData``; no private ``_`` keys are written, as DIRAC
  writes none. ``RequestID``, ``OperationID`` and ``FileID`` appear only once the store has set them, and
  an operation repeats its request's ``RequestID`` and a file its operation's ``OperationID`` as DIRAC's
  database objects do;
- times are UTC in ``%Y-%m-%d %H:%M:%S``; ``null`` stays ``None`` (``NotBefore``, ``LastUpdate``);
- ``TargetSE`` and ``Catalog`` are comma-separated strings; reading strips spaces and drops empty names;
- ``Arguments`` and ``SourceComponent``, which DIRAC keeps as bytes, are written as text, as its encoder
  decodes them; ``ChecksumType`` is written as DIRAC normalises it (``adler32`` and ``AD`` become
  ``ADLER32``);
- ``Order`` is the operation's position; reading takes operations in list order, as DIRAC does;
- ``null`` for a text or number field reads as its default, as DIRAC skips falsy values.

Deliberate differences:

- ``Owner`` is written, not 8.0's ``OwnerDN`` (a certificate DN is not a user name); ``OwnerDN``,
  ``DIRACSetup`` and other unknown keys are ignored when reading;
- reading keeps the statuses the document states: DIRAC re-derives them on load, which would turn a
  Canceled request back into a Waiting one. Call :func:`~failover.request.status.refresh_statuses` for
  DIRAC's view;
- malformed documents raise :class:`~failover.errors.InvalidRequest` naming the field
  (``Operations[0].Files[2].Status``) where DIRAC raises a bare ``TypeError`` or ``ValueError``;
- failover's own ``Operation.idempotency_key``, ``Operation.machine_id`` and ``File.errors`` history are
  not carried: DIRAC has no place for them. Sub-second parts of times are dropped, as DIRAC's format has none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from failover.checksum import parse_checksum_type
from failover.errors import InvalidInput, InvalidRequest
from failover.request.model import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
    utc_now,
)

__all__ = ["DIRAC_TIME_FORMAT", "request_from_dirac_json", "request_to_dirac_json"]

#: DIRAC's ``_datetimeFormat``, always UTC.
DIRAC_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_E = TypeVar("_E", bound=StrEnum)


def request_to_dirac_json(request: Request) -> dict[str, Any]:
    """
    Build the JSON-able dict DIRAC's ``Request.toJSON()`` would write for this request.

    Args:
        request: the request; it is not modified (statuses are written as they are).

    Returns:
        A dict of plain ``str``/``int``/``None``/list/dict values, ready for :func:`json.dumps`.

    Raises:
        InvalidRequest: a value DIRAC could not hold: an SE or catalog name with a comma, or an unknown
            checksum type.
    """
    data: dict[str, Any] = {} if request.request_id is None else {"RequestID": request.request_id}
    data.update(
        RequestName=request.name,
        Owner=request.owner,
        OwnerGroup=request.owner_group,
        Status=str(request.status),
        Error=request.error,
        SourceComponent=request.source_component,
        JobID=request.job_id,
        CreationTime=_format_time(request.creation_time),
        SubmitTime=_format_time(request.submit_time),
        LastUpdate=_format_time(request.last_update),
        NotBefore=_format_time(request.not_before),
    )
    data["Operations"] = [
        _operation_to_json(operation, index, request.request_id, f"Operations[{index}]")
        for index, operation in enumerate(request.operations)
    ]
    return data


def request_from_dirac_json(data: Mapping[str, Any] | str) -> Request:
    """
    Build a request from DIRAC's request JSON.

    Args:
        data: the document, as a JSON string or as the dict :func:`json.loads` gives.

    Returns:
        A new request, with statuses as the document states them.

    Raises:
        InvalidRequest: the text is not JSON, or a field has the wrong type, an unknown status, an unknown
            operation type, an unknown checksum type or a time not in DIRAC's format; the message names the
            field.

    Example:
        >>> request = request_from_dirac_json('{"RequestName": "r", "Owner": "alice", "JobID": 7}')
        >>> request.name, request.owner, request.job_id, request.operations
        ('r', 'alice', 7, [])
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"request JSON is not valid JSON: {exc}") from exc
    fields = _Fields(data, "")
    return Request(
        name=fields.text("RequestName"),
        owner=fields.text("Owner"),
        owner_group=fields.text("OwnerGroup"),
        source_component=fields.text("SourceComponent"),
        job_id=fields.integer("JobID"),
        status=fields.member("Status", RequestStatus, RequestStatus.Waiting),
        error=fields.text("Error"),
        creation_time=fields.time("CreationTime") or utc_now(),
        submit_time=fields.time("SubmitTime") or utc_now(),
        last_update=fields.time("LastUpdate"),
        not_before=fields.time("NotBefore"),
        operations=[_operation_from_json(item, path) for path, item in fields.items("Operations")],
        request_id=fields.optional_integer("RequestID"),
    )


def _operation_to_json(operation: Operation, index: int, request_id: int | None, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if operation.operation_id is not None:
        data["OperationID"] = operation.operation_id
    if request_id is not None:
        data["RequestID"] = request_id
    data.update(
        Type=str(operation.type),
        Status=str(operation.status),
        Arguments=operation.arguments,
        Order=index,
        SourceSE=operation.source_se,
        TargetSE=_join(operation.target_se, f"{path}.TargetSE"),
        Catalog=_join(operation.catalog, f"{path}.Catalog"),
        Error=operation.error,
        CreationTime=_format_time(operation.creation_time),
        SubmitTime=_format_time(operation.submit_time),
        LastUpdate=_format_time(operation.last_update),
    )
    data["Files"] = [
        _file_to_json(file, operation.operation_id, f"{path}.Files[{number}]")
        for number, file in enumerate(operation.files)
    ]
    return data


def _file_to_json(file: File, operation_id: int | None, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if file.file_id is not None:
        data["FileID"] = file.file_id
    if operation_id is not None:
        data["OperationID"] = operation_id
    data.update(
        Status=str(file.status),
        LFN=file.lfn,
        PFN=file.pfn,
        ChecksumType=_checksum_type(file.checksum_type, f"{path}.ChecksumType"),
        Checksum=file.checksum,
        GUID=file.guid,
        Attempt=file.attempt,
        Size=file.size,
        Error=file.error,
    )
    return data


def _operation_from_json(data: object, path: str) -> Operation:
    fields = _Fields(data, path)
    return Operation(
        type=fields.member("Type", OperationType),
        target_se=fields.names("TargetSE"),
        source_se=fields.text("SourceSE"),
        catalog=fields.names("Catalog"),
        arguments=fields.text("Arguments"),
        status=fields.member("Status", OperationStatus, OperationStatus.Queued),
        error=fields.text("Error"),
        files=[_file_from_json(item, item_path) for item_path, item in fields.items("Files")],
        operation_id=fields.optional_integer("OperationID"),
        creation_time=fields.time("CreationTime") or utc_now(),
        submit_time=fields.time("SubmitTime") or utc_now(),
        last_update=fields.time("LastUpdate"),
    )


def _file_from_json(data: object, path: str) -> File:
    fields = _Fields(data, path)
    return File(
        lfn=fields.text("LFN"),
        pfn=fields.text("PFN"),
        checksum=fields.text("Checksum"),
        checksum_type=_checksum_type(fields.text("ChecksumType"), f"{path}.ChecksumType"),
        size=fields.integer("Size"),
        guid=fields.text("GUID"),
        status=fields.member("Status", FileStatus, FileStatus.Waiting),
        attempt=fields.integer("Attempt"),
        error=fields.text("Error"),
        file_id=fields.optional_integer("FileID"),
    )


def _format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    # A naive time is taken to be UTC already; astimezone() would read it as local time.
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.strftime(DIRAC_TIME_FORMAT)


def _join(names: list[str], path: str) -> str:
    for name in names:
        if "," in name:
            raise InvalidRequest(f"{path}: name {name!r} contains a comma, which DIRAC uses as separator")
    return ",".join(name.strip() for name in names if name.strip())


def _checksum_type(value: str, path: str) -> str:
    if not value:
        return ""
    try:
        return str(parse_checksum_type(value))
    except InvalidInput as exc:
        raise InvalidRequest(f"{path}: unknown checksum type {value!r} (use ADLER32, MD5 or SHA1)") from exc


class _Fields:
    """Typed reads of one JSON object's fields; every error names the field by its path."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"{path or 'request'}: expected a JSON object, got {_kind(data)}")
        self._data = data
        self._path = path

    def text(self, key: str) -> str:
        value = self._data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._error(key, f"expected a string, got {_kind(value)}")
        return value

    def optional_integer(self, key: str) -> int | None:
        value = self._data.get(key)
        if value is None:
            return None
        # bool is an int subclass, but true/false is never a valid count or id.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._error(key, f"expected a non-negative integer, got {_kind(value)} {value!r}")
        return value

    def integer(self, key: str) -> int:
        value = self.optional_integer(key)
        return 0 if value is None else value

    def member(self, key: str, enum: type[_E], default: _E | None = None) -> _E:
        value = self.text(key)
        if not value:
            if default is None:
                raise self._error(key, "missing, and it is required")
            return default
        try:
            return enum(value)
        except ValueError:
            expected = ", ".join(str(item) for item in enum)
            raise self._error(key, f"unknown value {value!r} (expected one of {expected})") from None

    def time(self, key: str) -> datetime | None:
        value = self.text(key)
        if not value:
            return None
        try:
            # DIRAC drops a fractional part the same way before parsing.
            parsed = datetime.strptime(value.split(".")[0], DIRAC_TIME_FORMAT)
        except ValueError:
            raise self._error(key, f"time {value!r} is not in DIRAC's format {DIRAC_TIME_FORMAT}") from None
        return parsed.replace(tzinfo=UTC)

    def names(self, key: str) -> list[str]:
        value = self._data.get(key)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            items: list[str] = value
        else:
            items = self.text(key).split(",")
        return [item.strip() for item in items if item.strip()]

    def items(self, key: str) -> list[tuple[str, object]]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._error(key, f"expected a list, got {_kind(value)}")
        prefix = f"{self._path}.{key}" if self._path else key
        return [(f"{prefix}[{index}]", item) for index, item in enumerate(value)]

    def _error(self, key: str, reason: str) -> InvalidRequest:
        return InvalidRequest(f"{self._path}.{key}: {reason}" if self._path else f"{key}: {reason}")


def _kind(value: object) -> str:
    """Name a JSON value's type as JSON does."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)
