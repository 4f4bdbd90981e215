"""
Declarative machine specs: states, transitions and what each transition decides.

A spec is data. Its transitions name a trigger, the states it may fire from, its destination, an
optional guard and an optional decider. Guards and deciders are pure functions of a
:class:`TransitionContext`: they read the instance's data and the event, and never do I/O, because
they run inside the transaction that commits the transition. A spec is checked when it is built
(see :mod:`fsm.graph`), so a broken machine cannot be imported.

A spec may carry the fingerprint of its last successful check (``checked=``): while what the checks read
is unchanged, the checks are not run again, and networkx is not imported (a tenth of a second of every
command's start). The shipped machines carry one; a test proves each still matches a spec that passes.
A spec edited since is checked in full, as any other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Decider",
    "Decision",
    "Emission",
    "Guard",
    "MachineSpec",
    "Obligation",
    "Transition",
    "TransitionContext",
]


@dataclass(frozen=True)
class Emission:
    """Something a transition produces for later work (a request operation, say), stored with it."""

    kind: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class TransitionContext:
    """Everything a guard or decider may look at: the instance, the event and the time."""

    machine_id: str
    trigger: str
    source: str
    data: Mapping[str, Any]
    event: Mapping[str, Any]
    now: datetime
    seq: int


@dataclass(frozen=True)
class Decision:
    """What a transition changes: data keys to set, and the emissions it produces, in order."""

    data: Mapping[str, Any] = field(default_factory=dict)
    emit: tuple[Emission, ...] = ()


#: A decider computes a transition's :class:`Decision`; it must be pure (no I/O, no clock reads).
Decider = Callable[[TransitionContext], Decision]
#: A guard says whether a transition may fire; it must be pure.
Guard = Callable[[TransitionContext], bool]


@dataclass(frozen=True)
class Transition:
    """
    One edge of the machine.

    Args:
        trigger: the event name that fires it.
        sources: the states it may fire from.
        dest: the state it leads to.
        decide: computes the data changes and emissions; none means no change.
        guard: when given, the transition fires only if it returns True. Several transitions may share a
            trigger and source; the first whose guard passes is taken.
        emits: the emission kinds it may produce (checked against what ``decide`` returns, and used by
            obligations and diagrams).
        doc: one line saying what the transition means.
    """

    trigger: str
    sources: tuple[str, ...]
    dest: str
    decide: Decider | None = None
    guard: Guard | None = None
    emits: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class Obligation:
    """
    A domain rule on paths: every path from the initial state to ``target`` emits ``emission`` on the way.

    For the upload machine: no path reaches Cleaned without the transition that emits the removal of
    the temporary replica.
    """

    target: str
    emission: str


@dataclass(frozen=True)
class MachineSpec:
    """
    A complete machine: checked when built.

    Args:
        name: the instance kind stored with each instance (``"upload"``).
        states: every state, in display order.
        initial: where new instances start.
        finals: states with no way out.
        transitions: the edges.
        obligations: path rules to enforce.
        checked: the :meth:`fingerprint` this spec had when it last passed its checks; when it still
            matches, they are not run again. Anything else (the default included) runs them.

    Raises:
        InvalidMachine: the spec fails a check; the message names the offending states.
    """

    name: str
    states: tuple[str, ...]
    initial: str
    finals: frozenset[str]
    transitions: tuple[Transition, ...]
    obligations: tuple[Obligation, ...] = ()
    checked: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.checked and self.checked == self.fingerprint():
            return
        from fsm.graph import check_spec  # graph needs the spec types defined above

        check_spec(self)

    def fingerprint(self) -> str:
        """
        A digest of everything the checks read: states, initial and final states, edges, emissions and
        obligations (not the guards' and deciders' code, which the checks do not look at).
        """
        shape = {
            "name": self.name,
            "states": list(self.states),
            "initial": self.initial,
            "finals": sorted(self.finals),
            "transitions": [
                [t.trigger, list(t.sources), t.dest, list(t.emits), t.guard is not None]
                for t in self.transitions
            ],
            "obligations": [[o.target, o.emission] for o in self.obligations],
        }
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()

    def triggers(self) -> list[str]:
        """Every trigger name, in first-declared order."""
        return list(dict.fromkeys(t.trigger for t in self.transitions))

    def transitions_from(self, state: str) -> list[Transition]:
        """The transitions that may fire from ``state``, in declared order."""
        return [t for t in self.transitions if state in t.sources]
