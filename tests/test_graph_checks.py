"""
The checks ``fsm.graph.check_spec`` runs when a machine spec is built, and the scenario paths it walks.

Each broken machine lives in its own module under ``tests/machines/broken/``; importing it must raise
``InvalidMachine`` with a message that names the offending states.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from fsm.errors import InvalidMachine
from fsm.graph import check_spec, scenario_paths, spec_graph
from fsm.spec import Decision, MachineSpec, Transition, TransitionContext
from states import MACHINES, UPLOAD_MACHINE
from states.names import UploadState as S

BROKEN = Path(__file__).parent / "machines" / "broken"


def _import_broken(name: str) -> ModuleType:
    """Execute ``tests/machines/broken/<name>.py`` afresh (a module that failed to import is not cached)."""
    module_spec = importlib.util.spec_from_file_location(f"broken_machine_{name}", BROKEN / f"{name}.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


#: Each broken module, and the message its import must raise.
BROKEN_CASES = [
    ("unreachable", r"unreachable from the initial state: \['Orphan'\]"),
    ("trap", r"no path to a final state: \['Loop'\]"),
    ("final_with_exit", r"final state with outgoing transitions: \['Done'\]"),
    ("unknown_state", r"transitions use unknown states: \['Nowhere'\]"),
    ("unknown_initial", r"unknown initial state: \['Begin'\]"),
    ("unknown_final", r"unknown final states: \['Archived'\]"),
    ("duplicate_state", r"duplicate states: \['Start'\]"),
    ("obligation_violated", r"a path reaches Shipped without emitting Invoice: Ordered -> Shipped$"),
    ("registering_stuck", r"a path reaches Cleaned without emitting RemoveReplica"),
]


@pytest.mark.parametrize(("module", "message"), BROKEN_CASES, ids=[case[0] for case in BROKEN_CASES])
def test_a_broken_machine_cannot_be_imported(module: str, message: str) -> None:
    with pytest.raises(InvalidMachine, match=message):
        _import_broken(module)


def test_every_broken_machine_module_is_exercised() -> None:
    """A broken machine added to the folder without a case above would prove nothing."""
    assert {p.stem for p in BROKEN.glob("*.py")} - {"__init__"} == {module for module, _ in BROKEN_CASES}


def test_registering_into_stuck_is_refused_by_the_obligation() -> None:
    """Registering → Stuck → Replicating would reach Cleaned without emitting RemoveReplica."""
    with pytest.raises(
        InvalidMachine, match=r"a path reaches Cleaned without emitting RemoveReplica"
    ) as caught:
        _import_broken("registering_stuck")
    # The path is named too, each state by its value (see the enum-naming test below).
    path = str(caught.value).split(": ", 1)[1]
    assert path == "Uploading -> Registering -> Stuck -> Replicating -> Cleaned"


def test_invalid_machine_names_enum_states_by_their_value() -> None:
    """
    The message names states as written in diagrams (STYLE rule 8: ``no path to a final state: ['Stuck']``).

    The upload machine declares its states as ``UploadState`` members, whose repr is not their name.
    """
    with pytest.raises(InvalidMachine, match=r"unreachable from the initial state: \['Stuck'\]"):
        replace(
            UPLOAD_MACHINE,
            transitions=tuple(t for t in UPLOAD_MACHINE.transitions if t.dest != S.STUCK),
        )


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_the_real_machines_pass_their_checks(name: str) -> None:
    spec = MACHINES[name]
    check_spec(spec)
    graph = spec_graph(spec)
    assert set(graph.nodes) == set(spec.states)
    assert all(graph.out_degree(final) == 0 for final in spec.finals)


def test_the_upload_machine_graph_has_one_edge_per_transition_source() -> None:
    graph = spec_graph(UPLOAD_MACHINE)
    expected = sorted((s, t.dest, t.trigger) for t in UPLOAD_MACHINE.transitions for s in t.sources)
    assert sorted((u, v, k) for u, v, k in graph.edges(keys=True)) == expected


UPLOAD_PATHS = list(scenario_paths(UPLOAD_MACHINE))


def _describe(transition: Transition) -> str:
    return f"{'/'.join(transition.sources)} --{transition.trigger}--> {transition.dest}"


def test_scenario_paths_cover_every_upload_transition() -> None:
    """Crash-recovery tests walk these paths, so a transition missing from all of them is never tested."""
    used = {id(t) for path in UPLOAD_PATHS for t in path}
    assert [_describe(t) for t in UPLOAD_MACHINE.transitions if id(t) not in used] == []


def test_scenario_paths_run_from_uploading_to_a_final_state() -> None:
    assert UPLOAD_PATHS
    for path in UPLOAD_PATHS:
        assert S.UPLOADING in path[0].sources
        assert path[-1].dest in UPLOAD_MACHINE.finals
        for before, after in itertools.pairwise(path):
            assert before.dest in after.sources, [_describe(t) for t in path]


def test_scenario_paths_are_unique() -> None:
    keys = [tuple(id(t) for t in path) for path in UPLOAD_PATHS]
    assert len(keys) == len(set(keys))


def _always(ctx: TransitionContext) -> bool:
    return True


def _set_branch(branch: str) -> Decision:
    return Decision({"branch": branch})


BRANCHING = MachineSpec(
    name="branching",
    states=("Start", "Left", "Right", "Done"),
    initial="Start",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("go", ("Start",), "Left", lambda ctx: _set_branch("left"), _always),
        Transition("go", ("Start",), "Right", lambda ctx: _set_branch("right"), _always),
        Transition("finish", ("Left", "Right"), "Done"),
    ),
)


def test_scenario_paths_tell_apart_guarded_branches_of_one_trigger() -> None:
    """Two transitions may share trigger and source (the guard picks one); each path names its own edge."""
    paths = list(scenario_paths(BRANCHING))
    assert sorted([t.dest for t in path] for path in paths) == [["Left", "Done"], ["Right", "Done"]]
