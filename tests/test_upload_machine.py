"""
The upload machine driven through the real engine on a SQLite file: scenario paths, refusals, Stuck.

Every step is checked against what the transition's own decider computes from the stored row, and the
stored row against the replay of its journal (SPEC.md §6, invariant 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from fsm.clock import format_time
from fsm.engine import Engine, OutboxSink, idempotency_key
from fsm.errors import TransitionNotAllowed
from fsm.graph import scenario_paths
from fsm.replay import verify_replay
from fsm.spec import Decision, Emission, Transition, TransitionContext
from persistence import MachineRow, Store
from persistence.emitted import read_emitted
from persistence.journal import read_journal
from states import UPLOAD_MACHINE
from states.names import UploadState as S
from states.names import UploadTrigger as T
from states.operations import (
    REGISTER_FILE,
    REMOVE_REPLICA,
    REPLICATE_AND_REGISTER,
    register_file_operations,
    remove_replica_operation,
    replicate_operation,
)
from states.upload_data import current_candidate, new_upload_data

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOGS = ["CatA", "CatB"]
MACHINE_ID = "upload-1"


class FakeClock:
    """A clock the test moves by hand, so every stored time is known."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def engine(store: Store, clock: FakeClock) -> Engine:
    return Engine(UPLOAD_MACHINE, store, clock=clock)


def initial_data(triggers: Sequence[str]) -> dict[str, Any]:
    """Candidates that make ``triggers`` plausible: one SE per attempt, failover SEs when it fails over."""
    tries = 1 + list(triggers).count(T.ATTEMPT_FAILED)
    fails_over = T.FAILED_OVER in triggers
    return new_upload_data(
        lfn=LFN,
        local_path="/scratch/job/out.root",
        size=1234,
        checksum_type="ADLER32",
        guid=GUID,
        catalogs=CATALOGS,
        destinations=[] if fails_over else ["SE-A", "SE-B", "SE-C"][:tries],
        failovers=["FO-1", "FO-2", "FO-3"][:tries] if fails_over else [],
        targets=["SE-T"] if fails_over else [],
    )


def _landing(data: Mapping[str, Any], unregistered: Mapping[str, str]) -> dict[str, Any]:
    se = (current_candidate(data) or {"se": "SE-NONE"})["se"]
    return {
        "se": se,
        "pfn": f"file:///srv/{se.lower()}{LFN}",
        "size": 1234,
        "checksum": "0a1b2c3d",
        "checksum_type": "ADLER32",
        "registered": [c for c in CATALOGS if c not in unregistered],
        "unregistered": dict(unregistered),
    }


#: The header of the request an operator retry re-issues the operations in.
RETRY_HEADER = {
    "client_key": f"retry:{MACHINE_ID}:1",
    "name": "job-42",
    "owner": "alice",
    "owner_group": "vo_user",
    "source_component": "Job",
    "job_id": 42,
}


def _reissued(
    data: Mapping[str, Any], kinds: Sequence[str] = (REPLICATE_AND_REGISTER, REMOVE_REPLICA)
) -> list[dict[str, Any]]:
    """The operations an operator re-issues for the upload, as the upload machine emits them."""
    upload = {**data, "uploaded_se": data.get("uploaded_se", "SE-NONE"), "pfn": data.get("pfn", "")}
    build = {
        REGISTER_FILE: lambda: register_file_operations(upload, ["CatB"])[0],
        REPLICATE_AND_REGISTER: lambda: replicate_operation(upload),
        REMOVE_REPLICA: lambda: remove_replica_operation(upload),
    }
    return [dict(build[kind]().payload) for kind in kinds]


def _failure(data: Mapping[str, Any], retryable: bool) -> dict[str, Any]:
    se = (current_candidate(data) or {"se": "SE-NONE"})["se"]
    error = {"code": "storage_unavailable" if retryable else "permission_denied", "message": f"{se} said no"}
    return {"se": se, "error": error, "retryable": retryable}


#: What the outside world plausibly reports for each trigger, given the upload's data.
EVENTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    T.ATTEMPT_FAILED: lambda data: _failure(data, True),
    T.EXHAUSTED: lambda data: _failure(data, False),
    T.REFUSED: lambda data: {
        "error": {"code": "registration_conflict", "message": "GUID belongs to another LFN"}
    },
    T.UPLOADED: lambda data: _landing(data, {}),
    T.REGISTRATION_DEFERRED: lambda data: _landing(data, {"CatB": "catalog down"}),
    T.FAILED_OVER: lambda data: _landing(data, {}),
    T.REQUEST_FAILED: lambda data: {"reason": "ReplicateAndRegister: max attempts reached", "request": 7},
    T.OPERATOR_RETRY: lambda data: {"request": RETRY_HEADER, "operations": _reissued(data)},
    T.REGISTRATION_FAILED: lambda data: {"reason": "conflicting GUID in CatB"},
}


def plausible_event(trigger: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return EVENTS[trigger](data) if trigger in EVENTS else {}


def expected_decision(
    transition: Transition, row: MachineRow, event: Mapping[str, Any], now: datetime
) -> Decision:
    """What the transition decides for the stored row, computed without the engine."""
    ctx = TransitionContext(row.id, transition.trigger, row.state, row.data, event, now, row.version + 1)
    return transition.decide(ctx) if transition.decide is not None else Decision()


def stored_emissions(store: Store, seq: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.idem_key, r.kind, r.payload) for r in read_emitted(store.conn, MACHINE_ID) if r.seq == seq]


def as_rows(emissions: Sequence[Emission], seq: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (idempotency_key(MACHINE_ID, seq, i, e.kind), e.kind, dict(e.payload))
        for i, e in enumerate(emissions)
    ]


def drive(engine: Engine, clock: FakeClock, triggers: Sequence[str]) -> MachineRow:
    """Create the upload with candidates that suit ``triggers`` and fire them with plausible events."""
    row = engine.create(MACHINE_ID, initial_data(triggers))
    for trigger in triggers:
        clock.advance(5)
        fired = engine.fire(MACHINE_ID, trigger, plausible_event(trigger, row.data))
        row = fired.row
    return row


def snapshot(engine: Engine) -> tuple[MachineRow, list[Any], list[Any]]:
    conn = engine.store.conn
    return engine.load(MACHINE_ID), read_journal(conn, MACHINE_ID), read_emitted(conn, MACHINE_ID)


# ---- scenario paths

PATHS = list(scenario_paths(UPLOAD_MACHINE))


def _path_id(path: list[Transition]) -> str:
    return "-".join(f"{t.trigger}>{t.dest}" for t in path)


@pytest.mark.parametrize("path", PATHS, ids=[_path_id(p) for p in PATHS])
def test_each_scenario_path_ends_in_its_final_state(
    engine: Engine, clock: FakeClock, path: list[Transition]
) -> None:
    """Each step lands where the path says, stores what its decider decides, and replays from the journal."""
    row = engine.create(MACHINE_ID, initial_data([t.trigger for t in path]))
    for transition in path:
        clock.advance(5)
        event = plausible_event(transition.trigger, row.data)
        expected = expected_decision(transition, row, event, clock())
        fired = engine.fire(MACHINE_ID, transition.trigger, event)
        assert (fired.row.state, fired.journal.src, fired.journal.dst) == (
            transition.dest,
            row.state,
            transition.dest,
        )
        assert {e.kind for e in fired.emissions} <= set(transition.emits)
        stored = engine.load(MACHINE_ID)
        assert stored == fired.row
        assert stored.data == {**row.data, **expected.data}
        assert stored_emissions(engine.store, stored.version) == as_rows(expected.emit, stored.version)
        verify_replay(UPLOAD_MACHINE, stored, read_journal(engine.store.conn, MACHINE_ID))
        row = stored
    assert row.state == path[-1].dest
    assert row.state in UPLOAD_MACHINE.finals
    assert row.version == len(path)


def test_a_failed_over_upload_stores_replicate_then_remove(engine: Engine, clock: FakeClock) -> None:
    row = drive(engine, clock, [T.ATTEMPT_FAILED, T.FAILED_OVER])
    kinds = [(r.seq, r.position, r.kind) for r in read_emitted(engine.store.conn, MACHINE_ID)]
    assert kinds == [(2, 0, "ReplicateAndRegister"), (2, 1, "RemoveReplica")]
    assert row.data["uploaded_se"] == "FO-2"
    assert [f["se"] for f in row.data["failures"]] == ["FO-1"]


def test_a_retry_wait_is_stored_with_the_upload(engine: Engine, clock: FakeClock) -> None:
    data = {**initial_data([]), "retry_upload": True}
    engine.create(MACHINE_ID, data)
    clock.advance(42)
    fired = engine.fire(MACHINE_ID, T.ATTEMPT_FAILED, plausible_event(T.ATTEMPT_FAILED, data))
    assert fired.row.state == S.UPLOADING
    assert fired.row.data["next_attempt_at"] == format_time(NOW + timedelta(seconds=42 + 10))
    assert fired.journal.at == format_time(NOW + timedelta(seconds=42))


def test_freezegun_controls_the_default_clock(store: Store) -> None:
    engine = Engine(UPLOAD_MACHINE, store)
    with freeze_time("2024-06-01 08:30:00"):
        engine.create(MACHINE_ID, initial_data([]))
        fired = engine.fire(
            MACHINE_ID, T.EXHAUSTED, plausible_event(T.EXHAUSTED, engine.load(MACHINE_ID).data)
        )
    assert fired.journal.at == "2024-06-01T08:30:00.000000+00:00"
    assert fired.row.data["failures"][0]["at"] == "2024-06-01T08:30:00.000000+00:00"


def test_a_failed_registration_request_ends_the_upload_failed(engine: Engine, clock: FakeClock) -> None:
    """DESIGN/states.machine: Registering ──registration_failed──► Failed, the reason kept (never Stuck)."""
    drive(engine, clock, [T.REGISTRATION_DEFERRED])
    fired = engine.fire(MACHINE_ID, T.REGISTRATION_FAILED, {"reason": "conflicting GUID in CatB"})
    assert fired.row.state == S.FAILED
    assert fired.row.data["refusal"] == {"code": "registration_failed", "message": "conflicting GUID in CatB"}
    assert fired.row.data["uploaded_se"] == "SE-A"


def test_registered_catalogs_keep_the_order_they_were_chosen_in(engine: Engine, clock: FakeClock) -> None:
    """The store writes dicts with sorted keys; what a transition decides must not depend on that."""
    data = {**initial_data([]), "catalogs": ["CatB", "CatA"]}
    engine.create(MACHINE_ID, data)
    landed = {**_landing(data, {}), "registered": [], "unregistered": {"CatB": "down", "CatA": "timeout"}}
    deferred = engine.fire(MACHINE_ID, T.REGISTRATION_DEFERRED, landed)
    assert [e.payload["catalog"] for e in deferred.emissions] == [["CatB"], ["CatA"]]
    fired = engine.fire(MACHINE_ID, T.REGISTERED, {})
    assert fired.row.data["registered_catalogs"] == ["CatB", "CatA"]


# ---- refusals store nothing

#: Triggers that reach each state with plausible events.
REACH: dict[str, list[str]] = {
    S.UPLOADING: [],
    S.REGISTERING: [T.REGISTRATION_DEFERRED],
    S.REGISTERED: [T.UPLOADED],
    S.FAILED_OVER: [T.FAILED_OVER],
    S.REPLICATING: [T.FAILED_OVER, T.REPLICATION_STARTED],
    S.CLEANED: [T.FAILED_OVER, T.REPLICATION_STARTED, T.CLEANED],
    S.FAILED: [T.EXHAUSTED],
    S.STUCK: [T.FAILED_OVER, T.REQUEST_FAILED],
}

UNDEFINED = [
    (state, trigger)
    for state in UPLOAD_MACHINE.states
    for trigger in [*T, "explode"]
    if trigger not in {t.trigger for t in UPLOAD_MACHINE.transitions_from(state)}
]


def test_reach_covers_every_state() -> None:
    assert set(REACH) == set(UPLOAD_MACHINE.states)


def _assert_refused_and_nothing_stored(engine: Engine, trigger: str, event: Mapping[str, Any]) -> None:
    before = snapshot(engine)
    with pytest.raises(TransitionNotAllowed) as refused:
        engine.fire(MACHINE_ID, trigger, event)
    assert (refused.value.machine_id, refused.value.state, refused.value.trigger) == (
        MACHINE_ID,
        before[0].state,
        trigger,
    )
    assert snapshot(engine) == before


@pytest.mark.parametrize(("state", "trigger"), UNDEFINED, ids=[f"{s}-{t}" for s, t in UNDEFINED])
def test_a_trigger_undefined_in_a_state_is_refused(
    engine: Engine, clock: FakeClock, state: str, trigger: str
) -> None:
    row = drive(engine, clock, REACH[state])
    assert row.state == state
    _assert_refused_and_nothing_stored(engine, trigger, plausible_event(trigger, row.data))


def _with(trigger: str, **changes: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return lambda data: {**plausible_event(trigger, data), **changes}


GUARD_REFUSALS: list[tuple[str, list[str], str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = [
    ("landed at an SE not being tried", [], T.UPLOADED, _with(T.UPLOADED, se="SE-BOGUS")),
    ("uploaded though a catalog failed", [], T.UPLOADED, _with(T.UPLOADED, unregistered={"CatB": "down"})),
    (
        "deferred though every catalog registered",
        [],
        T.REGISTRATION_DEFERRED,
        _with(T.REGISTRATION_DEFERRED, registered=CATALOGS, unregistered={}),
    ),
    ("failed over at a destination SE", [], T.FAILED_OVER, _with(T.FAILED_OVER)),
    ("exhausted while an SE remains", [T.ATTEMPT_FAILED], T.EXHAUSTED, _with(T.ATTEMPT_FAILED)),
    ("another attempt on the last SE", [], T.ATTEMPT_FAILED, _with(T.ATTEMPT_FAILED)),
    ("uploaded at a failover SE", [T.FAILED_OVER], T.UPLOADED, _with(T.UPLOADED)),
    ("deferred at a failover SE", [T.FAILED_OVER], T.REGISTRATION_DEFERRED, _with(T.REGISTRATION_DEFERRED)),
]


@pytest.mark.parametrize(
    ("setup", "trigger", "event"),
    [case[1:] for case in GUARD_REFUSALS],
    ids=[case[0] for case in GUARD_REFUSALS],
)
def test_a_trigger_whose_guards_refuse_stores_nothing(
    engine: Engine,
    clock: FakeClock,
    setup: list[str],
    trigger: str,
    event: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> None:
    # The setup triggers only choose the candidates; the upload itself stays in Uploading.
    data = initial_data(setup)
    engine.create(MACHINE_ID, data)
    _assert_refused_and_nothing_stored(engine, trigger, event(data))


class FailingSink(OutboxSink):
    """Writes the emissions, then fails: as if the disk filled up halfway through a transition."""

    def write(self, store: Store, machine_id: str, seq: int, emissions: Sequence[Emission], at: str) -> None:
        super().write(store, machine_id, seq, emissions, at)
        if emissions:
            raise OSError("disk full")


def test_the_operations_of_one_outcome_are_stored_together_or_not_at_all(
    store: Store, clock: FakeClock
) -> None:
    engine = Engine(UPLOAD_MACHINE, store, clock=clock, sink=FailingSink())
    row = engine.create(MACHINE_ID, initial_data([T.FAILED_OVER]))
    before = snapshot(engine)
    with pytest.raises(OSError, match="disk full"):
        engine.fire(MACHINE_ID, T.FAILED_OVER, plausible_event(T.FAILED_OVER, row.data))
    assert snapshot(engine) == before


# ---- Stuck and the operator


@pytest.mark.parametrize("origin", [S.FAILED_OVER, S.REPLICATING])
def test_operator_retry_lands_in_failed_over_whichever_state_it_got_stuck_in(
    engine: Engine, clock: FakeClock, origin: S
) -> None:
    """Stuck always returns to FailedOver (the replication is re-issued); the upload can still end Cleaned."""
    drive(engine, clock, REACH[origin])
    for round_ in (1, 2):
        if engine.load(MACHINE_ID).state != origin:
            engine.fire(MACHINE_ID, T.REPLICATION_STARTED, {})
        stuck = engine.fire(MACHINE_ID, T.REQUEST_FAILED, {"reason": "timeout", "request": round_})
        assert (stuck.row.state, stuck.row.data["stuck_from"]) == (S.STUCK, origin)
        assert (stuck.row.data["stuck_reason"], stuck.row.data["stuck_request"]) == ("timeout", round_)
        header = {**RETRY_HEADER, "client_key": f"retry:{MACHINE_ID}:{round_}"}
        back = engine.fire(
            MACHINE_ID, T.OPERATOR_RETRY, {"request": header, "operations": _reissued(stuck.row.data)}
        )
        assert (back.journal.src, back.journal.dst, back.row.state) == (S.STUCK, S.FAILED_OVER, S.FAILED_OVER)
        assert [back.row.data[key] for key in ("stuck_from", "stuck_reason", "stuck_request")] == [None] * 3
        assert back.row.data["operator_retries"] == round_
        assert back.row.data["request"] == header
    for trigger in [T.REPLICATION_STARTED, T.CLEANED]:
        engine.fire(MACHINE_ID, trigger, {})
    assert engine.load(MACHINE_ID).state == S.CLEANED
    verify_replay(UPLOAD_MACHINE, engine.load(MACHINE_ID), read_journal(engine.store.conn, MACHINE_ID))


@pytest.mark.parametrize(
    "kinds",
    [
        [REMOVE_REPLICA],
        [REPLICATE_AND_REGISTER, REMOVE_REPLICA],
        [REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA],
    ],
    ids=["remove", "replicate-remove", "register-replicate-remove"],
)
@pytest.mark.parametrize("origin", [S.FAILED_OVER, S.REPLICATING])
def test_operator_retry_stores_exactly_the_operations_of_its_event(
    engine: Engine, clock: FakeClock, origin: S, kinds: list[str]
) -> None:
    """The retry stores the event's operations, in order, under the keys of its own transition."""
    row = drive(engine, clock, [*REACH[origin], T.REQUEST_FAILED])
    before = read_emitted(engine.store.conn, MACHINE_ID)
    operations = _reissued(row.data, kinds)
    fired = engine.fire(MACHINE_ID, T.OPERATOR_RETRY, {"request": RETRY_HEADER, "operations": operations})
    seq = fired.row.version
    assert fired.journal.trigger == T.OPERATOR_RETRY
    assert fired.emissions == tuple(Emission(kind, op) for kind, op in zip(kinds, operations, strict=True))
    stored = read_emitted(engine.store.conn, MACHINE_ID)
    assert stored[: len(before)] == before
    assert [(r.seq, r.position, r.idem_key, r.kind, r.payload) for r in stored[len(before) :]] == [
        (seq, i, idempotency_key(MACHINE_ID, seq, i, kind), kind, op)
        for i, (kind, op) in enumerate(zip(kinds, operations, strict=True))
    ]


def test_a_refusal_after_an_attempt_is_refused(engine: Engine, clock: FakeClock) -> None:
    """A refusal happens before any put: once an attempt failed, the upload can no longer be refused."""
    row = drive(engine, clock, [T.ATTEMPT_FAILED])
    assert (row.state, row.data["attempts"]) == (S.UPLOADING, {"SE-A": 1})
    _assert_refused_and_nothing_stored(engine, T.REFUSED, plausible_event(T.REFUSED, row.data))
