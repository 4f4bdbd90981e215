"""Loop is reachable and not final, but only leads back to itself: it can never finish."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="trap",
    states=("Start", "Loop", "Done"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("finish", ("Start",), "Done"),
        Transition("enter", ("Start",), "Loop"),
        Transition("spin", ("Loop",), "Loop"),
    ),
)
