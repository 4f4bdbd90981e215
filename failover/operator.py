"""
Operator actions: retry a Stuck upload, cancel a request or a Stuck upload.

Each action is one transaction that also fires the upload machines' transitions, so it is journaled.
A retry never reopens the failed request (Failed is final, kept as history): it copies the upload's
unfinished operations into a new committed request, files Waiting with attempts reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from failover.environment import Environment
from failover.errors import InvalidInput
from failover.executor.upload_hooks import on_request_failed
from failover.request import OperationStatus, OperationType, RequestStatus
from failover.request_store import REQUEST_KEY
from fsm.clock import format_time
from fsm.crashpoints import crash_point
from persistence.requests import (
    FileRow,
    OperationRow,
    commit_request,
    find_request,
    load_operations,
    load_request,
    set_request_status,
    update_operation,
)
from states import UploadState, UploadTrigger

__all__ = ["cancel_request", "cancel_upload", "retry_upload", "retry_uploads"]

#: Operations a cancel stops.
_OPEN = {
    OperationStatus.Queued.value,
    OperationStatus.Waiting.value,
    OperationStatus.Scheduled.value,
    OperationStatus.Assigned.value,
}
#: Operations a retry issues again (besides the replication).
_UNFINISHED = _OPEN | {OperationStatus.Failed.value, OperationStatus.Canceled.value}


def _stuck(env: Environment, machine_id: str) -> dict[str, Any]:
    row = env.uploads.load(machine_id)
    if row.state != UploadState.STUCK:
        raise InvalidInput(f"upload {machine_id} is {row.state}, not Stuck", lfn=row.data["lfn"])
    return row.data


def _payload(op: OperationRow, files: list[FileRow]) -> dict[str, Any]:
    """An operation as the upload machine emits it, files fresh (Waiting, no attempt)."""
    return {
        "type": op.type,
        "target_se": list(op.target_se),
        "source_se": op.source_se,
        "catalog": list(op.catalog),
        "files": [
            {
                "lfn": f.lfn,
                "pfn": f.pfn,
                "checksum": f.checksum,
                "checksum_type": f.checksum_type,
                "size": f.size,
                "guid": f.guid,
            }
            for f in files
        ],
    }


def retry_upload(env: Environment, machine_id: str) -> int:
    """
    Retry a Stuck upload: its operations re-issued in a new committed request, the upload back to FailedOver.

    The ``operator_retry`` transition emits the operations, so they are stored with it (journaled, under
    idempotency keys) and the request is committed in the same transaction.

    Returns:
        The id of the new request.

    Raises:
        InvalidInput: the upload is not Stuck.
    """
    return retry_uploads(env, [machine_id])[0]


def retry_uploads(env: Environment, machine_ids: Sequence[str]) -> list[int]:
    """
    Retry several Stuck uploads in one transaction, each as :func:`retry_upload` does: in a new request of
    its own, so that a file that fails again holds up no other. (A request that fails on one file leaves
    every upload after it Stuck: thousands, for one job's upload of thousands of files.)

    Returns:
        The ids of the new requests, in the order of the uploads.

    Raises:
        InvalidInput: an upload is not Stuck (then nothing is retried).
    """
    stuck = {machine_id: _stuck(env, machine_id) for machine_id in dict.fromkeys(machine_ids)}
    reissued = _Reissued(env)
    created: list[int] = []
    with env.store.transaction() as conn:
        for machine_id, data in stuck.items():
            generation = int(data.get("operator_retries", 0)) + 1
            header = {**data[REQUEST_KEY], "client_key": f"retry:{machine_id}:{generation}"}
            event = {"request": header, "operations": reissued(machine_id, data.get("stuck_request"))}
            env.uploads.fire(machine_id, UploadTrigger.OPERATOR_RETRY, event)
            new = find_request(conn, header["client_key"])
            assert new is not None
            commit_request(conn, new.id, format_time(env.clock()))
            created.append(new.id)
        crash_point("before-commit:operator:retry")
    crash_point("after-commit:operator:retry")
    return created


class _Reissued:
    """
    What a retry re-issues for an upload: the replication (idempotent, so always) and every unfinished
    operation of the stuck request. Each request's operations are loaded once, not once per upload.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.by_request: dict[int, dict[str, list[dict[str, Any]]]] = {}

    def __call__(self, machine_id: str, request_id: int | None) -> list[dict[str, Any]]:
        if request_id is None:
            (request_id,) = self.env.store.conn.execute(
                "SELECT MAX(request_id) FROM operations WHERE machine_id = ?", (machine_id,)
            ).fetchone()
        key = int(request_id or 0)
        if key not in self.by_request:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for op, files in load_operations(self.env.store.conn, key):
                reissue = op.status in _UNFINISHED or op.type == OperationType.ReplicateAndRegister.value
                if op.machine_id and reissue:
                    grouped.setdefault(op.machine_id, []).append(_payload(op, files))
            self.by_request[key] = grouped
        return self.by_request[key].get(machine_id, [])


def cancel_request(env: Environment, request_id: int, reason: str = "canceled by operator") -> None:
    """
    Cancel a request that has not ended: its unfinished operations are Canceled, its uploads Stuck or Failed.

    Raises:
        InvalidInput: the request has ended already.
    """
    at = format_time(env.clock())
    with env.store.transaction() as conn:
        # Read in the transaction: an executor cannot end the request between this check and the cancel.
        row = load_request(conn, request_id)
        if RequestStatus(row.status).is_final:
            raise InvalidInput(f"request {request_id} is {row.status} already")
        for op, _ in load_operations(conn, request_id):
            if op.status in _OPEN:
                update_operation(conn, op.id, status=OperationStatus.Canceled.value, error=reason, at=at)
        set_request_status(conn, request_id, RequestStatus.Canceled.value, reason, at)
        on_request_failed(env, request_id, reason)


def cancel_upload(env: Environment, machine_id: str) -> None:
    """
    Give up on a Stuck upload: it ends Failed, the reason it got stuck kept.

    Raises:
        InvalidInput: the upload is not Stuck.
    """
    _stuck(env, machine_id)
    env.uploads.fire(machine_id, UploadTrigger.CANCELLED, {})
