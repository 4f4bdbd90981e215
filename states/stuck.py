"""
Decisions into and out of Stuck: a request ran out of retries; an operator retries or gives up.

Stuck is not final. ``operator_retry`` always returns the upload to FailedOver and *emits* the
re-issued operations (the replication, which is idempotent, and whatever had not finished) into a new
request named in the event, so they are stored with the transition like every other emission.
``cancelled`` ends the upload as Failed with the reason it got stuck for.
"""

from __future__ import annotations

from fsm.spec import Decision, Emission, TransitionContext
from states.operations import REMOVE_REPLICA

__all__ = ["decide_cancelled", "decide_operator_retry", "decide_request_failed", "reissues_removal"]


def decide_request_failed(ctx: TransitionContext) -> Decision:
    """Remember where the upload got stuck, why, and in which request."""
    changes = {
        "stuck_from": ctx.source,
        "stuck_reason": ctx.event["reason"],
        "stuck_request": ctx.event.get("request"),
    }
    return Decision(changes)


def reissues_removal(ctx: TransitionContext) -> bool:
    """Guard: the re-issued operations remove the temporary replica (else the upload is never Cleaned)."""
    return any(op.get("type") == REMOVE_REPLICA for op in ctx.event.get("operations", ()))


def decide_operator_retry(ctx: TransitionContext) -> Decision:
    """Clear the stuck mark, count the retry, switch to the new request and re-emit its operations."""
    changes = {
        "stuck_from": None,
        "stuck_reason": None,
        "stuck_request": None,
        "operator_retries": ctx.data.get("operator_retries", 0) + 1,
        "request": dict(ctx.event["request"]),
    }
    emissions = tuple(Emission(op["type"], op) for op in ctx.event["operations"])
    return Decision(changes, emissions)


def decide_cancelled(ctx: TransitionContext) -> Decision:
    """The operator gives up: the upload fails with the reason it got stuck for."""
    return Decision(
        {"refusal": {"code": "cancelled", "message": f"cancelled: {ctx.data.get('stuck_reason')}"}}
    )
