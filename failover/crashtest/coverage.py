"""
Which paths of the upload machine's graph the scenarios walk, read from their journals.

The crash matrix is only as good as its scenarios, so the scenario list is checked against the graph:
every path of :func:`fsm.graph.scenario_paths` must be walked, transition for transition, by some
upload of some scenario's crash-free run, and every edge of the graph taken. A retried attempt
(``attempt_failed`` looping on Uploading) may repeat: repeats of a self-loop count as one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from failover.environment import Environment
from fsm.graph import scenario_paths, spec_graph
from persistence.journal import read_journal
from persistence.machines import iter_machines
from states import UPLOAD_MACHINE

__all__ = [
    "Step",
    "graph_edges",
    "graph_paths",
    "journal_steps",
    "path_walkers",
    "uncovered_edges",
    "uncovered_paths",
]

#: One journaled transition: (source state, trigger, destination state).
Step = tuple[str, str, str]


def journal_steps(env: Environment) -> dict[str, list[Step]]:
    """Every upload's journaled transitions, in order (creation left out), by machine id."""
    return {
        row.id: [
            (str(entry.src), str(entry.trigger), str(entry.dst))
            for entry in read_journal(env.store.conn, row.id)
            if entry.seq > 0
        ]
        for row in iter_machines(env.store.conn, UPLOAD_MACHINE.name)
    }


def graph_paths() -> list[list[Step]]:
    """The upload machine's scenario paths (initial state to a final state, every transition taken)."""
    paths = []
    for path in scenario_paths(UPLOAD_MACHINE):
        state, steps = str(UPLOAD_MACHINE.initial), []
        for transition in path:
            steps.append((state, str(transition.trigger), str(transition.dest)))
            state = str(transition.dest)
        paths.append(steps)
    return paths


def graph_edges() -> set[Step]:
    """Every edge of the upload machine's graph."""
    graph = spec_graph(UPLOAD_MACHINE)
    return {(str(u), str(key), str(v)) for u, v, key in graph.edges(keys=True)}


def _collapsed(steps: Iterable[Step]) -> list[Step]:
    """Repeats of a self-loop in a row count once (a put tried again on the same or the next SE)."""
    out: list[Step] = []
    for step in steps:
        if not (out and step == out[-1] and step[0] == step[2]):
            out.append(step)
    return out


def path_walkers(walked: Mapping[str, Iterable[list[Step]]]) -> list[tuple[list[Step], list[str]]]:
    """
    Each of the graph's scenario paths, with the scenarios that walk it (some upload's journal is it).

    Args:
        walked: each scenario's uploads, as their journaled steps.
    """
    seen: dict[tuple[Step, ...], set[str]] = {}
    for name, uploads in walked.items():
        for steps in uploads:
            seen.setdefault(tuple(_collapsed(steps)), set()).add(name)
    return [(path, sorted(seen.get(tuple(path), ()))) for path in graph_paths()]


def uncovered_paths(walked: Mapping[str, Iterable[list[Step]]]) -> list[list[Step]]:
    """The graph's scenario paths no upload walked; ``walked`` maps a scenario to its uploads' steps."""
    return [path for path, walkers in path_walkers(walked) if not walkers]


def uncovered_edges(walked: Mapping[str, Iterable[list[Step]]]) -> set[Step]:
    """The graph's edges no upload took."""
    taken = {step for uploads in walked.values() for steps in uploads for step in steps}
    return graph_edges() - taken
