"""
The request executor: take due requests under a lease and run their operations in order.

:meth:`Executor.run_once` processes everything due and returns; :meth:`Executor.run_forever` polls
until stopped (SIGTERM or SIGINT finish the current operation, put the request back and release its lease).
"""

from __future__ import annotations

import logging
import random
import signal
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from types import FrameType

from failover.environment import Environment
from failover.executor.batch import RequestPairs, round_pairs, run_pairs
from failover.executor.leases import Lease, LeaseLost
from failover.executor.operations import record_outcome, run_file
from failover.executor.policy import ExecutorPolicy
from failover.executor.report import PassReport, failed_requests
from failover.executor.upload_hooks import on_request_failed
from failover.request import (
    FileStatus,
    Operation,
    Request,
    RequestStatus,
    current_operation,
    failure_reason,
    refresh_statuses,
)
from fsm.clock import format_time
from fsm.crashpoints import crash_point
from persistence.errors import StoreUnavailable
from persistence.leases import release_request, take_due_requests

__all__ = ["Executor", "new_executor_name"]

log = logging.getLogger("failover.executor")


def new_executor_name() -> str:
    """A fresh lease owner name, for an executor not given one: ``executor-`` and 8 random hex digits."""
    return f"executor-{uuid.uuid4().hex[:8]}"


class Executor:
    """
    Runs committed requests to completion.

    Args:
        env: database, SEs, catalogs and clock.
        policy: retries, backoff and lease length.
        name: this executor's lease owner name (default: a random one).
        seed: seeds the backoff jitter, so runs are reproducible.
    """

    def __init__(
        self,
        env: Environment,
        policy: ExecutorPolicy | None = None,
        *,
        name: str | None = None,
        seed: int = 0,
    ) -> None:
        self.env = env
        self.policy = policy or ExecutorPolicy()
        self.name = name or new_executor_name()
        self.rng = random.Random(seed)
        self.stopping = threading.Event()

    def take(self, exclude: Collection[int] = ()) -> Lease | None:
        """Take the next due request (not one of ``exclude``) under a lease, or None when nothing is due."""
        leases = self.take_many(exclude, limit=1)
        return leases[0] if leases else None

    def run_once(self) -> int:
        """Process every request that is due now; return how many were taken (see :meth:`run_pass`)."""
        return self.run_pass().taken

    def run_pass(self) -> PassReport:
        """
        Process every request that is due now; return how many were taken, how they were left, and
        which failed.

        A request put back unfinished (for instance due at once because it could not advance) waits for
        the next call instead of being taken again in a loop. Only those are excluded from the next take:
        a finished request is not due any more, and excluding every request taken would make each take
        cost as much as the pass so far.
        """
        taken = 0
        unfinished: list[int] = []
        failed: list[int] = []
        left_in: Counter[str] = Counter()
        while not self.stopping.is_set() and (leases := self.take_many(exclude=unfinished)):
            taken += len(leases)
            for lease, status in self.process_many(leases):
                left_in[str(status)] += 1
                if status is RequestStatus.Failed:
                    failed.append(lease.request_id)
                if not status.is_final:
                    unfinished.append(lease.request_id)
        if taken:
            counts = ", ".join(f"{status} {count}" for status, count in sorted(left_in.items()))
            log.info("%s: %d request%s taken, left %s", self.name, taken, "s" if taken != 1 else "", counts)
        return PassReport(taken, dict(left_in), tuple(failed))

    def take_many(self, exclude: Collection[int] = (), limit: int | None = None) -> list[Lease]:
        """Take up to ``limit`` due requests (default ``policy.batch_size``), not in ``exclude``, at once."""
        now = self.env.clock()
        lease_seconds = self.policy.lease_seconds
        wanted = max(1, self.policy.batch_size if limit is None else limit)
        with self.env.store.transaction() as conn:
            expires = Lease(0, self.name, lease_seconds).expiry(now)
            taken = take_due_requests(conn, self.name, format_time(now), expires, exclude, limit=wanted)
        crash_point("after-take")
        return [Lease(request_id, self.name, lease_seconds) for request_id in taken]

    def process_many(self, leases: list[Lease]) -> list[tuple[Lease, RequestStatus]]:
        """
        Run taken requests: failover pairs (replicate, then remove) together, in rounds
        (:mod:`failover.executor.batch`), anything else one request at a time (:meth:`process`).

        Returns:
            Each lease with the status its request was left in (Assigned when the lease was lost).
        """
        results: list[tuple[Lease, RequestStatus]] = []
        batched: list[RequestPairs] = []
        loaded = self.env.requests.load_many([lease.request_id for lease in leases])
        for lease in leases:
            request = loaded.get(lease.request_id)
            if request is None:  # gone meanwhile: raises NotFound, as loading it alone does
                request = self.env.requests.load(lease.request_id)
            current = refresh_statuses(request)
            pairs = round_pairs(request, current, self.policy)
            if pairs:
                batched.append(RequestPairs.of(lease, request, pairs))
            else:
                results.append((lease, self.process(lease, request)))
        while batched:
            recorded = run_pairs(
                self.env,
                batched,
                self.policy,
                self.rng,
                stopping=self.stopping.is_set,
                release=lambda lease, request, retry_at: self._release(
                    self.env.store.conn, lease, request, retry_at
                ),
            )
            lost = {id(each) for each in batched} - {id(each) for each in recorded}
            results += [(each.lease, RequestStatus.Assigned) for each in batched if id(each) in lost]
            batched = []
            for each in recorded:
                if each.released:
                    results.append((each.lease, each.request.status))
                elif each.handed_back:
                    results.append((each.lease, self.process(each.lease)))
                else:
                    batched.append(RequestPairs.of(each.lease, each.request, each.following))
        return results

    def run_forever(self, poll_interval: float = 5.0) -> None:
        """
        Poll for due requests until :attr:`stopping` is set (SIGTERM and SIGINT set it).

        A database that cannot be used for a while (locked past the timeout, its disk full) is logged
        and tried again at the next poll, as a service should: nothing of a failed transaction was
        stored, and a request it leaves taken is taken again once its lease expires.
        """
        self._install_signal_handlers()
        while not self.stopping.is_set():
            try:
                report = self.run_pass()
                self._log_failed(report)
            except StoreUnavailable as err:
                log.warning(
                    "%s: the database is unavailable, trying again in %g s: %s", self.name, poll_interval, err
                )
                report = PassReport()
            if report.taken == 0:
                self.stopping.wait(poll_interval)

    def _log_failed(self, report: PassReport) -> None:
        """For a service's log: each request the pass left Failed, why, and the uploads it left Stuck."""
        for failed in failed_requests(self.env, report):
            log.warning(
                "%s: request %d failed: %s; %d upload%s left Stuck (`failover retry --all` once fixed)",
                self.name,
                failed.request_id,
                failed.reason,
                failed.stuck,
                "s" if failed.stuck != 1 else "",
            )

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            if not self.stopping.is_set():  # a worker hears its group's signal and its parent's
                log.info("%s: signal %d, stopping after the current file", self.name, signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def process(self, lease: Lease, request: Request | None = None) -> RequestStatus:
        """
        Run a taken request's operations one at a time until it ends, must wait, or the executor stops.

        Args:
            lease: the request's lease.
            request: the request as just loaded (default: load it).
        """
        retry_at: datetime | None = None
        request = request or self._load(lease.request_id)
        try:
            while not self.stopping.is_set() and retry_at is None:
                op = current_operation(request)
                if request.status.is_final or op is None:
                    break
                if not any(f.status is FileStatus.Waiting for f in op.files):
                    # Nothing to run (files Scheduled by an outside transfer): look again later.
                    retry_at = self.env.clock() + timedelta(seconds=self.policy.backoff_base)
                    break
                retry_at, reshaped, released = self._run_operation(lease, request, op)
                if released:
                    return request.status
                # The in-memory request mirrors what was recorded, unless operations were inserted.
                if reshaped:
                    request = self._load(lease.request_id)
        except LeaseLost:
            log.warning("%s: lost the lease of request %d", self.name, lease.request_id)
            return RequestStatus.Assigned
        with self.env.store.transaction() as conn:
            self._release(conn, lease, request, retry_at)
        crash_point("after-release")
        return self._status_on_release(request)

    def _load(self, request_id: int) -> Request:
        request = self.env.requests.load(request_id)
        refresh_statuses(request)
        return request

    def _run_operation(
        self, lease: Lease, request: Request, op: Operation
    ) -> tuple[datetime | None, bool, bool]:
        """
        Try each Waiting file of the current operation once, recording each outcome in the store and in
        ``request``; return the earliest retry time, if any, whether operations were inserted, and whether
        the request was released.

        The outcome that finishes the request releases it in the same transaction: one commit less per
        request, and no moment where a finished request still looks taken.

        A stop request is honoured between operations, not here: the current operation is finished first.
        """
        retries: list[datetime] = []
        reshaped = False
        waiting = [f for f in op.files if f.status is FileStatus.Waiting]
        for file in waiting:
            outcome = run_file(self.env, op, file, self.policy, self.rng)
            outcome.apply(op)
            reshaped = reshaped or bool(outcome.followups)
            if outcome.retry_at is not None:
                retries.append(outcome.retry_at)
            refresh_statuses(request)
            if file is waiting[-1] and request.status.is_final and not reshaped:
                # Only a final request is released here: until then its lease is kept for the next file.
                record_outcome(
                    self.env, lease, op, outcome, then=lambda conn: self._release(conn, lease, request)
                )
                crash_point("after-release")
                return None, False, True
            record_outcome(self.env, lease, op, outcome)
        return (min(retries) if retries else None), reshaped, False

    @staticmethod
    def _status_on_release(request: Request) -> RequestStatus:
        """The status a request is given back with."""
        if not request.operations:
            return RequestStatus.Done  # nothing to do; left Waiting it would be taken again at once
        return request.status if request.status.is_final else RequestStatus.Waiting

    def _release(
        self, conn: sqlite3.Connection, lease: Lease, request: Request, retry_at: datetime | None = None
    ) -> bool:
        """
        Give the request back with its status, inside the caller's transaction; False (nothing written)
        when the lease was no longer ours.
        """
        status = self._status_on_release(request)
        now = self.env.clock()
        not_before = format_time(retry_at) if retry_at is not None and not status.is_final else None
        released = release_request(
            conn,
            lease.request_id,
            self.name,
            status.value,
            format_time(now),
            error=request.error,
            not_before=not_before,
        )
        if released and status in (RequestStatus.Failed, RequestStatus.Canceled):
            on_request_failed(self.env, lease.request_id, failure_reason(request) or request.status.value)
        crash_point("before-release")
        return released
