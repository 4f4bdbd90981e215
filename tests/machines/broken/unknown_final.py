"""Archived is declared final but is not one of the declared states."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="unknown_final",
    states=("Start", "Done"),
    initial="Start",
    finals=frozenset({"Done", "Archived"}),
    transitions=(Transition("finish", ("Start",), "Done"),),
)
