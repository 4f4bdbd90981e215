"""
The request lifecycle of SPEC.md §4 as machines: requests, operations and files.

These specs describe the statuses the executor moves through and are checked like the upload
machine (reachability, traps, final exits), so the lifecycle documented in ``diagrams/`` is the one
the code enforces. Final statuses: requests Done, Failed, Canceled; operations Done, Failed,
Canceled; files Done, Failed.
"""

from __future__ import annotations

from enum import StrEnum

from fsm.spec import MachineSpec, Transition

__all__ = ["FILE_MACHINE", "OPERATION_MACHINE", "REQUEST_MACHINE", "RequestTrigger"]


class RequestTrigger(StrEnum):
    """Events of the request, operation and file lifecycles."""

    ASSIGN = "assign"
    RELEASE = "release"
    LEASE_EXPIRED = "lease_expired"
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    ACTIVATE = "activate"
    DONE = "done"
    FAIL = "fail"
    CANCEL = "cancel"


T = RequestTrigger

REQUEST_MACHINE = MachineSpec(
    name="request",
    states=("Waiting", "Scheduled", "Assigned", "Done", "Failed", "Canceled"),
    initial="Waiting",
    finals=frozenset({"Done", "Failed", "Canceled"}),
    transitions=(
        Transition(
            T.ASSIGN, ("Waiting",), "Assigned", doc="an executor takes it under a lease (NotBefore ≤ now)"
        ),
        Transition(
            T.RELEASE, ("Assigned",), "Waiting", doc="put back: more to do later (NotBefore = now + backoff)"
        ),
        Transition(T.LEASE_EXPIRED, ("Assigned",), "Waiting", doc="its executor vanished; eligible again"),
        Transition(T.SCHEDULE, ("Waiting",), "Scheduled", doc="a transfer was handed to a transfer service"),
        Transition(T.UNSCHEDULE, ("Scheduled",), "Waiting", doc="the scheduled transfer finished"),
        Transition(T.DONE, ("Assigned",), "Done", doc="every operation is Done"),
        Transition(T.FAIL, ("Assigned",), "Failed", doc="an operation failed: nothing after it runs"),
        Transition(T.CANCEL, ("Waiting", "Scheduled", "Assigned"), "Canceled", doc="an operator cancels it"),
    ),
    checked="a40d8ec3b6a6373c0c67e2f6591f4471a0df66f59e9da6765b76aa62009db3a7",  # see UPLOAD_MACHINE
)

OPERATION_MACHINE = MachineSpec(
    name="operation",
    states=("Queued", "Waiting", "Scheduled", "Assigned", "Done", "Failed", "Canceled"),
    initial="Queued",
    finals=frozenset({"Done", "Failed", "Canceled"}),
    transitions=(
        Transition(
            T.ACTIVATE, ("Queued",), "Waiting", doc="every operation before it is Done: it is current"
        ),
        Transition(T.ASSIGN, ("Waiting",), "Assigned", doc="its handler is running"),
        Transition(T.RELEASE, ("Assigned",), "Waiting", doc="some files will be retried later"),
        Transition(T.SCHEDULE, ("Waiting", "Assigned"), "Scheduled", doc="a file is Scheduled"),
        Transition(T.UNSCHEDULE, ("Scheduled",), "Waiting", doc="no file is Scheduled any more"),
        Transition(T.DONE, ("Waiting", "Assigned", "Scheduled"), "Done", doc="every file is Done"),
        Transition(
            T.FAIL, ("Waiting", "Assigned", "Scheduled"), "Failed", doc="a file Failed, none still to do"
        ),
        Transition(
            T.CANCEL, ("Queued", "Waiting", "Scheduled", "Assigned"), "Canceled", doc="its request canceled"
        ),
    ),
    checked="e94e74bfc1a6d0c114b95e22cd640d0e3708681868645f1d30db19b1e4472cb7",  # see UPLOAD_MACHINE
)

FILE_MACHINE = MachineSpec(
    name="file",
    states=("Waiting", "Scheduled", "Done", "Failed"),
    initial="Waiting",
    finals=frozenset({"Done", "Failed"}),
    transitions=(
        Transition(T.SCHEDULE, ("Waiting",), "Scheduled", doc="handed to a transfer service"),
        Transition(T.UNSCHEDULE, ("Scheduled",), "Waiting", doc="the transfer service gave it back"),
        Transition(T.DONE, ("Waiting", "Scheduled"), "Done", doc="the handler's effect is there"),
        Transition(T.FAIL, ("Waiting", "Scheduled"), "Failed", doc="non-retryable, or max attempts reached"),
    ),
    checked="944157673fbf7836ed532d947528a8b7a7b50dffa03f989bdce62537e3909c6e",  # see UPLOAD_MACHINE
)
