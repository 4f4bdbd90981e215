"""The initial state, Begin, is not one of the declared states."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="unknown_initial",
    states=("Start", "Done"),
    initial="Begin",
    finals=frozenset({"Done"}),
    transitions=(Transition("finish", ("Start",), "Done"),),
)
