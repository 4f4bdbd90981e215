"""
The upload lifecycle: its states, transitions and what each transition emits.

Also the request, operation and file lifecycles of the request store, declared the same way so that
they are checked and drawn by the same code.
"""

from __future__ import annotations

from states.machine import UPLOAD_MACHINE
from states.names import Role, UploadState, UploadTrigger
from states.request_lifecycle import FILE_MACHINE, OPERATION_MACHINE, REQUEST_MACHINE, RequestTrigger
from states.retry import DIRAC_PUT_RETRY, RetryPolicy
from states.upload_data import new_upload_data

#: Every machine of the project, by diagram name.
MACHINES = {
    "upload": UPLOAD_MACHINE,
    "request": REQUEST_MACHINE,
    "operation": OPERATION_MACHINE,
    "file": FILE_MACHINE,
}

__all__ = [
    "DIRAC_PUT_RETRY",
    "FILE_MACHINE",
    "MACHINES",
    "OPERATION_MACHINE",
    "REQUEST_MACHINE",
    "RequestTrigger",
    "RetryPolicy",
    "Role",
    "UPLOAD_MACHINE",
    "UploadState",
    "UploadTrigger",
    "new_upload_data",
]
