"""
Decisions into and out of Stuck: a request ran out of retries; an operator retries or gives up.

Stuck is not final: ``operator_retry`` returns the upload to the state it got stuck in (one guarded
transition per such state), ``cancelled`` ends it as Failed with the reason kept.
"""

from __future__ import annotations

from collections.abc import Callable

from fsm.spec import Decision, TransitionContext
from states.names import UploadState

__all__ = ["decide_cancelled", "decide_operator_retry", "decide_request_failed", "stuck_from"]


def decide_request_failed(ctx: TransitionContext) -> Decision:
    """Remember where the upload got stuck and why."""
    return Decision({"stuck_from": ctx.source, "stuck_reason": ctx.event["reason"]})


def stuck_from(state: UploadState) -> Callable[[TransitionContext], bool]:
    """Guard factory: the upload got stuck in ``state``."""

    def guard(ctx: TransitionContext) -> bool:
        return ctx.data.get("stuck_from") == state.value

    guard.__name__ = f"stuck_in_{state.value}"
    return guard


def decide_operator_retry(ctx: TransitionContext) -> Decision:
    """Clear the stuck mark and count the operator's retry."""
    return Decision(
        {
            "stuck_from": None,
            "stuck_reason": None,
            "operator_retries": ctx.data.get("operator_retries", 0) + 1,
        }
    )


def decide_cancelled(ctx: TransitionContext) -> Decision:
    """The operator gives up: the upload fails with the reason it got stuck for."""
    return Decision(
        {"refusal": {"code": "cancelled", "message": f"cancelled: {ctx.data.get('stuck_reason')}"}}
    )
