"""
The checks ``fsm.graph.check_spec`` runs when a machine spec is built, and the scenario paths it walks.

Each broken machine lives in its own module under ``tests/machines/broken/``; importing it must raise
``InvalidMachine`` with a message that names the offending states.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

import fsm
import fsm.graph
from fsm.errors import InvalidMachine
from fsm.graph import check_spec, scenario_paths, spec_graph
from fsm.spec import Decision, MachineSpec, Obligation, Transition, TransitionContext
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


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_each_shipped_machine_carries_the_fingerprint_of_its_passed_checks(name: str) -> None:
    """The stamp lets an import skip the checks: it must be today's fingerprint of a spec that passes."""
    spec = MACHINES[name]
    check_spec(spec)
    assert spec.checked == spec.fingerprint(), (
        f"the {name} machine changed: after checking it, set checked={spec.fingerprint()!r}"
    )


def _refusing_checks(spec: MachineSpec) -> None:
    raise InvalidMachine(f"checked {spec.name}")


def test_a_spec_with_its_current_fingerprint_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsm.graph, "check_spec", _refusing_checks)
    stamped = replace(BRANCHING, checked=BRANCHING.fingerprint())
    assert stamped == BRANCHING  # the stamp takes no part in equality
    with pytest.raises(InvalidMachine, match="checked branching"):
        replace(BRANCHING, checked="")
    with pytest.raises(InvalidMachine, match="checked branching"):
        replace(BRANCHING, checked=UPLOAD_MACHINE.checked)


def test_a_stamp_left_on_an_edited_machine_does_not_let_it_through() -> None:
    """``registering_stuck`` is the upload machine with two more edges: it keeps the stamp, and is refused."""
    machine = UPLOAD_MACHINE
    assert machine.checked
    with pytest.raises(InvalidMachine, match=r"no path to a final state: \['Failed'\]"):
        replace(machine, finals=machine.finals - {S.FAILED})
    with pytest.raises(InvalidMachine, match="a path reaches Cleaned without emitting RemoveReplica"):
        _import_broken("registering_stuck")


def _edited(spec: MachineSpec, index: int, **changes: object) -> MachineSpec:
    transitions = list(spec.transitions)
    transitions[index] = replace(transitions[index], **changes)  # type: ignore[arg-type]
    return replace(spec, transitions=tuple(transitions))


def test_the_fingerprint_follows_everything_the_checks_read_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fsm.graph, "check_spec", lambda spec: None)  # some variants would be refused
    base = BRANCHING.fingerprint()
    read_by_checks = [
        replace(BRANCHING, name="other"),
        replace(BRANCHING, states=("Start", "Right", "Left", "Done")),
        replace(BRANCHING, states=(*BRANCHING.states, "Extra"), finals=frozenset({"Done", "Extra"})),
        replace(BRANCHING, finals=frozenset({"Done", "Left"}), transitions=BRANCHING.transitions[:2]),
        _edited(BRANCHING, 2, dest="Left", sources=("Right",)),
        _edited(BRANCHING, 2, trigger="end"),
        _edited(BRANCHING, 2, emits=("Invoice",)),
        _edited(BRANCHING, 2, guard=_always),
        replace(BRANCHING, obligations=(Obligation("Done", "Invoice"),)),
    ]
    prints = [spec.fingerprint() for spec in read_by_checks]
    assert base not in prints and len(set(prints)) == len(prints)
    not_read = [_edited(BRANCHING, 2, doc="finishes"), _edited(BRANCHING, 0, decide=None)]
    assert {spec.fingerprint() for spec in not_read} == {base}


def test_fsm_hands_out_the_graph_functions_on_first_use() -> None:
    assert (fsm.check_spec, fsm.scenario_paths, fsm.spec_graph) == (check_spec, scenario_paths, spec_graph)
    with pytest.raises(AttributeError, match="module 'fsm' has no attribute 'check_specs'"):
        _ = fsm.check_specs  # type: ignore[attr-defined]


def test_the_fingerprint_does_not_depend_on_the_hash_seed() -> None:
    """Final states are a frozenset: their order changes with ``PYTHONHASHSEED``, the stamp must not."""
    script = "from states import MACHINES; print(sorted((n, m.fingerprint()) for n, m in MACHINES.items()))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1 and UPLOAD_MACHINE.checked in outputs.pop()


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
