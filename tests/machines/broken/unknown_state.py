"""A transition leads to Nowhere, which is not one of the declared states."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="unknown_state",
    states=("Start", "Done"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("finish", ("Start",), "Done"),
        Transition("wander", ("Start",), "Nowhere"),
    ),
)
