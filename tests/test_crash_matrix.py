"""
The crash matrix (issue 5): every crash point every scenario meets, crashed at in a real process, then
restarted; the restart must leave fsck clean and the same uploads, storage, catalog and requests as the
crash-free run. The cases come from the crash-free runs' crash logs, not from a hand-picked list, and
the scenarios are checked against the upload machine's graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from failover.crashtest import (
    SCENARIOS,
    Case,
    CrashPoint,
    DryRun,
    Sandbox,
    dry_run,
    dry_run_all,
    matrix_cases,
)
from failover.crashtest.coverage import path_walkers, uncovered_edges
from failover.crashtest.jobs import client, job_files, to
from failover.crashtest.runner import run_all, run_case
from failover.crashtest.scenarios import Scenario
from states import UploadState

#: Cases run on this many forked workers (the CI machines have 2 cores).
WORKERS = 2
#: The matrix must not shrink unnoticed (it had 397 cases when written).
MIN_CASES = 300


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DryRun]:
    """Each scenario's crash-free run: the crash points it meets and the baseline every case must reach."""
    return dry_run_all(tmp_path_factory.mktemp("dry"), WORKERS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_crash_free_run_ends_as_declared_and_fsck_clean(dry_runs: dict[str, DryRun], name: str) -> None:
    """A baseline is only worth comparing with if it is itself right."""
    scenario = SCENARIOS[name]
    report = dry_runs[name].report
    assert report["fsck"]["problems"] == []
    assert report["snapshot"]["uploads"] == dict(zip(scenario.lfns(), scenario.expected, strict=True))
    assert dry_runs[name].points


def test_scenarios_walk_every_path_and_edge_of_the_upload_graph(
    dry_runs: dict[str, DryRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """The scenario list is checked against ``scenario_paths(UPLOAD_MACHINE)``, not trusted."""
    walked = {
        name: [
            [(src, trigger, dst) for src, trigger, dst in steps] for steps in run.report["journal"].values()
        ]
        for name, run in dry_runs.items()
    }
    walkers = path_walkers(walked)
    with capsys.disabled():
        print(f"\nupload graph: {len(walkers)} scenario paths")
        for path, names in walkers:
            print(f"  {' -> '.join(trigger for _, trigger, _ in path)}: {', '.join(names) or 'NOT WALKED'}")
    assert [path for path, names in walkers if not names] == []
    assert uncovered_edges(walked) == set()
    assert len(walkers) >= 10


def test_crash_matrix(
    dry_runs: dict[str, DryRun], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every (scenario, crash point, occurrence): crash there, restart, same result as without a crash."""
    cases = matrix_cases(dry_runs.values())
    jobs = [
        (case, tmp_path / f"{i:04d}", dry_runs[case.scenario].report["snapshot"])
        for i, case in enumerate(cases)
    ]
    outcomes = run_all(run_case, jobs, WORKERS)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    distinct = {(case.scenario, case.crashes[0].name) for case in cases}
    with capsys.disabled():
        print(
            f"\ncrash matrix: {len(cases)} cases ({len(distinct)} distinct (scenario, crash point) pairs, "
            f"{len({name for _, name in distinct})} crash points, {len(dry_runs)} scenarios), "
            f"{len(failed)} failed"
        )
    if failed:
        report = "\n".join(f"{o.case}\n  " + "\n  ".join(o.problems) for o in failed)
        pytest.fail(f"{len(failed)} of {len(cases)} failed:\n{report}", pytrace=False)
    assert len(cases) >= MIN_CASES


def test_every_scenario_meets_crash_points_more_than_once(dry_runs: dict[str, DryRun]) -> None:
    """Two or more files per scenario, so ``name@2`` cases exist: a crash on a later file is tested too."""
    repeated = {name for name, run in dry_runs.items() if any(p.nth > 1 for p in run.points)}
    assert repeated >= {"direct", "deferred", "failover", "retry_after_stuck"}


@pytest.mark.parametrize(
    ("text", "point"),
    [("after-put", CrashPoint("after-put", 1)), ("after-put@3", CrashPoint("after-put", 3))],
)
def test_crash_point_reads_the_crash_at_syntax(text: str, point: CrashPoint) -> None:
    """``name`` and ``name@n`` as ``FAILOVER_CRASH_AT`` takes them; ``str`` gives the ``@n`` form back."""
    assert CrashPoint.parse(text) == point
    assert CrashPoint.parse(str(point)) == point


def _forgetful(box: Sandbox) -> None:
    """Not re-entrant: a restart finds an upload and assumes the job is done."""
    if box.env.uploads.find(job_files(box, "forgetful", 2)[0].lfn) is None:
        ft = client(box, "forgetful")
        for file in job_files(box, "forgetful", 2):
            to("SE-A")(ft, file)


def test_the_matrix_notices_a_restart_that_loses_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness itself: a scenario that forgets its second file after a crash must fail its case."""
    monkeypatch.setitem(
        SCENARIOS, "forgetful", Scenario("forgetful", _forgetful, (UploadState.REGISTERED,) * 2, "broken")
    )
    baseline = dry_run("forgetful", tmp_path / "dry").report["snapshot"]
    case = Case("forgetful", (CrashPoint("after-commit:upload:uploaded", 1),))
    outcome = run_case(case, tmp_path / "case", baseline)
    assert [problem.partition("[")[0].partition(":")[0] for problem in outcome.problems] == [
        "catalogs",
        "storage",
        "uploads",
    ]
    assert (
        outcome.problems[-1] == "uploads[/vo/crashtest/forgetful/out2.root]: expected 'Registered', got None"
    )
