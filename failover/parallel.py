"""
Uploading many files in several processes, to use the CPUs one Python process leaves idle.

:func:`upload_in_processes` gives the files to worker processes a batch at a time, from one queue, so a
slow batch does not hold the others back. Each worker opens its own environment with the opener it is
given (a database connection is never shared between processes) and runs
:func:`~failover.batch.upload_many` on each batch it takes: every upload has the guarantees it has in
one process, and the database serialises the workers' transactions. The operations of every upload go
to the one request the caller names.

The workers are forked: they start at once, with the caller's modules already imported. Fork before
the calling process opens anything that runs threads of its own (a remote storage client, say): the
command line does, by opening its own environment only after the workers have finished.

If a worker dies (killed, or out of memory), the files of the batches handed out end with
:class:`~failover.errors.UploadInterrupted`, and no batch is handed out any more (those files end as
:func:`~failover.batch.not_started`): an upload it left in flight is finished by
:func:`~failover.resume.resume`, and the same upload run again continues or reports every file.

To stop early (a Ctrl-C, a batch system's SIGTERM), the caller sets the ``stopping`` event it passed:
the batches being uploaded are finished (a wait before a retry is cut short: those uploads are left in
flight), the others are not handed out, and their files end as :func:`~failover.batch.not_started`.
The workers ignore SIGINT and SIGTERM themselves, and a worker whose caller is gone ends after its batch.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as connection_wait
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

from failover.batch import BatchItem, Outcome, not_started, upload_many
from failover.driver import StopFlag
from failover.environment import Environment
from failover.errors import UploadInterrupted
from failover.validation.namespace import CallNames
from persistence.requests import RequestHeader

__all__ = ["BATCH_FILES", "MAX_AUTO_JOBS", "auto_jobs", "cpu_quota", "upload_in_processes", "usable_cpus"]

#: Files per batch handed to a worker (one :func:`~failover.batch.upload_many` batch: one commit).
BATCH_FILES = 256

#: The most worker processes :func:`auto_jobs` picks.
MAX_AUTO_JOBS = 4

#: Seconds between two looks at the stop event while batches run.
_POLL_S = 0.2

_worker_env: Environment | None = None
#: In a worker: set by the caller's stop.
_worker_stop: StopFlag | None = None
#: Held by a worker while it uploads a batch.
_in_batch = threading.Lock()


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup", own_cgroup: str = "/proc/self/cgroup") -> int:
    """
    The CPUs this process may use, at least 1: those it may run on (its affinity), and no more than its
    control group's CPU quota allows (a container or batch slot limited to one CPU sees them all).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota(cgroup_root, own_cgroup)
    return max(1, min(cpus, math.ceil(quota)) if quota is not None else cpus)


def cpu_quota(cgroup_root: str = "/sys/fs/cgroup", own_cgroup: str = "/proc/self/cgroup") -> float | None:
    """
    The CPUs' worth of time this process's control group may use (``cpu.max`` in cgroup v2,
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in v1), or None when it is not limited or cannot tell.
    """
    try:
        with open(own_cgroup, encoding="utf-8") as lines:
            groups = [line.rstrip("\n").split(":", 2) for line in lines]
        for _, controllers, path in groups:
            relative = path.lstrip("/")
            if controllers == "":  # v2: one hierarchy
                limit = Path(cgroup_root, relative, "cpu.max").read_text().split()
                return None if limit[0] == "max" else int(limit[0]) / int(limit[1])
            if "cpu" in controllers.split(","):
                folder = Path(cgroup_root, controllers, relative)
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None
    return None


def auto_jobs(files: int, cpus: int | None = None) -> int:
    """
    How many processes to upload ``files`` files with: one per batch of :data:`BATCH_FILES`, one per
    usable CPU, at most :data:`MAX_AUTO_JOBS`; 1 means upload in this process.
    """
    return max(1, min(math.ceil(files / BATCH_FILES), cpus or usable_cpus(), MAX_AUTO_JOBS))


def _upload_batch(
    open_env: Callable[[], Environment],
    batch: list[tuple[int, BatchItem]],
    request: RequestHeader,
    options: dict[str, Any],
) -> list[tuple[int, Outcome]]:
    """
    A worker's task: open this process's environment on first use, then upload one batch (a stop of the
    caller cuts its retry waits short: see :func:`~failover.batch.upload_many`).
    """
    global _worker_env
    with _in_batch:
        if _worker_env is None:
            _worker_env = open_env()
            Finalize(None, _worker_env.close, exitpriority=10)
        items = [item for _, item in batch]
        outcomes = upload_many(
            _worker_env, items, request=request, batch_size=len(batch), stopping=_worker_stop, **options
        )
    return [(index, outcome) for (index, _), outcome in zip(batch, outcomes, strict=True)]


def _check_lfns(items: Sequence[BatchItem]) -> None:
    """
    Refuse a call where two files have one LFN, or one's LFN is the other's directory: one process must
    upload both (it refuses the second, see :func:`~failover.batch.upload_many`), or which one wins
    would depend on which worker went first.
    """
    if len({item.lfn for item in items}) != len(items):
        raise ValueError("two files have the same LFN: one process must upload both")
    names = CallNames()
    for item in items:
        clash = names.clash(item.lfn)
        if clash is not None:
            raise ValueError(f"{clash}; one process must upload both")
        names.add(item.lfn)


def _interrupted(item: BatchItem, cause: BaseException) -> UploadInterrupted:
    return UploadInterrupted(
        f"the process uploading {item.local_path} stopped before reporting ({cause}): if it was in flight, "
        "`failover resume` finishes it; running the same upload again continues or reports it",
        lfn=item.lfn,
    )


def upload_in_processes(
    open_env: Callable[[], Environment],
    items: Sequence[BatchItem],
    *,
    jobs: int,
    request: RequestHeader,
    batch_size: int | None = None,
    on_batch: Callable[[Sequence[tuple[BatchItem, Outcome]]], None] | None = None,
    stopping: threading.Event | None = None,
    **options: Any,
) -> list[Outcome]:
    """
    Upload many files in ``jobs`` worker processes, with the options of :func:`~failover.uploads.upload`.

    Args:
        open_env: opens an environment; called once in each worker (never in this process).
        items: the files; no two may have the same LFN (one upload machine is one process's).
        jobs: how many worker processes (at most one per batch is started).
        request: the request every upload's operations go to (committed by the caller).
        batch_size: files per batch, the unit of work a worker takes (default :data:`BATCH_FILES`).
        on_batch: called in this process as each batch ends, with its files and outcomes.
        stopping: once set (by this process's signal handler, say), no batch is handed out any more: the
            workers finish the batches they hold, and the files of the others end with
            :func:`~failover.batch.not_started`. The workers ignore SIGINT and SIGTERM, so that a Ctrl-C
            sent to the whole process group does not cut their batches short: this process decides.

    Returns:
        For each item in order, its :class:`~failover.uploads.UploadResult` or the error that stopped it.

    Raises:
        ValueError: ``jobs`` or ``batch_size`` is below 1, or two items have the same LFN, or one's LFN
            is the other's directory.
        FailoverError: a worker could not open its environment (raised as the worker raised it).
    """
    batch_size = BATCH_FILES if batch_size is None else batch_size
    if jobs < 1 or batch_size < 1:
        raise ValueError(f"jobs and batch_size must be at least 1, not {jobs} and {batch_size}")
    _check_lfns(items)
    indexed = list(enumerate(items))
    batches = [indexed[start : start + batch_size] for start in range(0, len(indexed), batch_size)]
    outcomes: dict[int, Outcome] = {}
    workers = min(jobs, len(batches))
    if not workers:
        return []
    if stopping is None:
        stopping = threading.Event()
    context = multiprocessing.get_context("fork")
    waiting = iter(batches)
    running: dict[Future[list[tuple[int, Outcome]]], list[tuple[int, BatchItem]]] = {}
    # Set when the caller stops us, a worker dies (the pool takes no more work then) or an error ends it.
    halt = threading.Event()
    # Seen by the workers: a stop cuts short the retry waits of the batches they are uploading.
    workers_stop = context.Event()
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(workers_stop,)
    )
    with pool:

        def hand_out() -> None:
            # One batch ahead of the workers, no more: a batch not handed out is one a stop can keep back.
            while len(running) <= workers and not (halt.is_set() or stopping.is_set()):
                batch = next(waiting, None)
                if batch is None:
                    return
                try:
                    running[pool.submit(_upload_batch, open_env, batch, request, options)] = batch
                except BrokenProcessPool:
                    halt.set()  # a worker died since the last look: its batch tells how

        try:
            hand_out()
            while running:
                # A timeout, so that a stop is seen at once however the signal reached this process.
                finished, _ = wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    if not _record(future, running.pop(future), items, outcomes, on_batch):
                        halt.set()
                if stopping.is_set():
                    workers_stop.set()
                if halt.is_set() or stopping.is_set():
                    for future in [f for f in running if f.cancel()]:
                        running.pop(future)
                hand_out()
        except BaseException:
            halt.set()
            for future in running:
                future.cancel()
            raise
    for index, item in indexed:
        outcomes.setdefault(index, not_started(item))
    return [outcomes[index] for index in range(len(items))]


def _record(
    future: Future[list[tuple[int, Outcome]]],
    batch: list[tuple[int, BatchItem]],
    items: Sequence[BatchItem],
    outcomes: dict[int, Outcome],
    on_batch: Callable[[Sequence[tuple[BatchItem, Outcome]]], None] | None,
) -> bool:
    """
    Take a finished batch's outcomes and report them; False when its worker died (its files are then
    interrupted, and the pool takes no more work).
    """
    alive = True
    try:
        done = future.result()
    except BrokenProcessPool as lost:
        done = [(index, _interrupted(item, lost)) for index, item in batch]
        alive = False
    outcomes.update(done)
    if on_batch is not None:
        on_batch([(items[index], outcomes[index]) for index, _ in batch])
    return alive


def _start_worker(stop: StopFlag) -> None:
    """
    In a worker, first: SIGINT and SIGTERM are for the calling process to act on (see
    :func:`upload_in_processes`), which passes a stop on through ``stop``; and a worker whose caller is
    gone (killed, say) ends once its batch is done, rather than wait for batches forever (the pool's
    queue never closes: the worker holds its writing end too).
    """
    global _worker_stop
    _worker_stop = stop
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    caller = multiprocessing.parent_process()
    if caller is not None:
        threading.Thread(target=_end_when_orphaned, args=(caller.sentinel,), daemon=True).start()


def _end_when_orphaned(caller_sentinel: int) -> None:
    connection_wait([caller_sentinel])
    with _in_batch:  # the batch being uploaded is finished first: it leaves no upload in flight
        os._exit(0)
