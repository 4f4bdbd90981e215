"""
SPEC.md §5 leases and order: an executor takes one due request as Assigned with an expiry, renews it as
it records, releases it at the end; an expired lease makes the request eligible again, and an executor
that lost its lease stores nothing. Operations run in order, one current operation at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy, Lease
from failover.operator import cancel_request
from failover.request import File, FileStatus, Operation, OperationType, RequestStatus, refresh_statuses
from failover.testing import Fault, FaultInjector
from fsm.clock import format_time
from persistence.journal import read_journal

LFN = "/vo/user/a/alice/run42/out.root"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ExecutorPolicy(lease_seconds=120.0, jitter=0.0)
WORKER = Path(__file__).with_name("executor_worker.py")

FailedOver = Callable[..., int]


class ProbeInjector(FaultInjector):
    """A fault injector that also runs a test's probe when a given call is made (before the call)."""

    def __init__(self) -> None:
        super().__init__()
        self.probes: dict[tuple[str, str], Callable[[], None]] = {}

    def check(self, target: str, operation: str, lfn: str | None = None) -> None:
        """Run the probe registered for this call, then count it and apply scripted faults."""
        probe = self.probes.get((target, operation))
        if probe is not None:
            probe()
        super().check(target, operation, lfn)


@pytest.fixture
def injector() -> ProbeInjector:
    """Overrides conftest's: these tests look at the database while a handler is in the middle of its work."""
    return ProbeInjector()


def _row(env: Environment, request_id: int) -> tuple[str, str | None, str | None]:
    row: tuple[str, str | None, str | None] = env.store.conn.execute(
        "SELECT status, lease_owner, lease_expires FROM requests WHERE id = ?", (request_id,)
    ).fetchone()
    return row


def _seconds(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_take_assigns_the_request_under_a_lease_with_an_expiry(
    client_env: Environment, failed_over: FailedOver
) -> None:
    with freeze_time(T0):
        request_id = failed_over(LFN)
        lease = Executor(client_env, POLICY, name="alpha").take()

    assert lease == Lease(request_id, "alpha", 120.0)
    assert _row(client_env, request_id) == ("Assigned", "alpha", format_time(_seconds(120)))


def test_take_many_takes_the_due_requests_earliest_first_up_to_the_limit(
    client_env: Environment, failed_over: FailedOver
) -> None:
    with freeze_time(T0) as frozen:
        ids = [failed_over(f"/vo/user/a/alice/run42/out{n}.root") for n in range(5)]
        assert Executor(client_env, POLICY, name="crashed").take() == Lease(ids[0], "crashed", 120.0)
        not_before = "UPDATE requests SET not_before = ? WHERE id = ?"
        client_env.store.conn.execute(not_before, (format_time(_seconds(10)), ids[3]))
        client_env.store.conn.execute(not_before, (format_time(_seconds(500)), ids[2]))  # not due yet
        frozen.move_to(_seconds(121))  # the crashed executor's lease has expired

        leases = Executor(client_env, POLICY, name="beta").take_many(exclude=[ids[1]], limit=2)

    # No NotBefore sorts first (the expired lease's request, then by id), then the earliest NotBefore.
    assert [lease.request_id for lease in leases] == [ids[0], ids[4]]
    assert [_row(client_env, n)[:2] for n in ids] == [
        ("Assigned", "beta"),
        ("Waiting", None),
        ("Waiting", None),
        ("Waiting", None),
        ("Assigned", "beta"),
    ]


def test_a_leased_request_is_not_taken_again_until_the_lease_expires(
    client_env: Environment, failed_over: FailedOver
) -> None:
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        assert Executor(client_env, POLICY, name="alpha").take() is not None
        beta = Executor(client_env, POLICY, name="beta")

        assert beta.take() is None
        frozen.move_to(_seconds(120))
        assert beta.take() is None
        assert beta.run_once() == 0
        frozen.move_to(_seconds(120.001))
        lease = beta.take()

    assert lease is not None and lease.request_id == request_id
    assert _row(client_env, request_id) == ("Assigned", "beta", format_time(_seconds(240.001)))


def test_a_request_left_assigned_by_a_dead_executor_is_finished_by_another(
    client_env: Environment, failed_over: FailedOver
) -> None:
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        assert Executor(client_env, POLICY, name="crashed").take() is not None
        frozen.move_to(_seconds(121))

        assert Executor(client_env, POLICY, name="rescuer").run_once() == 1

    assert _row(client_env, request_id) == ("Done", None, None)
    assert client_env.uploads.load(LFN).state == "Cleaned"


def test_an_executor_that_lost_its_lease_stores_nothing(
    client_env: Environment, injector: ProbeInjector, failed_over: FailedOver
) -> None:
    """
    The lease expired while the slow executor was copying and another took the request: the slow one's
    result is not recorded (its copy is found by the new owner, not made twice).
    """
    with freeze_time(T0) as frozen:
        request_id = failed_over(LFN)
        slow, fast = (Executor(client_env, POLICY, name=name) for name in ("slow", "fast"))
        slow_lease = slow.take()
        assert slow_lease is not None
        taken: list[Lease | None] = []

        def lease_expires_during_the_copy() -> None:
            frozen.move_to(_seconds(121))
            taken.append(fast.take())

        injector.probes[("SE-A", "copy")] = lease_expires_during_the_copy
        slow.process(slow_lease)
        del injector.probes[("SE-A", "copy")]

        replicate = client_env.requests.load(request_id).operations[0].files[0]
        assert (replicate.status, replicate.attempt) == (FileStatus.Waiting, 0)
        assert _row(client_env, request_id)[:2] == ("Assigned", "fast")
        assert [trigger.trigger for trigger in read_journal(client_env.store.conn, LFN)][-1] == "failed_over"
        (fast_lease,) = taken
        assert fast_lease is not None

        fast.process(fast_lease)

    assert _row(client_env, request_id) == ("Done", None, None)
    assert injector.calls[("SE-A", "copy")] == 1
    triggers = [row.trigger for row in read_journal(client_env.store.conn, LFN)]
    assert triggers == ["create", "failed_over", "replication_started", "cleaned"]


def test_the_lease_is_renewed_each_time_a_file_is_recorded(
    client_env: Environment, injector: ProbeInjector, failed_over: FailedOver
) -> None:
    """
    Three copies of 100 s each under a 120 s lease: renewals keep another executor out throughout. Files
    that take 100 s to copy are big, so each pair is a round of its own (``round_bytes``; here 0, the
    files are small), and each round's record renews the lease.
    """
    lfns = [f"{LFN}.{n}" for n in range(3)]
    seen: list[tuple[str | None, str | None, bool]] = []
    policy = replace(POLICY, round_bytes=0)
    with freeze_time(T0) as frozen:
        request_id = failed_over(*lfns)
        rival = Executor(client_env, policy, name="rival")

        def a_copy_takes_100_seconds() -> None:
            frozen.tick(timedelta(seconds=100))
            _, owner, expires = _row(client_env, request_id)
            seen.append((owner, expires, rival.take() is None))

        injector.probes[("SE-A", "copy")] = a_copy_takes_100_seconds
        assert Executor(client_env, policy, name="worker").run_once() == 1

    # Each copy starts where the previous operations were recorded (the lease renewed then, +120 s).
    assert seen == [
        ("worker", format_time(_seconds(120)), True),
        ("worker", format_time(_seconds(100 + 120)), True),
        ("worker", format_time(_seconds(200 + 120)), True),
    ]
    assert _row(client_env, request_id) == ("Done", None, None)


def test_an_operator_cancel_stops_the_executor_holding_the_request(
    client_env: Environment, injector: ProbeInjector, failed_over: FailedOver
) -> None:
    """Canceled while a copy runs: the executor's result is not recorded and the request stays Canceled."""
    request_id = failed_over(LFN)
    executor = Executor(client_env, POLICY, name="worker")
    injector.probes[("SE-A", "copy")] = lambda: cancel_request(client_env, request_id, "operator said so")

    executor.run_once()

    request = client_env.requests.load(request_id)
    assert (request.status, request.error) == (RequestStatus.Canceled, "operator said so")
    assert [str(op.status) for op in request.operations] == ["Canceled", "Canceled"]
    assert request.operations[0].files[0].attempt == 0
    assert client_env.se("FAIL-1").exists(LFN)
    assert executor.run_once() == 0


def test_only_committed_due_waiting_requests_are_taken(
    client_env: Environment, failed_over: FailedOver, output_file: Path
) -> None:
    """Drafts, requests waiting for their NotBefore and ended requests are left alone."""
    with freeze_time(T0):
        due = failed_over(f"{LFN}.due")
        later, done, failed, canceled = (failed_over(f"{LFN}.{n}") for n in range(4))
        draft = FailoverTransfer(environment=client_env)
        local = str(output_file)
        assert draft.transferAndRegisterFileFailover("x", local, f"{LFN}.draft", "SE-A", "FAIL-1", {})["OK"]
        conn = client_env.store.conn
        conn.execute("UPDATE requests SET not_before = ? WHERE id = ?", (format_time(_seconds(1)), later))
        for request_id, status in ((done, "Done"), (failed, "Failed"), (canceled, "Canceled")):
            conn.execute("UPDATE requests SET status = ? WHERE id = ?", (status, request_id))
        executor = Executor(client_env, POLICY, name="picky")

        assert executor.run_once() == 1
        assert _row(client_env, due)[0] == "Done"
        assert [_row(client_env, rid)[0] for rid in (later, done, failed, canceled)] == [
            "Waiting",
            "Done",
            "Failed",
            "Canceled",
        ]
        assert client_env.uploads.load(f"{LFN}.draft").state == "FailedOver"


def test_operations_run_in_order_one_current_operation_at_a_time(
    client_env: Environment, injector: ProbeInjector, failed_over: FailedOver
) -> None:
    """While the first upload's replication waits for a retry, nothing after it in the request runs."""
    first, second = f"{LFN}.1", f"{LFN}.2"
    request_id = failed_over(first, second)
    injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="copy", times=1)

    Executor(client_env, POLICY, name="worker").run_once()

    request = client_env.requests.load(request_id)
    refresh_statuses(request)
    assert [(str(op.type), str(op.status)) for op in request.operations] == [
        ("ReplicateAndRegister", "Waiting"),
        ("RemoveReplica", "Queued"),
        ("ReplicateAndRegister", "Queued"),
        ("RemoveReplica", "Queued"),
    ]
    assert [file.attempt for op in request.operations for file in op.files] == [1, 0, 0, 0]
    assert not client_env.se("SE-A").exists(second)
    assert injector.calls[("FAIL-1", "remove")] == 0


def test_a_current_operation_with_nothing_waiting_is_released_not_spun_on(
    client_env: Environment, submit: Callable[..., int], tmp_path: Path
) -> None:
    """
    A DIRAC request whose current operation's file is Scheduled (an external transfer owns it) gives the
    executor nothing to run: it must put the request back and return, not loop on it. Run in a separate
    process so that a spinning executor can be killed.
    """
    scheduled = File(LFN, status=FileStatus.Scheduled)
    request_id = submit(Operation(OperationType.RemoveFile, files=[scheduled]))
    go = tmp_path / "go"
    go.touch()
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "once", str(tmp_path / "ws"), "worker", str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = worker.communicate(timeout=10.0)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate()
        pytest.fail("run_once never returned: the executor spins on a request it cannot advance")
    assert worker.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["taken"] <= 1
    assert _row(client_env, request_id)[1:] == (None, None)
    (file,) = client_env.requests.load(request_id).operations[0].files
    assert (file.status, file.attempt) == (FileStatus.Scheduled, 0)


def test_a_request_runs_its_operations_in_one_pass_and_is_released(
    client_env: Environment, failed_over: FailedOver
) -> None:
    request_id = failed_over(f"{LFN}.1", f"{LFN}.2")

    assert Executor(client_env, POLICY).run_once() == 1

    request = client_env.requests.load(request_id)
    assert request.status is RequestStatus.Done
    assert [file.status for op in request.operations for file in op.files] == [FileStatus.Done] * 4
    assert _row(client_env, request_id) == ("Done", None, None)


def test_executors_get_distinct_default_names(client_env: Environment) -> None:
    names = {Executor(client_env).name for _ in range(20)}
    assert len(names) == 20


def test_the_outcome_that_finishes_a_request_releases_it_in_the_same_commit(
    client_env: Environment, failed_over: FailedOver
) -> None:
    """
    One request at a time: take, record the replication, record the removal together with the release,
    then the take that finds nothing more: four commits (a separate release would make five).
    """
    with freeze_time(T0):
        request_id = failed_over(LFN)
        statements: list[str] = []
        client_env.store.conn.set_trace_callback(statements.append)
        assert Executor(client_env, replace(POLICY, batch_size=1), name="alpha").run_once() == 1
        client_env.store.conn.set_trace_callback(None)

    assert statements.count("COMMIT") == 4
    transactions: list[list[str]] = []
    for statement in statements:
        if statement == "BEGIN IMMEDIATE":
            transactions.append([])
        elif transactions:
            transactions[-1].append(statement)
    removal = transactions[2]
    assert any("UPDATE files SET status = 'Done'" in s for s in removal)
    assert any("lease_owner = NULL" in s for s in removal)
    assert _row(client_env, request_id) == ("Done", None, None)


def test_a_round_of_long_copies_keeps_its_leases_between_them(
    client_env: Environment, injector: ProbeInjector, failed_over: FailedOver
) -> None:
    """
    Three requests in one round, their copies 100 s each under a 120 s lease (big files: one per chunk
    of ``round_bytes``). Between chunks the round renews its leases once a third of their time has
    passed, so another executor takes none of the requests while the copies run.
    """
    policy = replace(POLICY, round_bytes=0)
    seen: list[tuple[str | None, bool]] = []
    with freeze_time(T0) as frozen:
        ids = [failed_over(f"{LFN}.{n}") for n in range(3)]
        rival = Executor(client_env, policy, name="rival")

        def a_copy_takes_100_seconds() -> None:
            frozen.tick(timedelta(seconds=100))
            seen.append((_row(client_env, ids[0])[2], rival.take() is None))

        injector.probes[("SE-A", "copy")] = a_copy_takes_100_seconds
        assert Executor(client_env, policy, name="worker").run_once() == 3

    # Taken at 0 s (expiring at 120 s), renewed after the first copy (at 100 s) and the second (200 s).
    assert seen == [
        (format_time(_seconds(120)), True),
        (format_time(_seconds(100 + 120)), True),
        (format_time(_seconds(200 + 120)), True),
    ]
    assert [_row(client_env, n) for n in ids] == [("Done", None, None)] * 3
