"""Decisions out of Replicating: the target replica is verified and registered, the temporary one removed."""

from __future__ import annotations

from fsm.spec import Decision, TransitionContext

__all__ = ["decide_cleaned"]


def decide_cleaned(ctx: TransitionContext) -> Decision:
    """The file now lives at its target SE(s) only; the failover SE no longer holds it."""
    return Decision({"final_ses": list(ctx.data["targets"]), "temporary_se": None})
