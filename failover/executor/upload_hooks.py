"""
How executing operations moves the upload machines on, inside the transaction that records them.

- every ``RegisterFile`` of a Registering upload Done → ``registered``;
- its ``ReplicateAndRegister`` Done → FailedOver ``replication_started`` → Replicating;
- its ``RemoveReplica`` Done → Replicating ``cleaned`` → Cleaned;
- its request Failed or Canceled → Registering ``registration_failed`` → Failed, FailedOver or
  Replicating ``request_failed`` → Stuck (with the reason).
"""

from __future__ import annotations

from failover.environment import Environment
from failover.request import Operation, OperationStatus, OperationType
from fsm.errors import TransitionNotAllowed
from persistence.requests import operations_of_machine
from persistence.rows import MachineRow
from states import UploadState, UploadTrigger

__all__ = ["on_operation_done", "on_request_failed"]

_ON_DONE = {
    OperationType.ReplicateAndRegister: UploadTrigger.REPLICATION_STARTED,  # from FailedOver
    OperationType.RemoveReplica: UploadTrigger.CLEANED,  # from Replicating
    OperationType.RegisterFile: UploadTrigger.REGISTERED,  # from Registering
}
_ON_FAILED = {
    UploadState.REGISTERING: UploadTrigger.REGISTRATION_FAILED,
    UploadState.FAILED_OVER: UploadTrigger.REQUEST_FAILED,
    UploadState.REPLICATING: UploadTrigger.REQUEST_FAILED,
}


def _all_registrations_done(env: Environment, machine_id: str) -> bool:
    rows = operations_of_machine(env.store.conn, machine_id)
    register = [row for row in rows if row.type == OperationType.RegisterFile.value]
    return all(row.status == OperationStatus.Done.value for row in register)


def on_operation_done(env: Environment, op: Operation, fired: dict[str, MachineRow] | None = None) -> None:
    """
    Fire the upload transition an operation's completion means (call inside the recording transaction).

    Args:
        fired: the upload rows stored so far in the caller's transaction, by id: a transition fires from
            the row there instead of loading it again, and stores its result there.
    """
    machine_id = op.machine_id
    if machine_id is None or op.type not in _ON_DONE:
        return
    trigger = _ON_DONE[op.type]
    if trigger is UploadTrigger.REGISTERED and not _all_registrations_done(env, machine_id):
        return
    known = fired.get(machine_id) if fired is not None else None
    try:
        row = env.uploads.fire(machine_id, trigger, {"operation": op.operation_id}, known=known).row
    except TransitionNotAllowed:
        # Each of these triggers fires from one state only: the upload is elsewhere (an operator
        # retry re-issued the operation, or the upload never waited for it), so there is nothing to move.
        return
    if fired is not None:
        fired[machine_id] = row


def on_request_failed(env: Environment, request_id: int, reason: str) -> None:
    """Move every unfinished upload of a failed or canceled request to Failed or Stuck, with the reason."""
    rows = env.store.conn.execute(
        "SELECT machine_id FROM operations WHERE request_id = ? AND machine_id IS NOT NULL "
        "GROUP BY machine_id ORDER BY MIN(id)",
        (request_id,),
    ).fetchall()
    for (machine_id,) in rows:
        trigger = _ON_FAILED.get(UploadState(env.uploads.load(machine_id).state))
        if trigger is not None:
            env.uploads.fire(machine_id, trigger, {"reason": reason, "request": request_id})
