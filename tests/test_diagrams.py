"""Diagrams of the live machines: committed files without drift, every format faithful to the spec."""

from __future__ import annotations

import ast
import doctest
import importlib
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pygraphviz
import pytest

import fsm.diagram
from fsm.diagram import (
    FORMATS,
    SUFFIXES,
    TEXT_FORMATS,
    Edge,
    GraphvizUnavailable,
    UnknownTransition,
    render,
    render_svg,
    stale_diagrams,
    write_diagrams,
)
from fsm.graph import scenario_paths, spec_graph
from fsm.spec import MachineSpec, Transition, TransitionContext
from states import MACHINES, UPLOAD_MACHINE
from states.diagrams import DEFAULT_DIRECTORY, main

DIAGRAMS = Path(__file__).resolve().parent.parent / "diagrams"
DIAGRAM_MODULES = sorted(Path(fsm.diagram.__file__).parent.glob("*.py"))
SVG = "{http://www.w3.org/2000/svg}"


def _always(ctx: TransitionContext) -> bool:
    return True


#: Names that Mermaid would choke on: a space in a state, a colon and a hash in a trigger, a lambda guard.
AWKWARD = MachineSpec(
    name="awkward",
    states=("Not started", "Done"),
    initial="Not started",
    finals=frozenset({"Done"}),
    transitions=(
        Transition("go: now #1", ("Not started",), "Done", guard=lambda ctx: True, doc="a | pipe"),
        Transition("loop", ("Not started",), "Not started", guard=_always),
    ),
)


def _longest_path(spec: MachineSpec) -> list[Edge]:
    """The longest scenario (loops included) as (source, trigger, destination) steps."""
    transitions = max(scenario_paths(spec), key=len)
    edges, state = [], spec.initial
    for transition in transitions:
        edges.append((state, transition.trigger, transition.dest))
        state = transition.dest
    return edges


def _mermaid_edges(text: str) -> list[tuple[Edge, str]]:
    """Each ``Src --> Dst: label`` line as ((src, trigger, dst), label), markers for [*] left out."""
    found = re.findall(r"^\s+(\w+) --> (\w+): (.*)$", text, flags=re.MULTILINE)
    return [((src, label.split()[0], dst), label) for src, dst, label in found]


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@pytest.mark.parametrize("name", MACHINES)
def test_committed_diagram_matches_fresh_render(name: str, fmt: str) -> None:
    path = DIAGRAMS / f"{name}{SUFFIXES[fmt]}"
    assert path.is_file(), f"{path} is missing: run `make diagrams`"
    assert path.read_text(encoding="utf-8") == render(MACHINES[name], fmt), (
        f"{path} differs from the live machine: run `make diagrams`"
    )


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@pytest.mark.parametrize("name", MACHINES)
def test_every_state_and_trigger_appears(name: str, fmt: str) -> None:
    spec = MACHINES[name]
    text = render(spec, fmt)
    missing = [word for word in (*spec.states, *spec.triggers()) if not re.search(rf"\b{word}\b", text)]
    assert missing == []


@pytest.mark.parametrize("name", MACHINES)
def test_mermaid_marks_initial_and_final_states(name: str) -> None:
    spec = MACHINES[name]
    lines = render(spec, "mermaid").splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert [line.strip() for line in lines if line.strip().startswith("[*] -->")] == [
        f"[*] --> {spec.initial}"
    ]
    marked = {line.split()[0] for line in lines if line.endswith("--> [*]")}
    assert marked == set(spec.finals)


@pytest.mark.parametrize("name", MACHINES)
def test_mermaid_has_one_line_per_edge_in_transition_order(name: str) -> None:
    spec = MACHINES[name]
    expected = [(source, t.trigger, t.dest) for t in spec.transitions for source in t.sources]
    assert [edge for edge, _ in _mermaid_edges(render(spec, "mermaid"))] == expected


def test_mermaid_labels_guards_by_name() -> None:
    """A guarded edge names its guard in brackets; an unguarded edge has no brackets."""
    text = render(UPLOAD_MACHINE, "mermaid")
    assert "    Uploading --> Uploading: attempt_failed [can_try_again]\n" in text
    assert "    Uploading --> Failed: refused [nothing_tried_yet]\n" in text
    assert "    Stuck --> FailedOver: operator_retry [reissues_removal]\n" in text
    assert "    Stuck --> Failed: cancelled\n" in text


def test_mermaid_replaces_characters_that_break_its_syntax() -> None:
    text = render(AWKWARD, "mermaid")
    assert text.splitlines()[1:] == [
        '    state "Not started" as Not_started',
        "    [*] --> Not_started",
        "    Not_started --> Done: go_now_1 [guarded]",
        "    Not_started --> Not_started: loop [_always]",
        "    Done --> [*]",
    ]


@pytest.mark.parametrize("name", MACHINES)
def test_table_has_one_row_per_transition_and_source(name: str) -> None:
    spec = MACHINES[name]
    text = render(spec, "md")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    expected = [f"| `{t.trigger}` | {source} | {t.dest} |" for t in spec.transitions for source in t.sources]
    assert [row[: len(prefix)] for row, prefix in zip(rows, expected, strict=True)] == expected
    assert text.startswith(f"# The {name} machine\n")
    assert f"```mermaid\n{render(spec, 'mermaid')}```\n" in text


def test_table_shows_guard_emissions_and_meaning() -> None:
    text = render(UPLOAD_MACHINE, "md")
    row = next(line for line in text.splitlines() if line.startswith("| `failed_over`"))
    assert row == (
        "| `failed_over` | Uploading | FailedOver | `landed_at_failover` "
        "| `RegisterFile`, `ReplicateAndRegister`, `RemoveReplica` "
        "| at a failover SE; ReplicateAndRegister to the target, then RemoveReplica |"
    )


def test_table_escapes_pipes() -> None:
    assert "| `go: now #1` | Not started | Done | `guarded` |  | a \\| pipe |" in render(AWKWARD, "md")


@pytest.mark.parametrize("name", [*MACHINES, "awkward"])
def test_dot_parses_with_the_nodes_and_edges_of_spec_graph(name: str) -> None:
    """Besides the spec graph's nodes and edges, the DOT has only the start point and its edge."""
    spec = MACHINES.get(name, AWKWARD)
    graph = spec_graph(spec)
    dot = pygraphviz.AGraph(string=render(spec, "dot"))
    assert dot.is_directed()
    assert len(dot.nodes()) == graph.number_of_nodes() + 1
    assert len(dot.edges()) == graph.number_of_edges() + 1
    shapes = {str(node): node.attr["shape"] for node in dot.nodes()}
    assert {node for node, shape in shapes.items() if shape == "doublecircle"} == set(spec.finals)
    (start,) = [node for node, shape in shapes.items() if shape == "point"]
    assert dot.successors(start) == [spec.initial]
    labels = sorted((str(e[0]), e.attr["label"], str(e[1])) for e in dot.edges() if e[0] != start)
    assert labels == sorted((u, key, v) for u, v, key in graph.edges(keys=True))


@pytest.mark.parametrize("name", MACHINES)
def test_highlight_marks_exactly_the_given_edges(name: str) -> None:
    spec = MACHINES[name]
    path = _longest_path(spec)
    visited = {state for source, _, dest in path for state in (source, dest)}
    mermaid = render(spec, "mermaid", highlight=path)
    marked = {edge for edge, label in _mermaid_edges(mermaid) if "(step" in label}
    assert marked == set(path)
    classes = re.search(r"^    class (\S+) visited$", mermaid, flags=re.MULTILINE)
    assert classes is not None and set(classes.group(1).split(",")) == visited
    dot = pygraphviz.AGraph(string=render(spec, "dot", highlight=path))
    bold = {(str(e[0]), e.attr["label"], str(e[1])) for e in dot.edges() if e.attr["penwidth"] == "3"}
    assert bold == set(path)
    assert {str(node) for node in dot.nodes() if node.attr["penwidth"] == "3"} == visited


def test_highlight_numbers_the_steps_of_a_repeated_edge() -> None:
    retry = ("Uploading", "attempt_failed", "Uploading")
    path = [retry, retry, ("Uploading", "failed_over", "FailedOver")]
    labels = dict(_mermaid_edges(render(UPLOAD_MACHINE, "mermaid", highlight=path)))
    assert labels[retry] == "attempt_failed [can_try_again] (steps 1, 2)"
    assert labels[path[2]] == "failed_over [landed_at_failover] (step 3)"


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_no_highlight_leaves_no_marks(fmt: str) -> None:
    assert render(UPLOAD_MACHINE, fmt, highlight=[]) == render(UPLOAD_MACHINE, fmt)


def test_highlight_refuses_edges_the_machine_does_not_have() -> None:
    path = [("Uploading", "uploaded", "Registered"), ("Registered", "cleaned", "Cleaned")]
    with pytest.raises(UnknownTransition, match="Registered', 'cleaned', 'Cleaned") as caught:
        render(UPLOAD_MACHINE, "mermaid", highlight=path)
    assert caught.value.edges == (("Registered", "cleaned", "Cleaned"),)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown diagram format 'png'"):
        render(UPLOAD_MACHINE, "png")


@pytest.mark.parametrize("name", MACHINES)
def test_committed_svg_parses_and_names_every_state(name: str) -> None:
    root = ET.parse(DIAGRAMS / f"{name}.svg").getroot()
    assert root.tag == f"{SVG}svg"
    texts = {element.text for element in root.iter(f"{SVG}text")}
    assert set(MACHINES[name].states) <= texts
    assert set(MACHINES[name].triggers()) <= texts


def test_svg_without_pygraphviz_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pygraphviz", None)
    with pytest.raises(GraphvizUnavailable, match=r"failover-transfer\[diagrams\]"):
        render_svg(render(UPLOAD_MACHINE, "dot"))


def test_write_diagrams_writes_every_format_and_stale_diagrams_finds_drift(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_diagrams(MACHINES, out)
    assert sorted(p.name for p in written) == sorted(f"{n}{SUFFIXES[f]}" for n in MACHINES for f in FORMATS)
    assert all(path.parent == out and path.stat().st_size > 0 for path in written)
    assert stale_diagrams(MACHINES, out) == []
    (out / "request.dot").write_text("digraph {}\n", encoding="utf-8")
    (out / "file.md").unlink()
    (out / "upload.svg").write_text("not compared", encoding="utf-8")
    assert stale_diagrams(MACHINES, out) == [out / "request.dot", out / "file.md"]


def test_command_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(MACHINES) * len(FORMATS)
    assert main([str(tmp_path), "--check"]) == 0
    (tmp_path / "upload.mmd").write_text("stateDiagram-v2\n", encoding="utf-8")
    assert main([str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().out == f"stale: {tmp_path / 'upload.mmd'}\n"


def test_command_defaults_to_the_repository_diagrams() -> None:
    assert DEFAULT_DIRECTORY == DIAGRAMS


@pytest.mark.parametrize("module", DIAGRAM_MODULES, ids=lambda path: path.name)
def test_renderers_never_import_transitions_states_or_failover(module: Path) -> None:
    """Renderers read the IR only; fsm must not depend on the packages built on top of it."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} & {"transitions", "states", "failover"} == set()


def test_public_names_are_sorted_and_exported() -> None:
    assert fsm.diagram.__all__ == sorted(fsm.diagram.__all__)
    assert [name for name in fsm.diagram.__all__ if not hasattr(fsm.diagram, name)] == []


def test_render_docstring_example_runs() -> None:
    # ``fsm.diagram.render`` is the re-exported function, which shadows its module's name.
    module = importlib.import_module("fsm.diagram.render")
    assert doctest.testmod(module, raise_on_error=True).attempted > 0
