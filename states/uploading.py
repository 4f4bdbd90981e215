"""
Decisions out of Uploading: a put failed (retry or next SE), every SE failed, the input was refused,
or the file landed (registered, registration deferred, or failed over).

Events carry what the outside world did. A failed attempt: ``{"se", "error": <error record>,
"retryable": bool}``. A landed file: ``{"se", "pfn", "size", "checksum", "checksum_type",
"registered": [catalog, ...], "unregistered": {catalog: reason}}``. A refusal: ``{"error": record}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fsm.clock import format_time
from fsm.spec import Decision, TransitionContext
from states.names import Role, UploadTrigger
from states.operations import register_file_operations, remove_replica_operation, replicate_operation
from states.upload_data import current_candidate, role_of

__all__ = [
    "can_try_again",
    "decide_attempt_failed",
    "decide_exhausted",
    "decide_failed_over",
    "decide_landed",
    "decide_refused",
    "failure_trigger",
    "is_exhausted",
    "landed_at_destination_fully_registered",
    "landed_at_destination_partly_registered",
    "landed_at_failover",
    "nothing_tried_yet",
    "outcome_trigger",
]


def _retry_same_se(data: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """SPEC §2: a transient error is retried on the same SE only with retryUpload and exactly one SE."""
    attempts = data["attempts"].get(event["se"], 0) + 1
    return (
        bool(data["retry_upload"])
        and len(data["candidates"]) == 1
        and bool(event["retryable"])
        and attempts < len(data["retry_delays"]) + 1
    )


def _has_next_se(data: Mapping[str, Any]) -> bool:
    return int(data["index"]) + 1 < len(data["candidates"])


def can_try_again(ctx: TransitionContext) -> bool:
    """Guard: the SE being tried failed, and an attempt is left (same SE after a wait, or the next SE)."""
    return _is_current(ctx) and (_retry_same_se(ctx.data, ctx.event) or _has_next_se(ctx.data))


def is_exhausted(ctx: TransitionContext) -> bool:
    """Guard: nothing is left to try: there was no candidate, or the last one just failed for good."""
    if current_candidate(ctx.data) is None:
        return True
    return _is_current(ctx) and not (_retry_same_se(ctx.data, ctx.event) or _has_next_se(ctx.data))


def nothing_tried_yet(ctx: TransitionContext) -> bool:
    """Guard: no put was attempted yet (a refusal happens before anything is uploaded)."""
    return not ctx.data["attempts"]


def failure_trigger(data: Mapping[str, Any], event: Mapping[str, Any]) -> UploadTrigger:
    """Which trigger records a failed attempt: another try, or the end."""
    if current_candidate(data) is not None and (_retry_same_se(data, event) or _has_next_se(data)):
        return UploadTrigger.ATTEMPT_FAILED
    return UploadTrigger.EXHAUSTED


def _record_failure(ctx: TransitionContext) -> dict[str, Any]:
    se = ctx.event.get("se")
    attempts = dict(ctx.data["attempts"])
    failures = list(ctx.data["failures"])
    if se is not None:
        attempts[se] = attempts.get(se, 0) + 1
        failures.append(
            {"se": se, "attempt": attempts[se], "at": format_time(ctx.now), "error": ctx.event["error"]}
        )
    return {"attempts": attempts, "failures": failures}


def decide_attempt_failed(ctx: TransitionContext) -> Decision:
    """Record the failure; either wait and retry the same SE, or move on to the next SE at once."""
    changes = _record_failure(ctx)
    if _retry_same_se(ctx.data, ctx.event):
        delay = ctx.data["retry_delays"][changes["attempts"][ctx.event["se"]] - 1]
        changes["next_attempt_at"] = format_time(ctx.now + timedelta(seconds=delay))
    else:
        changes["index"] = int(ctx.data["index"]) + 1
        changes["next_attempt_at"] = None
    return Decision(changes)


def decide_exhausted(ctx: TransitionContext) -> Decision:
    """Record the last failure; the upload has failed on every SE."""
    changes = _record_failure(ctx)
    changes["index"] = len(ctx.data["candidates"])
    changes["next_attempt_at"] = None
    return Decision(changes)


def decide_refused(ctx: TransitionContext) -> Decision:
    """The upload is refused before any put (for instance a conflicting catalog entry)."""
    return Decision({"refusal": ctx.event["error"]})


def _is_current(ctx: TransitionContext) -> bool:
    """The event is about the SE being tried now."""
    candidate = current_candidate(ctx.data)
    return candidate is not None and candidate["se"] == ctx.event.get("se")


def landed_at_destination_fully_registered(ctx: TransitionContext) -> bool:
    """Guard: landed at the current destination SE and registered in every chosen catalog."""
    return (
        _is_current(ctx)
        and role_of(ctx.data, ctx.event["se"]) is Role.DESTINATION
        and not ctx.event["unregistered"]
    )


def landed_at_destination_partly_registered(ctx: TransitionContext) -> bool:
    """Guard: landed at the current destination SE, some catalogs not registered."""
    return (
        _is_current(ctx)
        and role_of(ctx.data, ctx.event["se"]) is Role.DESTINATION
        and bool(ctx.event["unregistered"])
    )


def landed_at_failover(ctx: TransitionContext) -> bool:
    """Guard: landed at the current SE, which is a failover SE."""
    return _is_current(ctx) and role_of(ctx.data, ctx.event["se"]) is Role.FAILOVER


def _landed_changes(ctx: TransitionContext) -> dict[str, Any]:
    event = ctx.event
    return {
        "uploaded_se": event["se"],
        "pfn": event["pfn"],
        "size": event["size"],
        "checksum": event["checksum"],
        "checksum_type": event["checksum_type"],
        "registered_catalogs": list(event["registered"]),
        "unregistered_catalogs": dict(event["unregistered"]),
        "next_attempt_at": None,
    }


def decide_landed(ctx: TransitionContext) -> Decision:
    """At a destination SE: one ``RegisterFile`` per catalog that did not register (maybe none)."""
    changes = _landed_changes(ctx)
    upload = {**ctx.data, **changes}
    return Decision(changes, tuple(register_file_operations(upload, list(ctx.event["unregistered"]))))


def decide_failed_over(ctx: TransitionContext) -> Decision:
    """At a failover SE: RegisterFile(s) if needed, ReplicateAndRegister, then RemoveReplica (SPEC §3)."""
    changes = _landed_changes(ctx)
    upload = {**ctx.data, **changes}
    operations = register_file_operations(upload, list(ctx.event["unregistered"]))
    operations += [replicate_operation(upload), remove_replica_operation(upload)]
    return Decision(changes, tuple(operations))


def outcome_trigger(data: Mapping[str, Any], event: Mapping[str, Any]) -> UploadTrigger:
    """Which trigger records a landed file: registered, registration deferred, or failed over."""
    if role_of(data, event["se"]) is Role.FAILOVER:
        return UploadTrigger.FAILED_OVER
    return UploadTrigger.REGISTRATION_DEFERRED if event["unregistered"] else UploadTrigger.UPLOADED
