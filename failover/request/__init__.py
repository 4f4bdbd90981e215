"""
The request model: DIRAC-compatible requests, their status derivation, validation and JSON form.

A request is an ordered list of operations, each on a list of files. Build one with :class:`Request`,
:class:`Operation` and :class:`File`; :func:`refresh_statuses` derives statuses the way DIRAC does;
:func:`validate_request` checks it before it is stored; :func:`request_to_dirac_json` and
:func:`request_from_dirac_json` exchange it with a DIRAC installation.
"""

from __future__ import annotations

from failover.request.dirac_json import request_from_dirac_json, request_to_dirac_json
from failover.request.model import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
)
from failover.request.status import (
    current_operation,
    failure_reason,
    operation_status_from_files,
    refresh_statuses,
)
from failover.request.validation import find_problems, validate_request

__all__ = [
    "File",
    "FileStatus",
    "Operation",
    "OperationStatus",
    "OperationType",
    "Request",
    "RequestStatus",
    "current_operation",
    "failure_reason",
    "find_problems",
    "operation_status_from_files",
    "refresh_statuses",
    "request_from_dirac_json",
    "request_to_dirac_json",
    "validate_request",
]
