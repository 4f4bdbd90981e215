"""
Running scenarios in real processes, killed at crash points, and restarted on the same directory.

Every run is a child made by ``os.fork()`` of a process that has imported everything already: it
costs milliseconds instead of the ~0.3 s of a fresh interpreter, and it is still a real process that
:func:`fsm.crashpoints.crash_point` kills on the spot (``os._exit(86)``: no ``finally``, no flush).
The child arms its crash point with :func:`fsm.crashpoints.arm` after forgetting the hits it
inherited, so ``name@n`` counts from the start of that run.

- :func:`dry_run`: the crash-free run; its crash log lists the points met (the matrix's cases) and its
  report is the baseline every crashed run must reproduce.
- :func:`run_case`: crash at each point of a :class:`Case` in turn, restart, compare with the baseline.
- :func:`run_double`: crash, save the directory, list the points a restart meets, put the saved
  directory back, crash its restart at one of them (seeded choice), restart, compare.
- :func:`run_all`: any of these over many cases, on a pool of forked workers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from failover.crashtest.coverage import journal_steps
from failover.crashtest.sandbox import open_sandbox
from failover.crashtest.scenarios import SCENARIOS
from failover.crashtest.snapshot import Snapshot, differences, final_report
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE, CRASH_LOG, arm, disarm

__all__ = [
    "Case",
    "CrashPoint",
    "DryRun",
    "Outcome",
    "dry_run",
    "dry_run_all",
    "matrix_cases",
    "read_crash_log",
    "run_all",
    "run_case",
    "run_double",
    "run_forked",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, order=True)
class CrashPoint:
    """The ``nth`` hit of crash point ``name`` in one run (``name@nth`` in ``FAILOVER_CRASH_AT``)."""

    name: str
    nth: int = 1

    def __str__(self) -> str:
        return f"{self.name}@{self.nth}"

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        """Read ``name`` or ``name@n``."""
        name, _, nth = text.partition("@")
        return cls(name, int(nth) if nth else 1)


@dataclass(frozen=True)
class Case:
    """A scenario and the crash points its successive runs die at, before the restart that finishes it."""

    scenario: str
    crashes: tuple[CrashPoint, ...]

    def __str__(self) -> str:
        return f"{self.scenario}: {' then '.join(map(str, self.crashes))}"


@dataclass
class Outcome:
    """How a case went: what went wrong (nothing when it passed)."""

    case: Case
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The case passed."""
        return not self.problems


@dataclass(frozen=True)
class DryRun:
    """A scenario's crash-free run: the points it met, in order, and what it left behind."""

    scenario: str
    points: tuple[CrashPoint, ...]
    report: dict[str, Any]


def read_crash_log(path: Path) -> list[CrashPoint]:
    """The hits a crash log recorded, each numbered by its occurrence (``after-put@2``)."""
    if not path.exists():
        return []
    seen: Counter[str] = Counter()
    points = []
    for name in path.read_text(encoding="utf-8").split():
        seen[name] += 1
        points.append(CrashPoint(name, seen[name]))
    return points


def _child(fn: Callable[[], object], crash: CrashPoint | None, log: Path | None, errors: Path) -> None:
    """The forked child's whole life: arm, run, and leave with ``os._exit`` whatever happens."""
    status = 1
    try:
        disarm()
        os.environ.pop(CRASH_AT, None)
        os.environ.pop(CRASH_LOG, None)
        if log is not None:
            os.environ[CRASH_LOG] = str(log)
        if crash is not None:
            arm(crash.name, crash.nth)
        fn()
        status = 0
    except BaseException:
        errors.write_text(traceback.format_exc(), encoding="utf-8")
    finally:
        os._exit(status)


def run_forked(
    fn: Callable[[], object], *, crash: CrashPoint | None = None, log: Path | None = None, errors: Path
) -> int:
    """
    Run ``fn`` in a forked child, armed to die at ``crash``; return its exit code.

    Args:
        fn: the child's work.
        crash: the crash point to arm (counted from the child's start).
        log: where the child records the crash points it meets.
        errors: where the child writes the traceback if ``fn`` raises (exit code 1).

    Returns:
        0 when ``fn`` returned, :data:`~fsm.crashpoints.CRASH_EXIT_CODE` when the crash point killed it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        _child(fn, crash, log, errors)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _scenario_run(name: str, home: Path, report: Path | None) -> Callable[[], None]:
    def work() -> None:
        box = open_sandbox(home)
        SCENARIOS[name].run(box)
        if report is not None:
            result = final_report(box.raw)
            result["journal"] = journal_steps(box.raw)
            report.write_text(json.dumps(result), encoding="utf-8")

    return work


def _run(name: str, home: Path, *, crash: CrashPoint | None = None, log: Path | None = None) -> str | None:
    """One run of a scenario; None when it ended as intended, else why not."""
    home.mkdir(parents=True, exist_ok=True)
    errors = home / "errors.txt"
    errors.unlink(missing_ok=True)
    report = None if crash is not None else home / "report.json"
    code = run_forked(_scenario_run(name, home, report), crash=crash, log=log, errors=errors)
    wanted = CRASH_EXIT_CODE if crash is not None else 0
    if code == wanted:
        return None
    what = f"crash at {crash}" if crash is not None else "restart"
    if code == 0:
        return f"{what}: the run finished without meeting {crash}"
    detail = errors.read_text(encoding="utf-8") if errors.exists() else ""
    return f"{what}: exit code {code}\n{detail}"


def _report(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "report.json").read_text(encoding="utf-8"))
    return data


def dry_run(name: str, home: Path) -> DryRun:
    """
    Run a scenario without a crash, recording the crash points it meets.

    Raises:
        RuntimeError: the run failed.
    """
    log = home / "crash.log"
    problem = _run(name, home, log=log)
    if problem is not None:
        raise RuntimeError(f"{name}: crash-free run failed: {problem}")
    return DryRun(name, tuple(read_crash_log(log)), _report(home))


def dry_run_all(root: Path, workers: int = 2) -> dict[str, DryRun]:
    """Every scenario's crash-free run (in ``root/<name>``), by scenario name."""
    runs = run_all(dry_run, [(name, root / name) for name in SCENARIOS], workers)
    return {run.scenario: run for run in runs}


def matrix_cases(dry_runs: Iterable[DryRun]) -> list[Case]:
    """One case per (scenario, crash point, occurrence) met by the crash-free runs."""
    return [Case(run.scenario, (point,)) for run in dry_runs for point in run.points]


def _judge(home: Path, baseline: Snapshot) -> list[str]:
    report = _report(home)
    problems = [f"fsck: {p['code']} {p['subject']}: {p['message']}" for p in report["fsck"]["problems"]]
    return problems + differences(baseline, report["snapshot"])


def _crash_then_restart(case: Case, home: Path, baseline: Snapshot, log: Path | None = None) -> list[str]:
    for crash in case.crashes:
        if (problem := _run(case.scenario, home, crash=crash)) is not None:
            return [problem]
    if (problem := _run(case.scenario, home, log=log)) is not None:
        return [problem]
    return _judge(home, baseline)


def run_case(case: Case, home: Path, baseline: Snapshot) -> Outcome:
    """Crash at each of the case's points in turn, restart, and compare with the baseline."""
    outcome = Outcome(case, _crash_then_restart(case, home, baseline))
    if outcome.ok:
        shutil.rmtree(home, ignore_errors=True)
    return outcome


def run_double(first: Case, home: Path, baseline: Snapshot, seed: int) -> Outcome:
    """
    Crash at ``first``, then crash the restart at a point it meets, chosen by ``random.Random(seed)``.

    The crashed directory is saved aside; a restart without a crash lists the points a restart meets
    (and must match the baseline too); then the saved directory is put back in place (the database and
    catalog hold absolute paths, so it must live where it crashed), restarted armed at the chosen point,
    restarted again, and compared with the baseline.

    Returns:
        The outcome; its case has one crash only when the restart met no crash point (no pair).
    """
    work, saved, log = home / "work", home / "saved", home / "restart.log"
    if (problem := _run(first.scenario, work, crash=first.crashes[0])) is not None:
        return Outcome(first, [problem])
    shutil.copytree(work, saved)
    problems = _crash_then_restart(Case(first.scenario, ()), work, baseline, log=log)
    met = read_crash_log(log)
    if problems or not met:
        return Outcome(first, problems)
    shutil.rmtree(work)
    saved.rename(work)
    case = Case(first.scenario, (*first.crashes, random.Random(seed).choice(met)))
    outcome = Outcome(case, _crash_then_restart(Case(case.scenario, case.crashes[1:]), work, baseline))
    if outcome.ok:
        shutil.rmtree(home, ignore_errors=True)
    return outcome


def _call(job: tuple[Callable[..., R], tuple[Any, ...]]) -> R:
    fn, args = job
    return fn(*args)


def run_all(fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]], workers: int = 2) -> list[R]:
    """
    ``fn(*args)`` for each job, on ``workers`` forked processes, results in job order.

    ``fn`` must be a module-level function (it is pickled to the workers by name).
    """
    if workers <= 1:
        return [fn(*args) for args in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        return list(pool.map(_call, [(fn, args) for args in jobs], chunksize=1))
