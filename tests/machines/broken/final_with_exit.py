"""Done is final yet has a transition out of it."""

from __future__ import annotations

from fsm.spec import MachineSpec, Transition

MACHINE = MachineSpec(
    name="final_with_exit",
    states=("Start", "Done"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("finish", ("Start",), "Done"),
        Transition("reopen", ("Done",), "Start"),
    ),
)
