"""
The demo: files fail over while their target SE is down, and end Cleaned once it is back.

:func:`run_demo` builds a workspace (the embedded default: ``LOCAL-DISK``, ``FAILOVER-DISK`` and an
SQLite catalog), makes ``LOCAL-DISK`` unreachable with a :class:`~failover.testing.FaultInjector`,
uploads a handful of files (each lands on ``FAILOVER-DISK`` and queues its replication and cleanup),
brings ``LOCAL-DISK`` back, runs the :class:`~failover.Executor` once, and checks that every upload is
Cleaned and that :func:`~failover.fsck.fsck` finds nothing wrong. It writes one upload's diagram, its path
highlighted, next to the database.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from failover.environment import Environment
from failover.errors import InvalidInput
from failover.executor import Executor
from failover.fsck import fsck
from failover.testing import Fault, FaultInjector
from failover.uploads import upload
from failover.workspace import DEFAULT_SES, open_workspace
from fsm.diagram import render
from persistence.journal import read_journal
from persistence.machines import count_by_state
from persistence.requests import RequestHeader
from persistence.rows import JournalRow
from states import UPLOAD_MACHINE, UploadState

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEMO_FILES", "DemoReport", "run_demo"]

#: The demo's files: name and size in bytes.
DEMO_FILES = (("hits.root", 256_000), ("tracks.root", 96_000), ("calib.db", 48_000), ("log.txt", 4_000))
TARGET, FAILOVER = DEFAULT_SES
LFN_DIR = "/demo/user/a/alice/run42"


@dataclass(frozen=True)
class DemoReport:
    """
    What the demo did.

    Attributes:
        home: the demo's workspace.
        states: the final state of each upload, by LFN.
        request_id: the request that replicated and cleaned up.
        history: the journal of the first upload.
        diagram: the first upload's diagram (Mermaid, its path highlighted).
        problems: what :func:`~failover.fsck.fsck` found at the end (nothing, normally).
        seconds: how long the demo took.
    """

    home: Path
    states: dict[str, str]
    request_id: int
    history: list[JournalRow]
    diagram: Path
    problems: list[str]
    seconds: float

    @property
    def all_cleaned(self) -> bool:
        """True when every upload ended Cleaned and the consistency check found nothing wrong."""
        return not self.problems and all(state == UploadState.CLEANED for state in self.states.values())


def _say(out: Console | None, text: str) -> None:
    """Print a line with markup: its data must be :func:`_literal`."""
    if out is not None:
        out.print(text, markup=True)


def _literal(value: object) -> str:
    from rich.markup import escape  # a path may hold "[...]"; rich is there when ``out`` is

    return escape(str(value))


def _make_files(home: Path) -> list[Path]:
    rng = random.Random(42)
    job = home / "job"
    job.mkdir(parents=True, exist_ok=True)
    files = []
    for name, size in DEMO_FILES:
        (path := job / name).write_bytes(rng.randbytes(size))
        files.append(path)
    return files


def _upload_all(env: Environment, files: list[Path], header: RequestHeader, out: Console | None) -> list[str]:
    lfns = []
    for path in files:
        result = upload(
            env, path, f"{LFN_DIR}/{path.name}", destinations=TARGET, failovers=FAILOVER, request=header
        )
        _say(out, f"    {_literal(result.lfn)}: [bold]{result.state}[/bold] at {result.se}")
        lfns.append(result.lfn)
    return lfns


def _write_diagram(env: Environment, home: Path, lfn: str) -> tuple[list[JournalRow], Path]:
    journal = read_journal(env.store.conn, lfn)
    path = [(row.src, row.trigger, row.dst) for row in journal if row.src is not None]
    diagram = home / "upload-path.mmd"
    diagram.write_text(render(UPLOAD_MACHINE, "mermaid", highlight=path), encoding="utf-8")
    return journal, diagram


def _fail_over(
    env: Environment, faults: FaultInjector, home: Path, out: Console | None
) -> tuple[int, list[str]]:
    """The target down, upload every file (they fail over), commit the request; its id and the LFNs."""
    faults.inject(TARGET, Fault.STORAGE_UNAVAILABLE, times=None)
    _say(out, f"[bold]2.[/bold] {TARGET} is [red]down[/red]. Uploading {len(DEMO_FILES)} files to it:")
    owner, group = env.request_owner
    header = RequestHeader(uuid.uuid4().hex, "failover-demo", owner, group, "failover-demo")
    lfns = _upload_all(env, _make_files(home), header, out)
    row = env.requests.find(header.client_key)
    assert row is not None, "a failed-over upload always emits operations"
    env.requests.commit(row.id)
    _say(out, f"    They wait on {FAILOVER}; request {row.id} will replicate them and clean up.")
    return row.id, lfns


def _recover(
    env: Environment, faults: FaultInjector, lfns: list[str], out: Console | None
) -> tuple[dict[str, str], list[str]]:
    """The target back, run the executor once; each upload's state, and what fsck finds."""
    faults.clear(TARGET)
    _say(out, f"[bold]3.[/bold] {TARGET} is [green]back[/green]. Running the executor once:")
    taken = Executor(env).run_once()
    _say(out, f"    processed {taken} request(s).")
    counts = count_by_state(env.store.conn, UPLOAD_MACHINE.name)
    _say(out, "[bold]4.[/bold] Uploads by state: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    problems = [f"{p.code}: {p.subject}: {p.message}" for p in fsck(env).problems]
    _say(out, f"    fsck: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return {lfn: env.uploads.load(lfn).state for lfn in lfns}, problems


def run_demo(home: Path, out: Console | None = None) -> DemoReport:
    """
    Run the failover demo in the workspace ``home`` (created; use an empty or new directory).

    Args:
        home: the demo's workspace directory, new or empty; it is kept, so that the CLI can inspect it.
        out: where to tell the story (None: silently).

    Returns:
        What happened; :attr:`DemoReport.all_cleaned` says whether the demo succeeded.

    Raises:
        InvalidInput: ``home`` is not empty.
    """
    started = time.perf_counter()
    home = home.absolute()
    if home.exists() and any(home.iterdir()):
        raise InvalidInput(f"the demo needs a new or empty directory; {home} is not empty")
    faults = FaultInjector()
    env = faults.wrap(open_workspace(home))
    try:
        _say(out, f"[bold]1.[/bold] Workspace {_literal(home)}: SEs {TARGET} (the target) and {FAILOVER}.")
        request_id, lfns = _fail_over(env, faults, home, out)
        states, problems = _recover(env, faults, lfns, out)
        journal, diagram = _write_diagram(env, home, lfns[0])
    finally:
        env.store.close()
    seconds = time.perf_counter() - started
    return DemoReport(home, states, request_id, journal, diagram, problems, seconds)
