"""
The executor's fast path for failover requests: many requests per catalog commit and per store commit.

A failover request is pairs of operations: ``ReplicateAndRegister`` to the target, then ``RemoveReplica``
of the temporary replica. Run one request at a time, each pair costs two catalog commits and two store
commits. :func:`run_pairs` takes a batch of leased requests through their pairs in rounds; in each round,
each request brings its current pair and the pairs right after it (up to ``policy.batch_size``, on files
no other of them names: what ``failover upload`` of many files leaves is one request of many pairs):

1. copies: each file of the replications is checked (is its effect already there?) and copied where
   needed, in chunks of about ``policy.round_bytes``; between chunks, the round's leases are renewed once
   a third of their time has passed, so that no other executor takes the requests while big files copy;
2. catalog, one transaction per catalog for the round: per request, pair after pair, each copy registered,
   then, once the pair's replication is complete, each file of the removal checked and its catalog
   entries removed (the check sees the registrations just made, and still requires a verified copy
   elsewhere); a request's next pair is reached only when this one got through;
3. storage: the temporary replicas of the pairs reached removed, only now that the catalog commit no
   longer names them; the copies made for pairs not reached removed again, under a lease renewed just
   before (a request another executor took meanwhile may have registered them: they are left);
4. store, one transaction for the round: per request, in its own savepoint, the pairs' outcomes recorded
   in order with the upload transitions they cause, up to the first pair not wholly done; the request
   released when it ends or must wait.

Per request, the catalog and removal effects keep the one-at-a-time order: a copy is registered only once
it is verified and every pair before it is through, and a replica is removed after its catalog entry and
only while a verified, registered copy remains. The copies run ahead of that order: a copy not yet
registered is what a crash between a copy and its registration leaves, and the pair's own run finds it.
So does a temporary replica whose removal fails after the catalog commit: the later pairs of its request
went through in that round, and are recorded when their turn comes, found done. Apart from the copies made
ahead, a crash anywhere leaves what a crash of the one-at-a-time path leaves at some point of it: the
leases expire and the idempotent handlers find what is done. Whatever leaves the happy path (a follow-up
operation to run, a request of another shape, a catalog commit that fails) is handed back to
:meth:`Executor.process`.

A request canceled or taken over while its copies ran gets nothing more (its lease is checked before the
catalog phase). A stop (SIGTERM) lets the round finish the chunk of copies at hand (starting no other) and
register what it copied of each request's first pair, then releases every request of the round; a file
not copied is left untried for the next run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
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
    OperationStatus,
    OperationType,
    Request,
    current_operation,
    refresh_statuses,
)
from failover.storage import PutResult
from fsm.crashpoints import crash_point
from persistence.leases import lease_owners
from persistence.rows import MachineRow

__all__ = ["Pair", "RequestPairs", "current_pairs", "round_pairs", "run_pairs"]

log = logging.getLogger("failover.executor")
T = TypeVar("T")

#: Releases a request (with its retry time, if any) inside the recording transaction; False (nothing
#: written) when the lease was no longer held.
Release = Callable[[Lease, Request, "datetime | None"], bool]


@dataclass
class Pair:
    """One replication and the removal after it, and what this round made of their files."""

    replicate: Operation
    remove: Operation
    outcomes: list[tuple[Operation, FileOutcome]] = field(default_factory=list)
    copied: list[File] = field(default_factory=list)
    #: The copies this round made and verified, by LFN then target SE.
    placed: dict[str, dict[str, PutResult]] = field(default_factory=dict)
    unregistered: list[File] = field(default_factory=list)
    #: A registration left a follow-up operation to run: the request continues one operation at a time.
    followups: bool = False
    #: The catalog phase came to this pair: every pair before it in its request got through.
    reached: bool = False


@dataclass
class RequestPairs:
    """One leased request's part of a round: its pairs, in the request's order, and how the round left it."""

    lease: Lease
    request: Request
    pairs: list[Pair]
    #: The round went off the happy path for this request: it continues one operation at a time.
    handed_back: bool = False
    #: The request was released at the end of the round (ended, must wait, or the executor stops).
    released: bool = False
    #: The request's next pairs, once this round is recorded (none: see ``handed_back``).
    following: list[tuple[Operation, Operation]] = field(default_factory=list)

    @classmethod
    def of(cls, lease: Lease, request: Request, pairs: list[tuple[Operation, Operation]]) -> RequestPairs:
        """A request's part of the next round, from its pairs as :func:`current_pairs` gives them."""
        return cls(lease, request, [Pair(replicate, remove) for replicate, remove in pairs])


def current_pairs(
    request: Request, current: Operation | None = None, limit: int = 1, max_bytes: int | None = None
) -> list[tuple[Operation, Operation]]:
    """
    The request's current operation and the next one when they are a replication then a removal, and up
    to ``limit`` such pairs in all from there on, each right after the one before, with every file
    Waiting and no LFN named by two of them (empty: the request does not start with such a pair).

    Args:
        current: the current operation, as :func:`refresh_statuses` has just returned it (default:
            found by looking at every operation).
        limit: the most pairs returned.
        max_bytes: a pair after the first is returned only while the pairs' files to replicate total
            at most this (None: no bound), so that one round's copies of big files stay short beside
            the lease, which is renewed when the round is recorded.
    """
    op = current if current is not None else current_operation(request)
    if op is None or request.status.is_final:
        return []
    operations = request.operations
    index = request.index_of(op)
    pairs: list[tuple[Operation, Operation]] = []
    lfns: set[str] = set()
    size = 0
    while len(pairs) < limit and index + 1 < len(operations):
        replicate, remove = operations[index], operations[index + 1]
        if replicate.type is not OperationType.ReplicateAndRegister:
            break
        if remove.type is not OperationType.RemoveReplica:
            break
        files = (*replicate.files, *remove.files)
        named = {f.lfn for f in files}
        if not all(f.status is FileStatus.Waiting for f in files) or not named.isdisjoint(lfns):
            break
        size += sum(f.size or 0 for f in replicate.files)
        if pairs and max_bytes is not None and size > max_bytes:
            break
        lfns |= named
        pairs.append((replicate, remove))
        index += 2
    return pairs


def round_pairs(
    request: Request, current: Operation | None, policy: ExecutorPolicy
) -> list[tuple[Operation, Operation]]:
    """The request's pairs that join a round, as ``policy`` bounds one (see :func:`current_pairs`)."""
    if policy.batch_size <= 1:
        return []
    return current_pairs(request, current, policy.batch_size, policy.round_bytes)


def run_pairs(
    env: Environment,
    requests: list[RequestPairs],
    policy: ExecutorPolicy,
    rng: random.Random,
    *,
    stopping: Callable[[], bool],
    release: Release,
) -> list[RequestPairs]:
    """
    Run one round over ``requests`` (see the module docstring) and record it; return the requests
    recorded.

    A request canceled or whose lease was lost is not in the result: after the copies, nothing more is
    done for it. ``release`` releases a request inside the recording transaction. ``stopping`` is asked
    before each chunk of copies and before each request's removals: a stop finishes the copies at hand
    and their registrations, and leaves the rest for later.
    """
    run = _Round(env, policy, rng, [request.lease for request in requests], env.clock())
    _copy_files(run, [pair for request in requests for pair in request.pairs], stopping)
    # As the one-at-a-time path finds out when it records the replication: a request canceled, or taken
    # over after its lease expired, gets nothing more from this executor.
    requests = _still_held(env, requests)
    try:
        with _catalog_batches(env):
            for request in requests:
                _catalog_changes(run, request, stopping)
    except FailoverError as err:
        # The round's catalog changes were not committed: nothing of it is recorded, every request
        # continues one operation at a time (its copies are found there).
        log.warning("catalog commit of a batch failed, running its requests one at a time: %s", err)
        for request in requests:
            for pair in request.pairs:
                pair.outcomes.clear()
            request.handed_back = True
        return requests
    crash_point("after-commit:catalog:batch")
    for request in requests:
        for pair in request.pairs:
            if pair.reached:
                _remove_objects(run, pair)
        ahead = [pair for pair in request.pairs if not pair.reached and pair.placed]
        if ahead and _renewed(env, request.lease):
            for pair in ahead:
                _discard_copies(env, pair)
    return _record(env, requests, release, stopping, policy)


def _renewed(env: Environment, lease: Lease) -> bool:
    """
    Renew ``lease`` now; False when it was lost: the request passed to another executor, or was canceled
    (its uploads may be retried elsewhere), and whoever runs those pairs now could have registered a
    copy made ahead. Renewed, the request cannot pass to another executor for a whole lease period,
    ample for removing the copies.
    """
    try:
        with env.store.transaction() as conn:
            lease.renew(conn, env.clock())
    except LeaseLost:
        log.warning("lost the lease of request %d: the copies made ahead are left", lease.request_id)
        return False
    return True


def _still_held(env: Environment, requests: list[RequestPairs]) -> list[RequestPairs]:
    owners = lease_owners(env.store.conn, [request.lease.request_id for request in requests])
    held = []
    for request in requests:
        if owners.get(request.lease.request_id) == request.lease.owner:
            held.append(request)
        else:
            log.warning("lost the lease of request %d", request.lease.request_id)
    return held


@contextmanager
def _catalog_batches(env: Environment) -> Iterator[None]:
    with ExitStack() as stack:
        for catalog in env.catalogs:
            stack.enter_context(catalog.batch())
        yield
        crash_point("before-commit:catalog:batch")


@dataclass
class _Round:
    """What every step of a round needs, and the round's leases, kept while its copies run."""

    env: Environment
    policy: ExecutorPolicy
    rng: random.Random
    leases: list[Lease]
    #: When the leases were last taken or renewed, as far as this round knows: when it started.
    renewed_at: datetime

    def keep_leases(self) -> None:
        """
        Renew the round's leases once a third of their time has passed since they were last renewed, so
        that another executor does not take the requests while their copies run (many big files). A
        lease already lost stays lost: the lease check before the catalog phase drops its request.
        """
        now = self.env.clock()
        if not self.leases or (now - self.renewed_at).total_seconds() < self.leases[0].seconds / 3:
            return
        with self.env.store.transaction() as conn:
            for lease in self.leases:
                with suppress(LeaseLost):
                    lease.renew(conn, now)
        self.renewed_at = now

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


def _copy_files(run: _Round, pairs: list[Pair], stopping: Callable[[], bool]) -> None:
    """
    Phase 1: check each file of each replication, then make the missing copies, grouped by source and
    target SE (:meth:`~failover.storage.StorageElement.copy_many_to`); a file whose copies are all right
    joins its pair's ``copied``. Once the executor is stopping, no further chunk of copies is started:
    the files it holds are left for the next run, untried.
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
    skipped: set[int] = set()
    for members in groups.values():
        # In chunks of about round_bytes (a bigger file alone), the leases kept between chunks.
        for chunk in _by_bytes(members, run.policy.round_bytes):
            if stopping():
                skipped |= {id(plan.file) for _, plan in chunk}
                continue
            _copy_chunk(run, chunk, failed)
            run.keep_leases()
    for pair, file, _ in planned:
        if id(file) not in failed and id(file) not in skipped:
            pair.copied.append(file)


def _copy_chunk(run: _Round, members: list[tuple[Pair, CopyPlan]], failed: set[int]) -> None:
    """Make one chunk of a group's copies (one source, target and checksum type) and check each."""
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


def _by_bytes(members: list[tuple[Pair, CopyPlan]], max_bytes: int) -> Iterator[list[tuple[Pair, CopyPlan]]]:
    """``members`` in runs whose files total at most ``max_bytes`` (a bigger file in a run alone)."""
    chunk: list[tuple[Pair, CopyPlan]] = []
    size = 0
    for member in members:
        size += member[1].file.size or 0
        if chunk and size > max_bytes:
            yield chunk
            chunk, size = [], member[1].file.size or 0
        chunk.append(member)
    if chunk:
        yield chunk


def _right_or_again(plan: CopyPlan, put: PutResult, env: Environment, op: Operation, file: File) -> bool:
    """
    Whether the copy is right; a copy with the wrong bytes is removed, and the file copied the
    one-at-a-time way (next sources).
    """
    if copy_is_right(plan, put):
        return True
    place_copies(env, op, file)
    return False


def _catalog_changes(run: _Round, request: RequestPairs, stopping: Callable[[], bool]) -> None:
    """
    Phase 2 for one request: pair after pair, register the copies, then remove the catalog entries of
    the replicas the removal names; the next pair only once this one got through (its replication
    registered, its removal's entries gone), and no removal once the executor is stopping.
    """
    for pair in request.pairs:
        pair.reached = True
        _register_files(run, pair)
        if stopping():
            return
        _unregister_files(run, pair)
        if not _through_catalog(pair):
            return


def _register_files(run: _Round, pair: Pair) -> None:
    op = pair.replicate
    for file in pair.copied:
        ok, followups = run.step(pair, op, file, partial(register_copies, placed=pair.placed.get(file.lfn)))
        if ok:
            pair.outcomes.append((op, success_outcome(file, followups)))
            pair.followups = pair.followups or bool(followups)


def _done(pair: Pair, op: Operation) -> set[int]:
    """The files of ``op`` this round found or made Done (by ``id``)."""
    return {id(o.file) for of, o in pair.outcomes if of is op and o.status is FileStatus.Done}


def _replication_done(pair: Pair) -> bool:
    """Every file of the replication copied, verified and registered (a follow-up hands the pair back)."""
    done = _done(pair, pair.replicate)
    return not pair.followups and all(id(file) in done for file in pair.replicate.files)


def _through_catalog(pair: Pair) -> bool:
    """The replication done, and every file of the removal unregistered now or found removed already."""
    settled = _done(pair, pair.remove) | {id(file) for file in pair.unregistered}
    return _replication_done(pair) and all(id(file) in settled for file in pair.remove.files)


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


def _discard_copies(env: Environment, pair: Pair) -> None:
    """
    Remove the copies this round made for a pair the catalog phase did not come to: its request stopped
    before it (a failure, a follow-up, a stop), and a request that then fails for good must not leave an
    unregistered copy behind. The temporary replica, the only registered one, is untouched; a copy that
    cannot be removed now is found by the pair's own run.
    """
    for lfn, copies in pair.placed.items():
        for name in copies:
            crash_point("before-discard-copy")
            try:
                env.se(name).remove(lfn)
            except FailoverError as err:
                log.warning("could not remove the copy of %s made ahead at %s: %s", lfn, name, err)


def _record(
    env: Environment,
    requests: list[RequestPairs],
    release: Release,
    stopping: Callable[[], bool],
    policy: ExecutorPolicy,
) -> list[RequestPairs]:
    """
    Record every request in one transaction, each in a savepoint. A request is released when it ended,
    must wait or the executor stops; one whose next operations are more pairs keeps its lease for the
    next round (as many as ``policy`` lets a round take); any other is handed back. Either the release
    or, for a request kept, the lease renewal checks the lease is still held: one write per request, and
    a lost lease undoes the request's savepoint.
    """
    recorded: list[RequestPairs] = []
    with env.store.transaction():
        # The round's uploads, loaded at once; a request's transitions fire from there (compare-and-swap
        # on the version). An upload a recorded request moved is loaded again by any later request that
        # names it (the release of a failed request moves its uploads too).
        uploads = env.uploads.load_many([mid for request in requests for mid in _machine_ids(request)])
        for request in requests:
            fired = {mid: uploads[mid] for mid in _machine_ids(request) if mid in uploads}
            try:
                with env.store.transaction() as conn:  # a savepoint: each request all or nothing
                    retry_at = _record_pairs(env, request, fired, policy)
                    done = request.request.status.is_final or retry_at is not None or stopping()
                    if done and not request.handed_back:
                        if not release(request.lease, request.request, retry_at):
                            lease = request.lease
                            raise LeaseLost(f"request {lease.request_id}: lease of {lease.owner} lost")
                        request.released = True
                    else:
                        request.lease.renew(conn, env.clock())
                        request.handed_back = request.handed_back or not request.following
            except LeaseLost:
                log.warning("lost the lease of request %d", request.lease.request_id)
                continue
            for machine_id in fired:
                uploads.pop(machine_id, None)
            recorded.append(request)
        crash_point("before-commit:executor:batch")
    crash_point("after-commit:executor:batch")
    return recorded


def _machine_ids(request: RequestPairs) -> list[str]:
    """The uploads the pairs the catalog phase came to move."""
    return [
        op.machine_id
        for pair in request.pairs
        if pair.reached
        for op in (pair.replicate, pair.remove)
        if op.machine_id
    ]


def _record_pairs(
    env: Environment, request: RequestPairs, fired: dict[str, MachineRow], policy: ExecutorPolicy
) -> datetime | None:
    """
    Record a request's pairs in order, up to the first that is not wholly done (its files retried,
    failed, handed back or left for later): the pairs after it are its request's later operations, and
    run when their turn comes (whatever this round did for them is found then). Return the earliest
    retry time, if any; set the request's ``following`` pairs and whether it is handed back.
    """
    retries: list[datetime] = []
    current = None
    for pair in request.pairs:
        if not pair.reached:
            break
        current, retry_at = _record_pair(env, request, pair, fired)
        if retry_at is not None:
            retries.append(retry_at)
        request.handed_back = request.handed_back or pair.followups
        if not _wholly_done(pair):
            break
    request.following = round_pairs(request.request, current, policy) if current is not None else []
    return min(retries) if retries else None


def _wholly_done(pair: Pair) -> bool:
    return not pair.followups and all(
        op.status is OperationStatus.Done for op in (pair.replicate, pair.remove)
    )


def _record_pair(
    env: Environment, request: RequestPairs, pair: Pair, fired: dict[str, MachineRow]
) -> tuple[Operation | None, datetime | None]:
    """
    Record a pair's outcomes in the order of its operations; return the request's current operation
    afterwards and the pair's earliest retry time, if any. ``fired`` holds the uploads' rows as stored,
    and is kept up to date.
    """
    order = {id(pair.replicate): 0, id(pair.remove): 1}
    retries = []
    ordered = sorted(pair.outcomes, key=lambda item: order[id(item[0])])
    for op, outcome in ordered:
        # The lease is checked once, by _record, in the same savepoint.
        record_outcome(env, request.lease, op, outcome, renew=False, fired=fired)
        outcome.apply(op)
        if outcome.retry_at is not None:
            retries.append(outcome.retry_at)
    # Only this pair's operations changed since the request's last refresh (a follow-up operation
    # inserted resets the request's hint, and the refresh then looks at every operation).
    current = refresh_statuses(request.request, changed=(pair.replicate, pair.remove))
    return current, (min(retries) if retries else None)
