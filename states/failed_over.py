"""Decisions out of FailedOver: the executor starts copying the file to its target SE."""

from __future__ import annotations

from fsm.clock import format_time
from fsm.spec import Decision, TransitionContext

__all__ = ["decide_replication_started"]


def decide_replication_started(ctx: TransitionContext) -> Decision:
    """Note when replication started; the temporary replica stays until the target copy is verified."""
    return Decision({"replication_started_at": format_time(ctx.now)})
