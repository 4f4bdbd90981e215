"""
failover: get a grid job's output files safely onto storage and into the file catalog.

Every upload is a persisted state machine whose transitions produce the requests that finish the job
later (register, replicate to the target, remove the temporary replica), and which survives crashes
and restarts. ``FailoverTransfer`` is a drop-in for DIRAC's client; :func:`upload`, :func:`resume` and
:class:`Executor` are the Pythonic API.
"""

from __future__ import annotations

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.errors import (
    CatalogUnavailable,
    ChecksumMismatch,
    ExecutorInterrupted,
    FailoverError,
    InvalidInput,
    InvalidRequest,
    NameTooLong,
    PermanentError,
    PermissionDenied,
    RegistrationRefused,
    SoleReplica,
    SourceChanged,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
    TransientError,
    UnknownCatalog,
    UnknownStorageElement,
    UploadFailed,
    UploadInterrupted,
)
from failover.executor import Executor, ExecutorPolicy
from failover.fsck import FsckReport, fsck
from failover.operator import cancel_request, cancel_upload, retry_upload
from failover.request import Request
from failover.resume import ResumeReport, resume
from failover.uploads import UploadResult, upload
from failover.workspace import open_workspace
from persistence.requests import RequestHeader

__version__ = "0.1.0"

__all__ = [
    "CatalogUnavailable",
    "ChecksumMismatch",
    "Environment",
    "Executor",
    "ExecutorInterrupted",
    "ExecutorPolicy",
    "FailoverError",
    "FailoverTransfer",
    "FsckReport",
    "InvalidInput",
    "InvalidRequest",
    "NameTooLong",
    "PermanentError",
    "PermissionDenied",
    "RegistrationRefused",
    "Request",
    "RequestHeader",
    "ResumeReport",
    "SoleReplica",
    "SourceChanged",
    "SourceMissing",
    "StorageRefused",
    "StorageUnavailable",
    "TransferCorrupted",
    "TransientError",
    "UnknownCatalog",
    "UnknownStorageElement",
    "UploadFailed",
    "UploadInterrupted",
    "UploadResult",
    "__version__",
    "cancel_request",
    "cancel_upload",
    "fsck",
    "open_workspace",
    "resume",
    "retry_upload",
    "upload",
]
