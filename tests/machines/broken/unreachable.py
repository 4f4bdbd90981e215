"""Orphan has a way out but no way in: it cannot be reached from the initial state."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="unreachable",
    states=("Start", "Orphan", "Done"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("finish", ("Start",), "Done"),
        Transition("finish", ("Orphan",), "Done"),
    ),
)
