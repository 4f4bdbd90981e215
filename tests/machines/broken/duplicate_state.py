"""Start is declared twice."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="duplicate_state",
    states=("Start", "Done", "Start"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(Transition("finish", ("Start",), "Done"),),
)
