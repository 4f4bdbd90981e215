"""
Running the executor in several processes at once, to use the CPUs one Python process leaves idle.

An executor spends most of its time in Python, so one process keeps one CPU busy. The functions here fork
``jobs`` worker processes, each an :class:`~failover.executor.Executor` with its own environment (opened
in the worker with the opener it is given: a database connection is never shared between processes) and
a lease owner name of its own (``NAME-1`` to ``NAME-N``). The workers share nothing else: requests are
shared out by their leases, exactly as between executors started separately, so no request is run by two
workers at a time and every operation keeps the guarantees it has in one process.

SIGTERM and SIGINT (Ctrl-C) stop every worker the way they stop one executor: each finishes its current
file, puts its requests back and releases its leases. The caller's handlers are restored on return. A
polling worker that ends by itself (it failed, or was killed) stops the others too, and its error is
raised: a service then exits for its supervisor to restart it, rather than run on short of executors.
Workers whose caller is killed stop by themselves, after their current file.

Fork before the calling process opens anything that runs threads of its own (a remote storage client,
say): the command line opens no environment in the parent when it runs several workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from failover.environment import Environment
from failover.errors import ExecutorInterrupted
from failover.executor.policy import ExecutorPolicy
from failover.executor.report import PassReport
from failover.executor.runner import Executor, new_executor_name

__all__ = ["run_forever_in_processes", "run_once_in_processes", "run_pass_in_processes", "worker_names"]

log = logging.getLogger("failover.executor")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

#: Seconds between two requests to stop, to workers that have not ended yet.
_RESEND_S = 0.5


def worker_names(name: str, jobs: int) -> list[str]:
    """The lease owner names of ``jobs`` workers started under ``name``: ``name-1`` to ``name-N``."""
    return [f"{name}-{index}" for index in range(1, jobs + 1)]


def run_once_in_processes(
    open_env: Callable[[], Environment],
    jobs: int,
    *,
    policy: ExecutorPolicy | None = None,
    name: str | None = None,
) -> int:
    """
    Process every request that is due now with ``jobs`` executors in worker processes, then return.

    Args:
        open_env: opens an environment; called once in each worker (never in this process).
        jobs: how many worker processes.
        policy: retries, backoff and lease length (default :class:`ExecutorPolicy`).
        name: the workers' lease owner names start with it (default: a random one).

    Returns:
        How many requests the workers took, together (as :meth:`Executor.run_once` counts them).

    Raises:
        ValueError: ``jobs`` is below 1.
        ExecutorInterrupted: a worker stopped without finishing (killed, say); the others finished.
        FailoverError: a worker failed (raised as the worker raised it) once the others finished.
    """
    return run_pass_in_processes(open_env, jobs, policy=policy, name=name).taken


def run_pass_in_processes(
    open_env: Callable[[], Environment],
    jobs: int,
    *,
    policy: ExecutorPolicy | None = None,
    name: str | None = None,
) -> PassReport:
    """
    As :func:`run_once_in_processes`, returning the workers' :meth:`Executor.run_pass` reports merged:
    the requests taken, how they were left, and which failed.
    """
    return PassReport.merged(_run_workers(open_env, jobs, policy, name, poll_interval=None))


def run_forever_in_processes(
    open_env: Callable[[], Environment],
    jobs: int,
    poll_interval: float,
    *,
    policy: ExecutorPolicy | None = None,
    name: str | None = None,
    on_start: Callable[[], None] | None = None,
) -> None:
    """
    Run ``jobs`` executors in worker processes, each polling every ``poll_interval`` seconds, until
    SIGTERM or SIGINT (to this process or to the workers) stops them all; return once all have stopped.

    Args and Raises: as :func:`run_once_in_processes`, and ``on_start``, called once every worker is
    started and this process stops them on a signal (to announce it, say). A worker that fails or dies
    stops the others at once (each after its current file), and what it raised (or
    :class:`ExecutorInterrupted`) is raised.
    """
    _run_workers(open_env, jobs, policy, name, poll_interval=poll_interval, on_start=on_start)


def _run_workers(
    open_env: Callable[[], Environment],
    jobs: int,
    policy: ExecutorPolicy | None,
    name: str | None,
    *,
    poll_interval: float | None,
    on_start: Callable[[], None] | None = None,
) -> list[PassReport]:
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    policy = policy or ExecutorPolicy()
    names = worker_names(name or new_executor_name(), jobs)
    # Shared by fork: set in this process before a worker is forked, the worker starts stopped.
    stopping = threading.Event()
    context = multiprocessing.get_context("fork")
    workers: list[tuple[BaseProcess, Connection]] = []
    with _forwarding_signals(stopping, workers):
        try:
            for seed, worker_name in enumerate(names):
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(
                    target=_work,
                    args=(open_env, policy, worker_name, seed, poll_interval, stopping, writer),
                    name=worker_name,
                )
                process.start()
                writer.close()
                workers.append((process, reader))
        except BaseException:
            # Not all could start (no memory to fork, say): those that did stop, and are waited for.
            stopping.set()
            _stop(workers)
            _collect(workers, policy, stopping, looping=False)
            raise
        if on_start is not None:
            on_start()
        outcomes = _collect(workers, policy, stopping, looping=poll_interval is not None)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    for later in failures[1:]:
        log.error("executor worker failed as well: %s", later)
    if failures:
        raise failures[0]
    return [outcome for outcome in outcomes if isinstance(outcome, PassReport)]


@contextmanager
def _forwarding_signals(
    stopping: threading.Event, workers: list[tuple[BaseProcess, Connection]]
) -> Iterator[None]:
    """While the workers run, SIGTERM and SIGINT to this process stop them (not this process)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; the workers still obey signals
        return
    parent = os.getpid()

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if os.getpid() != parent:
            return  # a worker caught it before installing its own handlers: it stops itself
        log.info("signal %d: stopping %d executor workers after their current file", signum, len(workers))
        _stop(workers)

    previous = {signum: signal.signal(signum, forward) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(workers: list[tuple[BaseProcess, Connection]]) -> None:
    """Ask every worker still running to stop after its current file (it handles SIGTERM so)."""
    for process, _ in workers:
        if process.pid is not None and process.exitcode is None:
            os.kill(process.pid, signal.SIGTERM)


def _collect(
    workers: list[tuple[BaseProcess, Connection]],
    policy: ExecutorPolicy,
    stopping: threading.Event,
    *,
    looping: bool,
) -> list[PassReport | BaseException]:
    """
    Each worker's outcome, in worker order, taken as each worker ends. A looping worker that ends
    without being asked (it died or failed) stops the others: the caller hears of it at once, rather
    than running on with fewer executors unnoticed.
    """
    index_of = {reader: index for index, (_, reader) in enumerate(workers)}
    outcomes: dict[int, PassReport | BaseException] = {}
    while index_of:
        ready_readers = wait(list(index_of), timeout=_RESEND_S)
        if not ready_readers and stopping.is_set():
            # A signal that reaches a child just after fork, before Python resets its signal state in
            # the child, is lost: ask again until every worker has ended.
            _stop(workers)
        for ready in ready_readers:
            assert isinstance(ready, Connection)
            index = index_of.pop(ready)
            process = workers[index][0]
            outcomes[index] = _outcome(process, ready, policy)
            if looping and not stopping.is_set():
                log.error(
                    "%s ended unasked (%s): stopping the other executors", process.name, outcomes[index]
                )
                stopping.set()
                _stop(workers)
    return [outcomes[index] for index in range(len(workers))]


def _work(
    open_env: Callable[[], Environment],
    policy: ExecutorPolicy,
    name: str,
    seed: int,
    poll_interval: float | None,
    stopping: threading.Event,
    writer: Connection,
) -> None:
    """A worker: run one executor until it is done (or stopped); send back its report or what it raised."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, lambda *_: stopping.set())
    caller = multiprocessing.parent_process()
    if caller is not None:
        threading.Thread(target=_stop_when_orphaned, args=(caller.sentinel, stopping), daemon=True).start()
    result: Any
    try:
        env = open_env()
        try:
            runner = Executor(env, policy, name=name, seed=seed)
            runner.stopping = stopping
            if poll_interval is None:
                result = runner.run_pass()
            else:
                runner.run_forever(poll_interval)
                result = PassReport()
        finally:
            env.close()
    except BaseException as exc:  # reported to the caller, which raises it
        result = exc
    try:
        writer.send(result)
    except Exception:  # an exception that does not pickle: its text still reaches the caller
        writer.send(RuntimeError(f"{name}: {type(result).__name__}: {result}"))
    writer.close()


def _stop_when_orphaned(caller_sentinel: int, stopping: threading.Event) -> None:
    """In a worker: stop once the calling process is gone (killed, say), rather than run on unattended."""
    wait([caller_sentinel])
    log.warning("the process that started this executor is gone: stopping after the current file")
    stopping.set()


def _outcome(process: BaseProcess, reader: Connection, policy: ExecutorPolicy) -> PassReport | BaseException:
    """What a worker sent (its pass's report, or what it raised); one that sent nothing was interrupted."""
    try:
        outcome: PassReport | BaseException = reader.recv()
    except EOFError:
        process.join()
        return ExecutorInterrupted(
            f"executor {process.name} (pid {process.pid}) stopped with exit status {process.exitcode} "
            f"before finishing: the requests it held are taken again once their leases expire "
            f"(at most {policy.lease_seconds:g} s)"
        )
    finally:
        reader.close()
    process.join()
    return outcome
