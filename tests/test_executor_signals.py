"""
``Executor.run_forever`` in a real process stops cleanly on SIGTERM or SIGINT: it finishes the file it is
working on, records it, puts the request back without a lease and exits 0, whether busy or idle.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor
from failover.request import File, FileStatus, Operation, OperationType, RequestStatus
from failover.workspace import open_workspace
from persistence.db import Durability
from persistence.requests import RequestHeader
from states import UploadState

WORKER = Path(__file__).with_name("executor_worker.py")
LFNS = ("/vo/user/a/alice/run42/out-1.root", "/vo/user/a/alice/run42/out-2.root")
#: How long the worker's copy keeps running after the signal arrived.
SLOW_COPY_S = 1.0
#: Upper bound on a wait for the worker; only reached when it misbehaves.
WAIT_S = 20.0


class Worker:
    """A ``tests/executor_worker.py forever`` process, its output lines read as they come."""

    def __init__(self, home: Path, poll: float, slow: float) -> None:
        command = [sys.executable, str(WORKER), "forever", str(home), "worker", str(poll), str(slow)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str) -> str:
        """The first output line starting with ``prefix`` (lines before it are skipped)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"worker never said {prefix!r}; stderr: {self.proc.communicate()[1]}")
            if line.startswith(prefix):
                return line

    def stop(self, signum: int) -> float:
        """Send ``signum``; return how long the worker took to exit (it must exit 0)."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"worker still running {WAIT_S} s after signal {signum}")
        assert code == 0, self.proc.communicate()[1]
        return time.monotonic() - sent


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Environment]:
    """The workspace the worker process opens too (same SEs and durability as ``executor_worker.py``)."""
    env = open_workspace(tmp_path / "ws", ses=("SE-A", "FAIL-1"), durability=Durability.NORMAL)
    yield env
    env.store.close()


def _two_failover_uploads(env: Environment, tmp_path: Path) -> int:
    client = FailoverTransfer(environment=env)
    for n, lfn in enumerate(LFNS):
        local = tmp_path / f"out-{n}.root"
        local.write_bytes(f"output {n}\n".encode() * 400)
        assert client.transferAndRegisterFileFailover(local.name, str(local), lfn, "SE-A", "FAIL-1", {})["OK"]
    return int(client.commitRequest()["Value"])


def _leases(env: Environment) -> list[tuple[str, str | None, str | None]]:
    return env.store.conn.execute("SELECT status, lease_owner, lease_expires FROM requests").fetchall()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_a_copy_finishes_it_releases_the_request_and_exits_0(
    workspace: Environment, tmp_path: Path, signum: int
) -> None:
    request_id = _two_failover_uploads(workspace, tmp_path)
    worker = Worker(tmp_path / "ws", poll=0.05, slow=SLOW_COPY_S)
    worker.expect("copying")

    took = worker.stop(signum)

    assert took < SLOW_COPY_S + 5.0
    assert worker.expect("stopped")
    assert _leases(workspace) == [("Waiting", None, None)]
    request = workspace.requests.load(request_id)
    assert [file.status for op in request.operations for file in op.files] == [
        FileStatus.Done,
        FileStatus.Waiting,
        FileStatus.Waiting,
        FileStatus.Waiting,
    ]
    assert [workspace.uploads.load(lfn).state for lfn in LFNS] == [
        UploadState.REPLICATING,
        UploadState.FAILED_OVER,
    ]
    assert workspace.se("SE-A").exists(LFNS[0]) and workspace.se("FAIL-1").exists(LFNS[0])
    # The second file's copy, made in the same round, is not left behind unregistered.
    assert not workspace.se("SE-A").exists(LFNS[1]) and workspace.se("FAIL-1").exists(LFNS[1])

    assert Executor(workspace).run_once() == 1
    assert workspace.requests.load(request_id).status is RequestStatus.Done
    assert [workspace.uploads.load(lfn).state for lfn in LFNS] == [UploadState.CLEANED] * 2


def test_signal_finishes_every_file_of_the_current_operation_first(
    workspace: Environment, tmp_path: Path
) -> None:
    """
    Issue 4: the executor "finishes the current operation" before it stops. A two-file replication
    interrupted during its first copy is completed; the operation after it does not start.
    """
    client = FailoverTransfer(environment=workspace)
    for n, lfn in enumerate(LFNS):
        local = tmp_path / f"out-{n}.root"
        local.write_bytes(f"output {n}\n".encode() * 400)
        assert client.transferAndRegisterFile(local.name, str(local), lfn, "FAIL-1", {})["OK"]
    files = [File(lfn) for lfn in LFNS]
    request_id = workspace.requests.ensure(RequestHeader("two-file-op", owner="alice", owner_group="vo"))
    workspace.requests.add_operations(
        request_id,
        [
            Operation(
                OperationType.ReplicateAndRegister, target_se=["SE-A"], source_se="FAIL-1", files=files
            ),
            Operation(OperationType.RemoveReplica, target_se=["FAIL-1"], files=[File(lfn) for lfn in LFNS]),
        ],
    )
    workspace.requests.commit(request_id)
    worker = Worker(tmp_path / "ws", poll=0.05, slow=SLOW_COPY_S)
    worker.expect("copying")

    worker.stop(signal.SIGTERM)

    request = workspace.requests.load(request_id)
    assert [[file.status for file in op.files] for op in request.operations] == [
        [FileStatus.Done, FileStatus.Done],
        [FileStatus.Waiting, FileStatus.Waiting],
    ]
    assert _leases(workspace) == [("Waiting", None, None)]
    assert all(workspace.se("FAIL-1").exists(lfn) for lfn in LFNS)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_idle_stops_without_waiting_for_the_poll_interval(
    workspace: Environment, tmp_path: Path, signum: int
) -> None:
    worker = Worker(tmp_path / "ws", poll=60.0, slow=0.0)
    worker.expect("ready")
    time.sleep(0.1)  # let it reach its poll wait

    took = worker.stop(signum)

    assert took < 5.0
    assert worker.expect("stopped")
    assert _leases(workspace) == []


def test_a_looping_executor_waits_out_a_locked_database(
    client_env: Environment, failed_over: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A service survives the database being unavailable for a while: it logs, polls again, goes on."""
    request_id = failed_over("/vo/locked/out.root")
    locker = sqlite3.connect(tmp_path / "ws" / "failover.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    stopping = threading.Event()
    loop = _service(tmp_path, stopping, busy_timeout_ms=50)
    with caplog.at_level(logging.WARNING, logger="failover.executor"):
        loop.start()
        deadline = time.monotonic() + 30
        while not _warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.01)
        locker.execute("ROLLBACK")
        while _status(tmp_path, request_id) != "Done" and time.monotonic() < deadline:
            time.sleep(0.01)
        stopping.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    assert _status(tmp_path, request_id) == "Done"
    assert "the database is unavailable, trying again in 0.05 s" in _warnings(caplog)[0]


def test_a_looping_executor_logs_each_request_that_failed_with_why(
    client_env: Environment, failed_over: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A service's log says which request failed, why, and how many uploads it left Stuck."""
    lfns = ["/vo/loop/a.root", "/vo/loop/b.root"]
    request_id = failed_over(*lfns)
    assert client_env.se("FAIL-1").remove(lfns[0])
    stopping = threading.Event()
    loop = _service(tmp_path, stopping, name="service")
    with caplog.at_level(logging.WARNING, logger="failover.executor"):
        loop.start()
        deadline = time.monotonic() + 30
        while not any("request" in w for w in _warnings(caplog)) and time.monotonic() < deadline:
            time.sleep(0.01)
        stopping.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    assert _status(tmp_path, request_id) == "Failed"
    (logged,) = [w for w in _warnings(caplog) if w.startswith("service: request")]
    assert logged.startswith(f"service: request {request_id} failed: ReplicateAndRegister: SourceMissing: ")
    assert logged.endswith("; 2 uploads left Stuck (`failover retry --all` once fixed)")


def _service(
    tmp_path: Path, stopping: threading.Event, *, name: str | None = None, busy_timeout_ms: int | None = None
) -> threading.Thread:
    """A thread (not started) running ``failover executor --loop``'s executor, polling every 0.05 s."""

    def serve() -> None:  # its own environment: a connection belongs to the thread that opened it
        env = open_workspace(tmp_path / "ws", ses=("SE-A", "SE-B", "SE-C", "FAIL-1", "FAIL-2"))
        if busy_timeout_ms is not None:
            env.store.conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        runner = Executor(env, name=name)
        runner.stopping = stopping
        runner.run_forever(0.05)
        env.close()

    return threading.Thread(target=serve)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    # The executor's only: an earlier in-process ``failover -v`` may have left the root logger at INFO.
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "failover.executor" and r.levelno >= logging.WARNING]


def _status(tmp_path: Path, request_id: int) -> str:
    with contextlib.closing(sqlite3.connect(tmp_path / "ws" / "failover.db")) as conn:
        (status,) = conn.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()
    return str(status)
