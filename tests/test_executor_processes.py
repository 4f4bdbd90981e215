"""
Executors in worker processes (:mod:`failover.executor.processes`, ``failover executor --jobs N``): the
workers share the due requests through their leases and run each once; a worker that dies or fails is
reported once the others have finished; SIGTERM and SIGINT stop every worker the way they stop one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.context import ForkProcess
from pathlib import Path

import pytest
from click.testing import CliRunner
from executor_support import SES, failed_over_workspace, job_content, job_lfn, lease_takers
from freezegun import freeze_time

from failover import fsck
from failover.cli import cli
from failover.environment import Environment
from failover.errors import ExecutorInterrupted, InvalidInput
from failover.executor import Executor, ExecutorPolicy
from failover.executor.processes import run_forever_in_processes, run_once_in_processes, worker_names
from failover.workspace import open_workspace
from fsm import crashpoints
from persistence.db import Durability
from states import UploadState

WORKER = Path(__file__).with_name("executor_worker.py")
UPLOADS = 24
#: Two requests per take: the workers take turns many times over.
POLICY = ExecutorPolicy(batch_size=2, jitter=0.0)
#: How long each copy of the signal test takes: the signal always arrives during one.
SLOW_COPY_S = 1.5
#: Upper bound on a wait for a process; only reached when one hangs.
WAIT_S = 30.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A workspace with committed failover uploads, one request each, and no connection left open."""
    failed_over_workspace(tmp_path / "ws", tmp_path / "job", UPLOADS).close()
    return tmp_path / "ws"


def _opener(home: Path) -> Callable[[], Environment]:
    return lambda: open_workspace(home, ses=SES, durability=Durability.NORMAL)


def _states(env: Environment) -> list[tuple[str, str | None]]:
    return env.store.conn.execute(
        "SELECT status, lease_owner FROM requests GROUP BY status, lease_owner ORDER BY status"
    ).fetchall()


def _all_cleaned(env: Environment) -> None:
    assert _states(env) == [("Done", None)]
    for n in range(UPLOADS):
        assert env.uploads.load(job_lfn(n)).state == UploadState.CLEANED
        assert Path(env.se("SE-A").pfn(job_lfn(n)).removeprefix("file://")).read_bytes() == job_content(n)
        assert not env.se("FAIL-1").exists(job_lfn(n))
    checked = fsck(env)
    assert checked.ok, checked.problems


def test_workers_share_the_due_requests_and_run_each_once(home: Path) -> None:
    taken = run_once_in_processes(_opener(home), 3, policy=POLICY, name="multi")

    assert taken == UPLOADS
    env = _opener(home)()
    takers = lease_takers(env)
    assert len(takers) == UPLOADS
    assert set(takers.values()) <= set(worker_names("multi", 3))
    assert len(set(takers.values())) >= 2, "one worker ran everything"
    recorded = env.store.conn.execute("SELECT request_id, owner FROM test_file_log").fetchall()
    assert len(recorded) == 2 * UPLOADS
    assert all(owner == takers[request_id] for request_id, owner in recorded)
    _all_cleaned(env)
    env.close()


def test_worker_names_number_the_lease_owners() -> None:
    assert worker_names("night", 3) == ["night-1", "night-2", "night-3"]


def test_jobs_below_one_are_refused(home: Path) -> None:
    with pytest.raises(ValueError, match="jobs must be at least 1, not 0"):
        run_once_in_processes(_opener(home), 0)


def test_a_worker_killed_holding_requests_is_reported_and_its_requests_wait_for_their_lease(
    home: Path,
) -> None:
    """
    ``multi-2`` takes two requests and is killed (a crash point) before running them; the other workers,
    let go only then, run the rest. The caller hears of it; the lease expires and the two are run.
    """
    opener = _opener(home)

    def open_env() -> Environment:
        env = opener()
        if multiprocessing.current_process().name == "multi-2":
            crashpoints.arm("after-take")
            return env
        while not env.store.conn.execute("SELECT 1 FROM requests WHERE lease_owner = 'multi-2'").fetchone():
            time.sleep(0.01)
        return env

    with pytest.raises(ExecutorInterrupted, match=r"executor multi-2 \(pid \d+\) stopped with exit status"):
        run_once_in_processes(open_env, 3, policy=POLICY, name="multi")

    env = opener()
    assert _states(env) == [("Assigned", "multi-2"), ("Done", None)]
    held = _assigned(env)
    assert held == POLICY.batch_size
    # Not before the lease expires; after, any executor takes them.
    assert Executor(env, POLICY).run_once() == 0
    with freeze_time(datetime.now(UTC) + timedelta(seconds=POLICY.lease_seconds + 1)):
        assert Executor(env, POLICY).run_once() == held
    _all_cleaned(env)
    env.close()


def _failing_in(worker: str, opener: Callable[[], Environment]) -> Callable[[], Environment]:
    """``opener``, except in the worker named ``worker``, where it raises InvalidInput."""

    def open_env() -> Environment:
        if multiprocessing.current_process().name == worker:
            raise InvalidInput(f"{worker}: the configuration names no catalog")
        return opener()

    return open_env


def _assigned(env: Environment) -> int:
    return int(
        env.store.conn.execute("SELECT COUNT(*) FROM requests WHERE status = 'Assigned'").fetchone()[0]
    )


def test_an_error_in_one_worker_reaches_the_caller_once_the_others_finished(home: Path) -> None:
    opener = _opener(home)

    with pytest.raises(InvalidInput, match="multi-1: the configuration names no catalog"):
        run_once_in_processes(_failing_in("multi-1", opener), 2, policy=POLICY, name="multi")

    env = opener()
    assert lease_takers(env) and set(lease_takers(env).values()) == {"multi-2"}
    _all_cleaned(env)
    env.close()


def test_a_worker_that_cannot_start_stops_those_started_and_the_error_is_raised(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[multiprocessing.process.BaseProcess] = []
    start = ForkProcess.start

    def start_two_then_fail(process: ForkProcess) -> None:
        if len(started) == 2:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        start(process)
        started.append(process)

    monkeypatch.setattr(ForkProcess, "start", start_two_then_fail)

    with pytest.raises(OSError, match="Resource temporarily unavailable"):
        run_forever_in_processes(_opener(home), 3, 0.05, policy=POLICY, name="loop")

    assert [process.exitcode for process in started] == [0, 0]
    env = _opener(home)()
    assert _assigned(env) == 0
    env.close()


def test_a_polling_worker_that_fails_stops_the_others_and_its_error_is_raised(home: Path) -> None:
    """Without this, the caller would wait on the healthy workers forever, one executor short."""
    opener = _opener(home)
    started = time.monotonic()

    with pytest.raises(InvalidInput, match="loop-2: the configuration names no catalog"):
        run_forever_in_processes(_failing_in("loop-2", opener), 3, 0.05, policy=POLICY, name="loop")

    assert time.monotonic() - started < WAIT_S
    env = opener()
    assert _assigned(env) == 0
    env.close()


def test_the_cli_runs_the_due_requests_in_worker_processes(home: Path) -> None:
    """``failover executor --once --jobs 2`` with a configuration naming the two SEs."""
    config = home.parent / "failover.toml"
    config.write_text(
        f'database = "{home / "failover.db"}"\ndurability = "NORMAL"\n'
        + "".join(f'[storage.{name}]\nurl = "{(home / "se" / name).as_uri()}"\n' for name in SES)
        + f'[catalogs.LocalCatalog]\npath = "{home / "catalog.db"}"\nmaster = true\n'
    )
    args = ["executor", "--once", "--jobs", "2", "--name", "cli", "--json", "--config", str(config)]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "executor": "cli",
        "processes": 2,
        "requests": UPLOADS,
        "left": {"Done": UPLOADS},
        "failed": [],
        "stuck": 0,
    }
    env = _opener(home)()
    assert set(lease_takers(env).values()) <= {"cli-1", "cli-2"}
    _all_cleaned(env)
    env.close()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as stream:
        return [int(child) for child in stream.read().split()]


def _alive(pid: int) -> bool:
    """Running (not gone, and not a zombie waiting for a parent that does not reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            return stream.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Caller:
    """``tests/executor_worker.py processes`` in a process of its own, with its worker processes."""

    def __init__(self, home: Path, poll: float, slow: float, jobs: int) -> None:
        command = [
            sys.executable,
            str(WORKER),
            "processes",
            str(home),
            "loop",
            str(poll),
            str(slow),
            str(jobs),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.workers: list[int] = []

    def expect(self, lines: set[str]) -> None:
        """Read output lines until each of ``lines`` was seen (any other line fails the test)."""
        assert self.proc.stdout is not None
        seen: list[str] = []
        while not lines <= set(seen):
            seen.append(self.proc.stdout.readline().strip())
            if seen[-1] not in lines:
                # Their stderr (the workers share the caller's) ends when they exit: read live, it would hang.
                self.workers = _children(self.proc.pid)
                self.kill_all()
                errors = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"unexpected output {seen!r}; stderr: {errors}")

    def started(self, jobs: int) -> list[int]:
        """The worker processes' ids, once ``jobs`` of them are running."""
        deadline = time.monotonic() + WAIT_S
        while len(self.workers) < jobs and time.monotonic() < deadline:
            self.workers = _children(self.proc.pid)
        assert len(self.workers) == jobs, self.workers
        return self.workers

    def kill_all(self) -> None:
        """Kill the caller and its workers (a test failing must not leave executors running)."""
        for pid in [self.proc.pid, *self.workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_caller_stops_every_worker_after_its_current_file(
    tmp_path: Path, signum: int
) -> None:
    """Two looping workers, each mid-copy: both finish the copy, release and exit; so does the caller."""
    env = failed_over_workspace(tmp_path / "ws", tmp_path / "job", 2)
    caller = Caller(tmp_path / "ws", poll=0.05, slow=SLOW_COPY_S, jobs=2)
    try:
        caller.expect({"ready", "copying " + job_lfn(0), "copying " + job_lfn(1)})
        workers = caller.started(2)
        caller.proc.send_signal(signum)
        out, err = caller.proc.communicate(timeout=WAIT_S)
    finally:
        caller.kill_all()
    assert caller.proc.returncode == 0, err
    assert out.split() == ["stopped"], out
    assert _gone_within(workers, 0.0)
    # Each worker finished its copy and put its request back, unleased, for the removal to come.
    assert _states(env) == [("Waiting", None)]
    assert [env.uploads.load(job_lfn(n)).state for n in range(2)] == [UploadState.REPLICATING] * 2
    assert Executor(env).run_once() == 2
    assert [env.uploads.load(job_lfn(n)).state for n in range(2)] == [UploadState.CLEANED] * 2
    env.close()


def test_workers_stop_by_themselves_when_their_caller_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the caller no time to stop its workers: they notice it is gone and stop."""
    failed_over_workspace(tmp_path / "ws", tmp_path / "job", 0).close()
    caller = Caller(tmp_path / "ws", poll=0.05, slow=0.0, jobs=2)
    try:
        caller.expect({"ready"})
        workers = caller.started(2)
        caller.proc.kill()
        caller.proc.wait(timeout=WAIT_S)
        assert _gone_within(workers, WAIT_S), "the workers ran on without their caller"
    finally:
        caller.kill_all()
