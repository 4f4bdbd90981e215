"""
Double crashes (issue 5): crash at a point, restart and crash again at a point that restart meets,
restart again; the same requirements as the single-crash matrix. The pairs are drawn by a seeded
generator: first crashes spread over every scenario, second crashes from each restart's own crash log.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from failover.crashtest import SCENARIOS, Case, DryRun, dry_run_all, matrix_cases
from failover.crashtest.runner import run_all, run_double

#: Cases run on this many forked workers (the CI machines have 2 cores).
WORKERS = 2
#: Seeds the choice of first crashes; pair ``i`` draws its second crash with ``SEED + i``.
SEED = 20240605
#: First crashes tried; a few end their scenario (the restart meets no crash point) and make no pair.
CANDIDATES = 230
MIN_PAIRS = 200


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DryRun]:
    """Each scenario's crash-free run: its crash points and the baseline every pair must reach."""
    return dry_run_all(tmp_path_factory.mktemp("dry"), WORKERS)


def first_crashes(dry_runs: dict[str, DryRun], count: int, seed: int) -> list[Case]:
    """``count`` single-crash cases, shuffled per scenario and dealt round-robin: every scenario gets some."""
    rng = random.Random(seed)
    decks = []
    for name in sorted(dry_runs):
        deck = matrix_cases([dry_runs[name]])
        rng.shuffle(deck)
        decks.append(deck)
    dealt = [case for case in itertools.chain.from_iterable(itertools.zip_longest(*decks)) if case]
    return dealt[:count]


def test_first_crashes_are_drawn_reproducibly_from_every_scenario(dry_runs: dict[str, DryRun]) -> None:
    """Same seed, same cases; every scenario is represented."""
    drawn = first_crashes(dry_runs, CANDIDATES, SEED)
    assert drawn == first_crashes(dry_runs, CANDIDATES, SEED)
    assert {case.scenario for case in drawn} == set(SCENARIOS)
    assert len(set(drawn)) == CANDIDATES


def test_double_crash(
    dry_runs: dict[str, DryRun], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Crash, restart, crash the restart at a point it meets, restart: fsck clean, same result."""
    firsts = first_crashes(dry_runs, CANDIDATES, SEED)
    jobs = [
        (case, tmp_path / f"{i:04d}", dry_runs[case.scenario].report["snapshot"], SEED + i)
        for i, case in enumerate(firsts)
    ]
    outcomes = run_all(run_double, jobs, WORKERS)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    pairs = [outcome for outcome in outcomes if len(outcome.case.crashes) == 2]
    with capsys.disabled():
        print(
            f"\ndouble crash: {len(pairs)} pairs over {len({o.case.scenario for o in pairs})} scenarios "
            f"({len(outcomes) - len(pairs)} first crashes left nothing to crash again), {len(failed)} failed"
        )
    if failed:
        report = "\n".join(f"{o.case}\n  " + "\n  ".join(o.problems) for o in failed)
        pytest.fail(f"{len(failed)} of {len(outcomes)} failed:\n{report}", pytrace=False)
    assert len(pairs) >= MIN_PAIRS
