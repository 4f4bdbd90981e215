"""
A generic durable state-machine engine: declared specs, checked with networkx, fired in one SQLite
transaction each (state compare-and-swap, journal row, emissions), replayable from the journal.

It knows nothing about files; :mod:`states` declares the upload machine on top of it.

:mod:`fsm.graph` (and so networkx) is loaded on first use of its names here, not on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsm.clock import Clock, format_time, parse_time, utc_now
from fsm.engine import CREATE_TRIGGER, EmissionSink, Engine, Fired, OutboxSink, idempotency_key
from fsm.errors import FsmError, InvalidMachine, TransitionNotAllowed
from fsm.replay import JournalMismatch, Replayed, replay_journal, verify_replay
from fsm.spec import (
    Decider,
    Decision,
    Emission,
    Guard,
    MachineSpec,
    Obligation,
    Transition,
    TransitionContext,
)

if TYPE_CHECKING:
    from fsm.graph import check_spec, scenario_paths, spec_graph

_GRAPH_NAMES = frozenset({"check_spec", "scenario_paths", "spec_graph"})


def __getattr__(name: str) -> Any:
    """Load :mod:`fsm.graph` when one of its names is first asked for (PEP 562)."""
    if name in _GRAPH_NAMES:
        from fsm import graph

        return getattr(graph, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CREATE_TRIGGER",
    "Clock",
    "Decider",
    "Decision",
    "Emission",
    "EmissionSink",
    "Engine",
    "Fired",
    "FsmError",
    "Guard",
    "InvalidMachine",
    "JournalMismatch",
    "MachineSpec",
    "Obligation",
    "OutboxSink",
    "Replayed",
    "Transition",
    "TransitionContext",
    "TransitionNotAllowed",
    "check_spec",
    "format_time",
    "idempotency_key",
    "parse_time",
    "replay_journal",
    "scenario_paths",
    "spec_graph",
    "utc_now",
    "verify_replay",
]
