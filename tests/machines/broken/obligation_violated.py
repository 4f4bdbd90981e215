"""
Every path to Shipped must emit an Invoice, but ``gift`` ships straight from Ordered without one.

The structure is sound (everything reachable, no trap); only the domain obligation fails.
"""

from __future__ import annotations

from fsm.spec import Decision, MachineSpec, Obligation, Transition

MACHINE = MachineSpec(
    name="obligation_violated",
    states=("Ordered", "Paid", "Shipped"),
    initial="Ordered",
    finals=frozenset({"Shipped"}),
    transitions=(
        Transition("pay", ("Ordered",), "Paid", lambda ctx: Decision(), emits=("Invoice",)),
        Transition("ship", ("Paid",), "Shipped"),
        Transition("gift", ("Ordered",), "Shipped"),
    ),
    obligations=(Obligation("Shipped", "Invoice"),),
)
