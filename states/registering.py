"""Decisions out of Registering: the deferred ``RegisterFile`` operations succeeded, or failed for good."""

from __future__ import annotations

from fsm.spec import Decision, TransitionContext

__all__ = ["decide_registered", "decide_registration_failed"]


def decide_registered(ctx: TransitionContext) -> Decision:
    """Every catalog now holds the file: move the deferred ones to the registered list."""
    done = {*ctx.data["registered_catalogs"], *ctx.data["unregistered_catalogs"]}
    registered = [name for name in ctx.data["catalogs"] if name in done]
    return Decision({"registered_catalogs": registered, "unregistered_catalogs": {}})


def decide_registration_failed(ctx: TransitionContext) -> Decision:
    """The registration request failed: the upload ends Failed, its replica and the reason kept."""
    return Decision({"refusal": {"code": "registration_failed", "message": ctx.event["reason"]}})
