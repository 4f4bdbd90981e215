"""
A request executor in a process of its own, as a deployment runs it; used by the concurrency and signal
tests (not a test module).

Usage::

    python tests/executor_worker.py once HOME NAME GO_FILE
        print "ready", wait until GO_FILE exists, run every due request, then print one JSON line
        {"name": ..., "taken": ..., "calls": [[target, operation, count], ...]}
    python tests/executor_worker.py forever HOME NAME POLL SLOW
        run until SIGTERM or SIGINT, polling every POLL seconds; print "ready" once the signal handlers
        are installed, "copying LFN" when a copy to SE-A starts (each takes SLOW more seconds), and
        "stopped" on the way out
    python tests/executor_worker.py processes HOME NAME POLL SLOW JOBS
        the same with JOBS executors in worker processes (``run_forever_in_processes``, one request per
        take), each announcing its copies; "ready" once all are started

The workspace at HOME has the storage elements ``SE-A`` and ``FAIL-1`` and runs with
``Durability.NORMAL``. Every storage and catalog call goes through a :class:`FaultInjector` (no faults
scripted), which counts them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.executor.processes import run_forever_in_processes
from failover.testing import FaultInjector
from failover.workspace import open_workspace
from persistence.db import Durability

#: The storage elements of the workspaces these workers run in.
SES = ("SE-A", "FAIL-1")


def say(line: str) -> None:
    """
    Write ``line`` to stdout in one system call: worker processes share the pipe, and ``print`` writes
    the line and its end apart when Python runs unbuffered (``PYTHONUNBUFFERED``), so two workers'
    lines could interleave ("copying Acopying B").
    """
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


class SlowCopies(FaultInjector):
    """Counts calls; a copy to SE-A announces itself and takes ``seconds`` longer."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def check(self, target: str, operation: str, lfn: str | None = None) -> None:
        """Announce and slow down copies to SE-A, then count the call."""
        if (target, operation) == ("SE-A", "copy") and self.seconds:
            say(f"copying {lfn}")
            time.sleep(self.seconds)
        super().check(target, operation, lfn)


def _announce_when_handlers_installed() -> None:
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.005)
    say("ready")


def run_once(home: str, name: str, go_file: str) -> None:
    """Run every due request once all workers are started, and report what was done."""
    injector = FaultInjector()
    env = injector.wrap(open_workspace(home, ses=SES, durability=Durability.NORMAL))
    executor = Executor(env, name=name)
    say("ready")
    while not Path(go_file).exists():
        time.sleep(0.005)
    taken = executor.run_once()
    calls = [[target, operation, count] for (target, operation), count in sorted(injector.calls.items())]
    say(json.dumps({"name": name, "taken": taken, "calls": calls}))


def run_forever(home: str, name: str, poll: float, slow: float) -> None:
    """Poll for requests until a signal stops the executor."""
    env = SlowCopies(slow).wrap(open_workspace(home, ses=SES, durability=Durability.NORMAL))
    threading.Thread(target=_announce_when_handlers_installed, daemon=True).start()
    Executor(env, name=name).run_forever(poll_interval=poll)
    say("stopped")


def run_processes(home: str, name: str, poll: float, slow: float, jobs: int) -> None:
    """Poll with ``jobs`` executors in worker processes until a signal stops them all."""

    def open_env() -> Environment:
        return SlowCopies(slow).wrap(open_workspace(home, ses=SES, durability=Durability.NORMAL))

    run_forever_in_processes(
        open_env,
        jobs,
        poll,
        policy=ExecutorPolicy(batch_size=1),
        name=name,
        on_start=lambda: say("ready"),
    )
    say("stopped")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "once":
        run_once(args[0], args[1], args[2])
    elif mode == "processes":
        run_processes(args[0], args[1], float(args[2]), float(args[3]), int(args[4]))
    else:
        run_forever(args[0], args[1], float(args[2]), float(args[3]))
