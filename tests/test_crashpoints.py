"""
Crash points (fsm/crashpoints.py): armed by the environment, read at a process's first hit and again at a
forked child's first hit, or by ``arm``; ``name@n`` kills at the n-th hit counted from the arming; a log
lists every hit in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE, CRASH_LOG, arm, crash_point, disarm, hits


def _in_child(work: Callable[[], None], **environment: str) -> int:
    """Fork, set ``environment`` in the child only, run ``work`` there; return the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        try:
            os.environ.update(environment)
            work()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _hit(*names: str) -> Callable[[], None]:
    def work() -> None:
        for name in names:
            crash_point(name)

    return work


@pytest.fixture(autouse=True)
def _no_arming() -> None:
    disarm()


def test_a_child_armed_by_the_environment_after_fork_dies_at_that_point(tmp_path: Path) -> None:
    crash_point("before-anything")  # the parent has read its (empty) environment already
    log = tmp_path / "hits.log"

    code = _in_child(_hit("a", "b", "c"), **{CRASH_AT: "b", CRASH_LOG: str(log)})

    assert code == CRASH_EXIT_CODE
    assert log.read_text().split() == ["a", "b"]


def test_name_at_n_counts_hits_from_the_child_start_and_lists_several_points(tmp_path: Path) -> None:
    for _ in range(5):
        crash_point("a")  # the parent's hits are not the child's
    log = tmp_path / "hits.log"

    code = _in_child(_hit("a", "b", "a", "a"), **{CRASH_AT: "x, a@3", CRASH_LOG: str(log)})

    assert code == CRASH_EXIT_CODE
    assert log.read_text().split() == ["a", "b", "a", "a"]


def test_a_dry_run_logs_every_hit_and_exits_normally(tmp_path: Path) -> None:
    log = tmp_path / "hits.log"

    assert _in_child(_hit("a", "b", "a"), **{CRASH_LOG: str(log)}) == 0
    assert log.read_text().split() == ["a", "b", "a"]


def test_arm_kills_at_the_nth_hit_from_now_and_disarm_forgets() -> None:
    def armed_twice() -> None:
        crash_point("p")
        arm("p", 2)
        crash_point("p")
        crash_point("p")
        os._exit(0)

    assert _in_child(armed_twice) == CRASH_EXIT_CODE

    arm("q")
    disarm()
    crash_point("q")  # nothing armed any more: this process goes on
    assert hits() == {"q": 1}


def test_the_environment_is_read_once_per_process(tmp_path: Path) -> None:
    """A change after the first hit is not seen by that process (arm() is the in-process way)."""

    def late() -> None:
        crash_point("a")
        os.environ[CRASH_AT] = "b"
        crash_point("b")

    assert _in_child(late) == 0
