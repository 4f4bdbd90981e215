"""
A small counter machine for the engine, replay and concurrency tests.

::

    Idle ──start──► Counting ──bump (stays below the limit)──► Counting
                       │      ──bump (reaches the limit)──► Done (final)
                       ├──burst──► Counting        (two ``tick`` emissions)
                       ├──smuggle──► Counting      (emits a kind it does not declare)
                       └──pause──► Paused ──resume──► Counting
    Idle / Counting / Paused ──abort──► Aborted (final)

A ``bump`` that would pass the limit is refused by both of its guards. Every guard and decider counts
its calls in a ``Counter`` (``"guard"``, ``"decide"``) and raises :class:`Boom` when the event asks
for it (``{"fail": "guard"}`` or ``{"fail": "decide"}``), so tests can spy on callbacks and break a
transition at a chosen step.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fsm.spec import Decider, Decision, Emission, Guard, MachineSpec, Transition, TransitionContext

__all__ = ["COUNTER", "Boom", "counter_machine", "new_counter_data"]


class Boom(Exception):
    """Raised by a callback on request."""


def new_counter_data(limit: int = 1_000_000) -> dict[str, Any]:
    """The data of a new counter instance."""
    return {"count": 0, "limit": limit}


def _step(ctx: TransitionContext) -> int:
    return int(ctx.event.get("step", 1))


def _room_after(ctx: TransitionContext) -> int:
    return int(ctx.data["limit"]) - int(ctx.data["count"]) - _step(ctx)


def _start(ctx: TransitionContext) -> Decision:
    return Decision({"count": 0, "label": ctx.event.get("label")}, (Emission("started", {}),))


def _bump(ctx: TransitionContext) -> Decision:
    count = int(ctx.data["count"]) + _step(ctx)
    return Decision({"count": count, "last_step": _step(ctx)}, (Emission("tick", {"count": count}),))


def _finish(ctx: TransitionContext) -> Decision:
    bumped = _bump(ctx)
    return Decision(bumped.data, (*bumped.emit, Emission("done", {"at": ctx.seq})))


def _burst(ctx: TransitionContext) -> Decision:
    count = int(ctx.data["count"])
    ticks = (Emission("tick", {"count": count + 1}), Emission("tick", {"count": count + 2}))
    return Decision({"count": count + 2}, ticks)


def _smuggle(ctx: TransitionContext) -> Decision:
    return Decision({"count": -1}, (Emission("tick", {}), Emission("contraband", {})))


def _resume(ctx: TransitionContext) -> Decision:
    return Decision({"resumes": int(ctx.data.get("resumes", 0)) + 1})


def _abort(ctx: TransitionContext) -> Decision:
    return Decision({"aborted_in": ctx.source, "reason": ctx.event.get("reason", "")})


def counter_machine(calls: Counter[str] | None = None) -> MachineSpec:
    """Build the counter machine; its guards and deciders count their calls in ``calls``."""
    spy: Counter[str] = Counter() if calls is None else calls

    def guard(predicate: Guard) -> Guard:
        def check(ctx: TransitionContext) -> bool:
            spy["guard"] += 1
            if ctx.event.get("fail") == "guard":
                raise Boom("guard")
            return predicate(ctx)

        return check

    def decider(decide: Decider) -> Decider:
        def run(ctx: TransitionContext) -> Decision:
            spy["decide"] += 1
            if ctx.event.get("fail") == "decide":
                raise Boom("decide")
            return decide(ctx)

        return run

    return MachineSpec(
        name="counter",
        states=("Idle", "Counting", "Paused", "Done", "Aborted"),
        initial="Idle",
        finals=frozenset({"Done", "Aborted"}),
        transitions=(
            Transition("start", ("Idle",), "Counting", decider(_start), emits=("started",)),
            Transition(
                "bump",
                ("Counting",),
                "Counting",
                decider(_bump),
                guard(lambda ctx: _room_after(ctx) > 0),
                emits=("tick",),
            ),
            Transition(
                "bump",
                ("Counting",),
                "Done",
                decider(_finish),
                guard(lambda ctx: _room_after(ctx) == 0),
                emits=("tick", "done"),
            ),
            Transition("burst", ("Counting",), "Counting", decider(_burst), emits=("tick",)),
            Transition("smuggle", ("Counting",), "Counting", decider(_smuggle), emits=("tick",)),
            Transition("pause", ("Counting",), "Paused"),
            Transition("resume", ("Paused",), "Counting", decider(_resume)),
            Transition("abort", ("Idle", "Counting", "Paused"), "Aborted", decider(_abort)),
        ),
    )


#: The counter machine, for tests that do not spy on its callbacks.
COUNTER = counter_machine()
