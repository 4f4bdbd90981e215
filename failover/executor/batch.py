"""
The executor's fast path for failover requests: many requests per catalog commit and per store commit.

A failover request is pairs of operations: ``ReplicateAndRegister`` to the target, then ``RemoveReplica``
of the temporary replica. Run one request at a time, each pair costs two catalog commits and two store
commits. :func:`run_pairs` takes a batch of leased requests through their pairs in rounds; in each round,
for every request whose current operations are such a pair:

1. copies: each file of the replication is checked (is its effect already there?) and copied where needed;
2. catalog, one transaction per catalog for the round: each copy registered; then, for a request whose
   replication is complete, each file of the removal checked and its catalog entries removed (the check
   sees the registrations just made, and still requires a verified copy elsewhere);
3. storage: the temporary replicas removed, only now that the catalog commit no longer names them;
4. store, one transaction for the round: every outcome recorded with the upload transitions it causes,
   each request in its own savepoint, and a request released when it ends or must wait.

Per request, the effects keep the one-at-a-time order: a copy is registered only once it is verified, and
a replica is removed after its catalog entry and only while a verified, registered copy remains. A crash
anywhere leaves what a crash of the one-at-a-time path leaves at some point of it: the leases expire and
the idempotent handlers find what is done. Whatever leaves the happy path (a follow-up operation to run,
a request of another shape, a catalog commit that fails) is handed back to :meth:`Executor.process`.

A request canceled or taken over while its copies ran gets nothing more (its lease is checked before the
catalog phase). A stop (SIGTERM) lets the round finish its copies and registrations, the current
operations, then releases every request of the round.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from failover.checksum import ChecksumType
from failover.environment import Environment
from failover.errors import FailoverError
from failover.executor.handlers import (
    HANDLERS,
    CopyPlan,
    copy_is_right,
    place_copies,
    plan_copies,
    register_copies,
    remove_objects,
    replicas_registered,
    unregister_replicas,
)
from failover.executor.leases import Lease, LeaseLost
from failover.executor.operations import FileOutcome, failure_outcome, record_outcome, success_outcome
from failover.executor.policy import ExecutorPolicy
from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationType,
    Request,
    current_operation,
    refresh_statuses,
)
from failover.storage import PutResult
from fsm.crashpoints import crash_point
from persistence.leases import lease_owners
from persistence.rows import MachineRow

__all__ = ["Pair", "current_pair", "run_pairs"]

log = logging.getLogger("failover.executor")
T = TypeVar("T")

#: Releases a request (with its retry time, if any) inside the recording transaction; False (nothing
#: written) when the lease was no longer held.
Release = Callable[[Lease, Request, "datetime | None"], bool]


@dataclass
class Pair:
    """One request's current replication and removal, and what this round made of their files."""

    lease: Lease
    request: Request
    replicate: Operation
    remove: Operation
    outcomes: list[tuple[Operation, FileOutcome]] = field(default_factory=list)
    copied: list[File] = field(default_factory=list)
    #: The copies this round made and verified, by LFN then target SE.
    placed: dict[str, dict[str, PutResult]] = field(default_factory=dict)
    unregistered: list[File] = field(default_factory=list)
    #: The round went off the happy path for this request: it continues one operation at a time.
    handed_back: bool = False
    #: The request was released at the end of the round (ended, must wait, or the executor stops).
    released: bool = False
    #: The request's next pair, once this round is recorded (None: none; see ``handed_back``).
    following: tuple[Operation, Operation] | None = None


def current_pair(request: Request, current: Operation | None = None) -> tuple[Operation, Operation] | None:
    """
    The request's current operation and the next one, when they are a replication then a removal.

    ``current``: the current operation, as :func:`refresh_statuses` has just returned it (default: found
    by looking at every operation).
    """
    op = current if current is not None else current_operation(request)
    if op is None or request.status.is_final or op.type is not OperationType.ReplicateAndRegister:
        return None
    index = request.index_of(op)
    if index + 1 >= len(request.operations):
        return None
    after = request.operations[index + 1]
    if after.type is not OperationType.RemoveReplica:
        return None
    if not all(f.status is FileStatus.Waiting for f in (*op.files, *after.files)):
        return None
    return op, after


def run_pairs(
    env: Environment,
    pairs: list[Pair],
    policy: ExecutorPolicy,
    rng: random.Random,
    *,
    stopping: Callable[[], bool],
    release: Release,
) -> list[Pair]:
    """
    Run one round over ``pairs`` (see the module docstring) and record it; return the pairs recorded.

    A pair whose request was canceled or lost its lease is not in the result: after the copies, nothing
    more is done for it. ``release`` releases a request inside the recording transaction. ``stopping``
    is asked before the catalog removals: a stop finishes the replications (the current operations)
    and leaves the removals for later.
    """
    run = _Round(env, policy, rng)
    _copy_files(run, pairs)
    # As the one-at-a-time path finds out when it records the replication: a request canceled, or taken
    # over after its lease expired, gets nothing more from this executor.
    pairs = _still_held(env, pairs)
    try:
        with _catalog_batches(env):
            for pair in pairs:
                _register_files(run, pair)
            if not stopping():
                for pair in pairs:
                    _unregister_files(run, pair)
    except FailoverError as err:
        # The round's catalog changes were not committed: nothing of it is recorded, every request
        # continues one operation at a time (its copies are found there).
        log.warning("catalog commit of a batch failed, running its requests one at a time: %s", err)
        for pair in pairs:
            pair.outcomes.clear()
            pair.handed_back = True
        return pairs
    crash_point("after-commit:catalog:batch")
    for pair in pairs:
        _remove_objects(run, pair)
    return _record(env, pairs, release, stopping)


def _still_held(env: Environment, pairs: list[Pair]) -> list[Pair]:
    owners = lease_owners(env.store.conn, [pair.lease.request_id for pair in pairs])
    held = []
    for pair in pairs:
        if owners.get(pair.lease.request_id) == pair.lease.owner:
            held.append(pair)
        else:
            log.warning("lost the lease of request %d", pair.lease.request_id)
    return held


@contextmanager
def _catalog_batches(env: Environment) -> Iterator[None]:
    with ExitStack() as stack:
        for catalog in env.catalogs:
            stack.enter_context(catalog.batch())
        yield
        crash_point("before-commit:catalog:batch")


@dataclass(frozen=True)
class _Round:
    """What every step of a round needs."""

    env: Environment
    policy: ExecutorPolicy
    rng: random.Random

    def step(
        self, pair: Pair, op: Operation, file: File, step: Callable[[Environment, Operation, File], T]
    ) -> tuple[bool, T | None]:
        """Run one step of a file's try: (True, its result), or (False, None) with the failure recorded."""
        try:
            return True, step(self.env, op, file)
        except FailoverError as err:
            pair.outcomes.append((op, self.failure(op, file, err)))
            return False, None

    def needs_work(self, pair: Pair, op: Operation, file: File) -> bool:
        """
        The handler's "already there?" check: a file whose effect is there is Done now (False), as is a
        file whose check failed (its failure recorded); True when the handler has work to do.
        """
        ok, already = self.step(pair, op, file, HANDLERS[op.type].done)
        if ok and already:
            pair.outcomes.append((op, success_outcome(file)))
        return ok and not already

    def failure(self, op: Operation, file: File, err: FailoverError) -> FileOutcome:
        """The outcome of a file's try that failed with ``err``."""
        return failure_outcome(self.env, op, file, err, self.policy, self.rng)


def _copy_files(run: _Round, pairs: list[Pair]) -> None:
    """
    Phase 1: check each file of each replication, then make the missing copies, grouped by source and
    target SE (:meth:`~failover.storage.StorageElement.copy_many_to`); a file whose copies are all right
    joins its pair's ``copied``.
    """
    planned: list[tuple[Pair, File, list[CopyPlan]]] = []
    for pair in pairs:
        op = pair.replicate
        for file in op.files:
            # The plan checks the targets as the handler's "already there?" check does, once.
            ok, plans = run.step(pair, op, file, plan_copies)
            if not ok:
                continue
            if not plans:
                ok, registered = run.step(pair, op, file, replicas_registered)
                if not ok:
                    continue
                if registered:
                    pair.outcomes.append((op, success_outcome(file)))
                    continue
            planned.append((pair, file, plans or []))
    groups: dict[tuple[str, str, ChecksumType], list[tuple[Pair, CopyPlan]]] = {}
    for pair, _, plans in planned:
        for plan in plans:
            groups.setdefault((plan.source.name, plan.target.name, plan.kind), []).append((pair, plan))
    failed: set[int] = set()
    for members in groups.values():
        first = members[0][1]
        lfns = [plan.file.lfn for _, plan in members]
        for _ in lfns:
            crash_point("before-copy")
        puts = first.source.copy_many_to(first.target, lfns, checksum_types=(first.kind,))
        for _ in lfns:
            crash_point("after-copy")
        for (pair, plan), put in zip(members, puts, strict=True):
            if id(plan.file) in failed:
                continue
            if isinstance(put, FailoverError):
                pair.outcomes.append((pair.replicate, run.failure(pair.replicate, plan.file, put)))
                failed.add(id(plan.file))
            else:
                ok, right = run.step(pair, pair.replicate, plan.file, partial(_right_or_again, plan, put))
                if not ok:
                    failed.add(id(plan.file))
                elif right:
                    pair.placed.setdefault(plan.file.lfn, {})[plan.target.name] = put
    for pair, file, _ in planned:
        if id(file) not in failed:
            pair.copied.append(file)


def _right_or_again(plan: CopyPlan, put: PutResult, env: Environment, op: Operation, file: File) -> bool:
    """
    Whether the copy is right; a copy with the wrong bytes is removed, and the file copied the
    one-at-a-time way (next sources).
    """
    if copy_is_right(plan, put):
        return True
    place_copies(env, op, file)
    return False


def _register_files(run: _Round, pair: Pair) -> None:
    op = pair.replicate
    for file in pair.copied:
        ok, followups = run.step(pair, op, file, partial(register_copies, placed=pair.placed.get(file.lfn)))
        if ok:
            pair.outcomes.append((op, success_outcome(file, followups)))
            pair.handed_back = pair.handed_back or bool(followups)


def _replication_done(pair: Pair) -> bool:
    """Every file of the replication copied, verified and registered (a follow-up hands the pair back)."""
    done = {id(o.file) for op, o in pair.outcomes if op is pair.replicate and o.status is FileStatus.Done}
    return not pair.handed_back and all(id(file) in done for file in pair.replicate.files)


def _unregister_files(run: _Round, pair: Pair) -> None:
    if not _replication_done(pair):
        return
    op = pair.remove
    for file in op.files:
        fresh = pair.placed.get(file.lfn)
        # With a copy made just now, the "already removed?" check is skipped: removing again changes
        # nothing, and that copy is the verified one that remains (checked from its put, not read back).
        if fresh is None and not run.needs_work(pair, op, file):
            continue
        if run.step(pair, op, file, partial(unregister_replicas, fresh=fresh))[0]:
            pair.unregistered.append(file)


def _remove_objects(run: _Round, pair: Pair) -> None:
    op = pair.remove
    for file in pair.unregistered:
        if run.step(pair, op, file, remove_objects)[0]:
            pair.outcomes.append((op, success_outcome(file)))


def _record(
    env: Environment, pairs: list[Pair], release: Release, stopping: Callable[[], bool]
) -> list[Pair]:
    """
    Record every pair in one transaction, each in a savepoint. A request is released when it ended, must
    wait or the executor stops; one whose next operations are another pair keeps its lease for the next
    round; any other is handed back. Either the release or, for a request kept, the lease renewal checks
    the lease is still held: one write per request, and a lost lease undoes the request's savepoint.
    """
    recorded: list[Pair] = []
    with env.store.transaction():
        # The round's uploads, loaded at once; a request's transitions fire from there (compare-and-swap
        # on the version). An upload a recorded request moved is loaded again by any later request that
        # names it (the release of a failed request moves its uploads too).
        uploads = env.uploads.load_many(
            [op.machine_id for pair in pairs for op in (pair.replicate, pair.remove) if op.machine_id]
        )
        for pair in pairs:
            fired = {
                mid: uploads[mid] for op in (pair.replicate, pair.remove) if (mid := op.machine_id) in uploads
            }
            try:
                with env.store.transaction() as conn:  # a savepoint: each request all or nothing
                    retry_at = _record_pair(env, pair, fired)
                    done = pair.request.status.is_final or retry_at is not None or stopping()
                    if done and not pair.handed_back:
                        if not release(pair.lease, pair.request, retry_at):
                            lease = pair.lease
                            raise LeaseLost(f"request {lease.request_id}: lease of {lease.owner} lost")
                        pair.released = True
                    else:
                        pair.lease.renew(conn, env.clock())
                        pair.handed_back = pair.handed_back or pair.following is None
            except LeaseLost:
                log.warning("lost the lease of request %d", pair.lease.request_id)
                continue
            for machine_id in fired:
                uploads.pop(machine_id, None)
            recorded.append(pair)
        crash_point("before-commit:executor:batch")
    crash_point("after-commit:executor:batch")
    return recorded


def _record_pair(env: Environment, pair: Pair, fired: dict[str, MachineRow]) -> datetime | None:
    """
    Record a pair's outcomes in the order of its operations; return the earliest retry time, if any.
    ``fired`` holds its uploads' rows as stored, and is kept up to date.
    """
    order = {id(pair.replicate): 0, id(pair.remove): 1}
    retries = []
    ordered = sorted(pair.outcomes, key=lambda item: order[id(item[0])])
    for op, outcome in ordered:
        # The lease is checked once, by _record, in the same savepoint.
        record_outcome(env, pair.lease, op, outcome, renew=False, fired=fired)
        outcome.apply(op)
        if outcome.retry_at is not None:
            retries.append(outcome.retry_at)
    # Only this pair's operations changed since the request's last refresh (a follow-up operation
    # inserted resets the request's hint, and the refresh then looks at every operation).
    current = refresh_statuses(pair.request, changed=(pair.replicate, pair.remove))
    pair.following = current_pair(pair.request, current)
    return min(retries) if retries else None
