"""
SPEC.md §5 attempts and delays: every try counts, transient failures come back after an exponential,
jittered, capped delay (NotBefore), the last attempt fails the file with DIRAC's suffix, non-retryable
errors fail at once, and every attempt's error is kept. Time is frozen: nothing really waits.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory, TickingDateTimeFactory

from failover.environment import Environment
from failover.executor import MAX_ATTEMPTS_SUFFIX, Executor, ExecutorPolicy
from failover.request import File, FileStatus, RequestStatus, refresh_statuses
from failover.testing import Fault, FaultInjector

#: What ``freeze_time(...)`` yields.
Frozen = FrozenDateTimeFactory | StepTickTimeFactory | TickingDateTimeFactory
LFN = "/vo/user/a/alice/run42/out.root"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
UNREACHABLE = "StorageUnavailable: SE-A: storage element unreachable"

FailedOver = Callable[..., int]


def _file(env: Environment, request_id: int, index: int = 0) -> File:
    (file,) = env.requests.load(request_id).operations[index].files
    return file


def _not_before(env: Environment, request_id: int) -> datetime | None:
    return env.requests.load(request_id).not_before


def _lease(env: Environment, request_id: int) -> tuple[str, str | None, str | None]:
    row: tuple[str, str | None, str | None] = env.store.conn.execute(
        "SELECT status, lease_owner, lease_expires FROM requests WHERE id = ?", (request_id,)
    ).fetchone()
    return row


def _retry_delays(
    env: Environment, frozen: Frozen, executor: Executor, request_id: int, tries: int
) -> list[float]:
    """Run ``tries`` attempts, each at its NotBefore; return the delay chosen after each."""
    delays: list[float] = []
    for _ in range(tries):
        now = datetime.now(UTC)
        assert executor.run_once() == 1
        not_before = _not_before(env, request_id)
        assert not_before is not None
        delays.append((not_before - now).total_seconds())
        frozen.move_to(not_before)
    return delays


def test_transient_failure_puts_the_request_back_until_not_before(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    policy = ExecutorPolicy(backoff_base=60.0, jitter=0.0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=1)
        executor = Executor(client_env, policy, name="retrier")

        assert executor.run_once() == 1

        waiting = _file(client_env, request_id)
        assert (waiting.status, waiting.attempt, waiting.error, waiting.errors) == (
            FileStatus.Waiting,
            1,
            UNREACHABLE,
            [UNREACHABLE],
        )
        assert _not_before(client_env, request_id) == T0 + timedelta(seconds=60)
        assert _lease(client_env, request_id) == ("Waiting", None, None)

        frozen.move_to(T0 + timedelta(seconds=59.999))
        assert executor.run_once() == 0
        frozen.move_to(T0 + timedelta(seconds=60))
        assert executor.run_once() == 1

    done = _file(client_env, request_id)
    assert (done.status, done.attempt, done.error) == (FileStatus.Done, 2, "")
    assert client_env.requests.load(request_id).status is RequestStatus.Done


def test_backoff_grows_exponentially_up_to_the_cap(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    policy = ExecutorPolicy(backoff_base=10.0, backoff_factor=3.0, backoff_cap=100.0, jitter=0.0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)

        delays = _retry_delays(client_env, frozen, Executor(client_env, policy), request_id, 5)

    assert delays == [10.0, 30.0, 90.0, 100.0, 100.0]
    assert _file(client_env, request_id).attempt == 5


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_jitter_stays_within_its_fraction_and_under_the_cap(seed: int) -> None:
    policy = ExecutorPolicy(backoff_base=100.0, backoff_factor=2.0, backoff_cap=1000.0, jitter=0.25)
    rng = random.Random(seed)
    for attempt in range(1, 9):
        raw = min(1000.0, 100.0 * 2.0 ** (attempt - 1))
        draws = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(raw * 0.75 <= delay <= min(1000.0, raw * 1.25) for delay in draws), attempt
        assert max(draws) - min(draws) > raw * 0.2, "jitter should spread the retries"


def test_jitter_is_reproducible_with_a_seed(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """Two executors seeded alike pick the same jittered delay; another seed picks another."""
    policy = ExecutorPolicy(backoff_base=60.0, jitter=0.5)
    injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
    offsets: list[float] = []
    with freeze_time(T0):
        for seed in (7, 7, 8):
            request_id = failed_over(f"{LFN}.{len(offsets)}")
            assert Executor(client_env, policy, seed=seed).run_once() == 1
            not_before = _not_before(client_env, request_id)
            assert not_before is not None
            offsets.append((not_before - T0).total_seconds())

    assert all(30.0 <= offset <= 90.0 for offset in offsets)
    assert offsets[0] == offsets[1] != offsets[2]


def test_last_attempt_fails_the_file_with_its_last_error_and_the_suffix(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    policy = ExecutorPolicy(max_attempts=3, backoff_base=5.0, jitter=0.0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
        executor = Executor(client_env, policy)
        _retry_delays(client_env, frozen, executor, request_id, 2)

        assert executor.run_once() == 1

    failed = _file(client_env, request_id)
    assert (failed.status, failed.attempt) == (FileStatus.Failed, 3)
    assert failed.error == f"{UNREACHABLE} (Max attempts limit reached)"
    assert MAX_ATTEMPTS_SUFFIX == "(Max attempts limit reached)"
    assert failed.errors == [UNREACHABLE] * 3
    request = client_env.requests.load(request_id)
    refresh_statuses(request)
    assert request.status is RequestStatus.Failed
    assert [str(op.status) for op in request.operations] == ["Failed", "Queued"]
    assert _lease(client_env, request_id) == ("Failed", None, None)
    assert Executor(client_env, policy).run_once() == 0


def test_each_try_and_each_pass_is_logged_for_an_operator(
    client_env: Environment,
    injector: FaultInjector,
    failed_over: FailedOver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What ``failover executor --loop`` shows: each retry with its time, the end, each pass's requests."""
    policy = ExecutorPolicy(max_attempts=2, backoff_base=60.0, jitter=0.0)
    caplog.set_level(logging.INFO, logger="failover.executor")
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
        executor = Executor(client_env, policy, name="logger")
        assert executor.run_once() == 1
        frozen.move_to(T0 + timedelta(seconds=60))
        assert executor.run_once() == 1
    # Only the executor's: an earlier in-process ``failover -v`` may have left the root logger at INFO.
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "failover.executor"]
    reason = UNREACHABLE.partition(": ")[2]
    assert lines == [
        (
            "INFO",
            f"ReplicateAndRegister of {LFN} failed (attempt 1 of 2), tried again after "
            f"2030-01-01T12:01:00+00:00: {reason}",
        ),
        ("INFO", "logger: 1 request taken, left Waiting 1"),
        (
            "WARNING",
            f"ReplicateAndRegister of {LFN} failed for good after 2 attempts: {reason}",
        ),
        ("INFO", "logger: 1 request taken, left Failed 1"),
    ]
    assert _file(client_env, request_id).status is FileStatus.Failed


def test_every_attempt_keeps_its_own_error(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """A per-attempt history, oldest first, kept when a later attempt succeeds."""
    policy = ExecutorPolicy(backoff_base=1.0, jitter=0.0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        executor = Executor(client_env, policy)
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=1)
        _retry_delays(client_env, frozen, executor, request_id, 1)
        injector.inject("SE-A", Fault.CHECKSUM_MISMATCH, operation="copy", times=1)
        _retry_delays(client_env, frozen, executor, request_id, 1)

        assert executor.run_once() == 1

    done = _file(client_env, request_id)
    assert (done.status, done.attempt, done.error) == (FileStatus.Done, 3, "")
    assert done.errors == [UNREACHABLE, "TransferCorrupted: SE-A: checksum mismatch after transfer"]


def test_non_retryable_error_fails_the_file_at_once(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    with freeze_time(T0):
        request_id = failed_over(LFN)
        injector.inject("SE-A", Fault.PUT_ERROR, operation="copy", times=1)

        assert Executor(client_env, ExecutorPolicy(max_attempts=5)).run_once() == 1

    failed = _file(client_env, request_id)
    denied = "PermissionDenied: SE-A: permission denied"
    assert (failed.status, failed.attempt, failed.error, failed.errors) == (
        FileStatus.Failed,
        1,
        denied,
        [denied],
    )
    assert _not_before(client_env, request_id) is None
    assert client_env.requests.load(request_id).status is RequestStatus.Failed
    assert injector.calls[("SE-A", "copy")] == 1


def test_sole_replica_is_retried_and_never_removed_up_to_the_last_attempt(
    client_env: Environment, injector: FaultInjector, failed_over: FailedOver
) -> None:
    """The target copy vanished after replication: each removal attempt is refused, then the file fails."""
    policy = ExecutorPolicy(max_attempts=2, backoff_base=1.0, jitter=0.0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        injector.inject("LocalCatalog", Fault.CATALOG_UNAVAILABLE, operation="remove_replica", times=1)
        executor = Executor(client_env, policy)
        _retry_delays(client_env, frozen, executor, request_id, 1)
        client_env.se("SE-A").remove(LFN)

        assert executor.run_once() == 1

    failed = _file(client_env, request_id, 1)
    assert (failed.status, failed.attempt) == (FileStatus.Failed, 2)
    assert failed.errors[0].startswith("CatalogUnavailable: ")
    assert failed.error.startswith("SoleReplica: ")
    assert failed.error.endswith(" (Max attempts limit reached)")
    assert client_env.se("FAIL-1").exists(LFN)
    assert injector.calls[("FAIL-1", "remove")] == 0
