"""
Running one file of one operation: the only place that does "already there? → act → record".

:func:`run_file` checks whether the handler's effect is already there, acts only if not, and returns
the outcome; :func:`record_outcome` stores it in one transaction together with the follow-up
operations, the lease renewal and the upload machine transitions it causes. Acting before recording
is safe because every handler is idempotent: a crash between the two repeats the check, finds the
effect, and records it then.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from failover.environment import Environment
from failover.errors import FailoverError, TransientError
from failover.executor.handlers import HANDLERS
from failover.executor.leases import Lease
from failover.executor.policy import ExecutorPolicy
from failover.executor.upload_hooks import on_operation_done
from failover.request import File, FileStatus, Operation, OperationStatus, operation_status_from_files
from fsm.clock import format_time
from fsm.crashpoints import crash_point
from persistence.requests import NewOperation, insert_operation_after, update_file, update_operation
from persistence.rows import MachineRow

__all__ = [
    "MAX_ATTEMPTS_SUFFIX",
    "FileOutcome",
    "failure_outcome",
    "record_outcome",
    "run_file",
    "success_outcome",
]

log = logging.getLogger("failover.executor")

#: DIRAC's words for a file that used its last attempt.
MAX_ATTEMPTS_SUFFIX = "(Max attempts limit reached)"


@dataclass(frozen=True)
class FileOutcome:
    """What one try of one file came to."""

    file: File
    status: FileStatus
    attempt: int
    error: str
    errors: list[str]
    retry_at: datetime | None = None
    followups: list[NewOperation] = field(default_factory=list)

    def apply(self, op: Operation) -> None:
        """Mirror the outcome in the in-memory file and its operation ``op`` (as it is recorded)."""
        self.file.status, self.file.attempt, self.file.error, self.file.errors = (
            self.status,
            self.attempt,
            self.error,
            self.errors,
        )
        op.error = self.error


def run_file(
    env: Environment, op: Operation, file: File, policy: ExecutorPolicy, rng: random.Random
) -> FileOutcome:
    """
    Try one Waiting file of an operation once; never raises for the handler's failures.

    Transient failures leave the file Waiting with a retry time (Failed once ``max_attempts`` is
    reached); any other failure fails it at once. Every attempt's error is kept.
    """
    handler = HANDLERS[op.type]
    try:
        followups = [] if handler.done(env, op, file) else handler.act(env, op, file)
    except FailoverError as err:
        return failure_outcome(env, op, file, err, policy, rng)
    return success_outcome(file, followups)


def success_outcome(file: File, followups: list[NewOperation] | None = None) -> FileOutcome:
    """The outcome of a try whose effect is there now."""
    return FileOutcome(
        file, FileStatus.Done, file.attempt + 1, "", list(file.errors), followups=followups or []
    )


def failure_outcome(
    env: Environment,
    op: Operation,
    file: File,
    err: FailoverError,
    policy: ExecutorPolicy,
    rng: random.Random,
) -> FileOutcome:
    """
    The outcome of a try that failed with ``err``: Waiting with a retry time when it is transient (Failed
    once ``max_attempts`` is reached), Failed at once otherwise. Every attempt's error is kept.
    """
    attempt = file.attempt + 1
    errors = [*file.errors, f"{type(err).__name__}: {err}"]
    if not isinstance(err, TransientError):
        log.warning("%s of %s failed for good: %s", op.type, file.lfn, err)
        return FileOutcome(file, FileStatus.Failed, attempt, errors[-1], errors)
    if attempt >= policy.max_attempts:
        log.warning("%s of %s failed for good after %d attempts: %s", op.type, file.lfn, attempt, err)
        return FileOutcome(file, FileStatus.Failed, attempt, f"{errors[-1]} {MAX_ATTEMPTS_SUFFIX}", errors)
    retry_at = env.clock() + timedelta(seconds=policy.delay(attempt, rng))
    log.info(
        "%s of %s failed (attempt %d of %d), tried again after %s: %s",
        op.type,
        file.lfn,
        attempt,
        policy.max_attempts,
        retry_at.isoformat(timespec="seconds"),
        err,
    )
    return FileOutcome(file, FileStatus.Waiting, attempt, errors[-1], errors, retry_at=retry_at)


def record_outcome(
    env: Environment,
    lease: Lease,
    op: Operation,
    outcome: FileOutcome,
    *,
    then: Callable[[sqlite3.Connection], object] | None = None,
    renew: bool = True,
    fired: dict[str, MachineRow] | None = None,
) -> None:
    """
    Store one file's outcome, all in one transaction: the file, its operation's status, follow-up
    operations, the lease renewal, the upload transitions the operation's completion causes, and
    whatever ``then`` writes last (the executor releases a finished request there). ``renew=False``
    skips the lease renewal, for a caller that checks the lease itself in the same transaction (the
    batch executor releases or renews each request once, after its records). ``fired``
    carries the upload rows stored earlier in the caller's transaction (see
    :func:`~failover.executor.upload_hooks.on_operation_done`).

    Raises:
        LeaseLost: another executor holds the request now; nothing is stored.
    """
    at = env.clock()
    outermost = not env.store.conn.in_transaction
    with env.store.transaction() as conn:
        if renew:
            lease.renew(conn, at)
        assert outcome.file.file_id is not None and op.operation_id is not None
        update_file(
            conn,
            outcome.file.file_id,
            status=outcome.status.value,
            attempt=outcome.attempt,
            error=outcome.error,
            errors=outcome.errors,
        )
        statuses = [outcome.status if f is outcome.file else f.status for f in op.files]
        status = operation_status_from_files(statuses) or op.status
        update_operation(conn, op.operation_id, status=status.value, error=outcome.error, at=format_time(at))
        for followup in reversed(outcome.followups):
            insert_operation_after(conn, lease.request_id, op.order, followup, format_time(at))
        if status is OperationStatus.Done:
            on_operation_done(env, op, fired)
        crash_point(f"before-record:{op.type}")
        if then is not None:
            then(conn)
    if outermost:  # inside a caller's transaction nothing is committed here
        crash_point(f"after-record:{op.type}")
