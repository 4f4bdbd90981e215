"""
The durable engine: one transition is one transaction, all or nothing.

The tests use the counter machine of ``tests/machines/counter.py`` and read the tables with plain SQL,
so that "nothing stored" means exactly that: the same rows, byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from freezegun import freeze_time
from machines.counter import COUNTER, Boom, counter_machine, new_counter_data

from fsm import (
    CREATE_TRIGGER,
    Emission,
    EmissionSink,
    Engine,
    OutboxSink,
    TransitionNotAllowed,
    idempotency_key,
)
from fsm.errors import UndeclaredEmission
from persistence import AlreadyExists, ConcurrentUpdate, JournalRow, NotFound, Store, open_store
from persistence.emitted import read_emitted
from persistence.errors import ConstraintViolation
from persistence.journal import read_journal

Snapshot = tuple[list[Any], ...]


def _snapshot(store: Store) -> Snapshot:
    """Every stored row of the engine's tables, as SQLite returns them."""
    conn = store.conn
    return (
        conn.execute("SELECT * FROM machines ORDER BY id").fetchall(),
        conn.execute("SELECT * FROM journal ORDER BY machine_id, seq").fetchall(),
        conn.execute("SELECT * FROM emitted ORDER BY id").fetchall(),
    )


def _counting(engine: Engine, machine_id: str = "m1", limit: int = 1_000_000) -> None:
    """Create an instance and give it some history: version 2, three journal rows, two emitted rows."""
    engine.create(machine_id, new_counter_data(limit))
    engine.fire(machine_id, "start", {"label": "first"})
    engine.fire(machine_id, "bump")


class SinkDown(Exception):
    """The emission sink failed."""


class HalfSink:
    """Writes the first emission to the outbox, then fails: that write must not survive."""

    def write(self, store: Store, machine_id: str, seq: int, emissions: Sequence[Emission], at: str) -> None:
        OutboxSink().write(store, machine_id, seq, emissions[:1], at)
        raise SinkDown(machine_id)


Arrange = Callable[[Store, str, int], EmissionSink | None]


def _no_fault(store: Store, machine_id: str, version: int) -> None:
    return None


def _failing(statement: str, table: str) -> Arrange:
    """A temporary SQL trigger makes the engine's own write fail inside SQLite."""

    def arrange(store: Store, machine_id: str, version: int) -> None:
        store.conn.execute(
            f"CREATE TEMP TRIGGER fail_{table} BEFORE {statement} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )

    return arrange


def _occupy_second_key(store: Store, machine_id: str, version: int) -> None:
    """Store a row under the key the next transition's second emission will use."""
    store.conn.execute(
        "INSERT INTO emitted (idem_key, machine_id, seq, position, kind, payload, created_at) "
        "VALUES (?, ?, 0, 0, 'squatter', '{}', 't')",
        (idempotency_key(machine_id, version + 1, 1, "tick"), machine_id),
    )


def _half_sink(store: Store, machine_id: str, version: int) -> EmissionSink:
    return HalfSink()


# A failed write reaches the caller as the store's typed ConstraintViolation (the sqlite3 error is its cause).
@pytest.mark.parametrize(
    ("trigger", "event", "arrange", "error"),
    [
        ("bump", {"fail": "guard"}, _no_fault, Boom),
        ("burst", {"fail": "decide"}, _no_fault, Boom),
        ("burst", {}, _failing("UPDATE", "machines"), ConstraintViolation),
        ("burst", {}, _failing("INSERT", "journal"), ConstraintViolation),
        ("burst", {}, _half_sink, SinkDown),
        ("burst", {}, _occupy_second_key, ConstraintViolation),
    ],
    ids=["guard", "decider", "machines-update", "journal-insert", "emission-sink", "emitted-unique"],
)
def test_an_exception_at_any_step_rolls_back_everything(
    store: Store, trigger: str, event: dict[str, Any], arrange: Arrange, error: type[Exception]
) -> None:
    """State, version, data, journal and emitted rows stay as they were; the exception reaches the caller."""
    _counting(Engine(COUNTER, store))
    engine = Engine(COUNTER, store, sink=arrange(store, "m1", 2))
    before = _snapshot(store)

    with pytest.raises(error):
        engine.fire("m1", trigger, event)

    assert _snapshot(store) == before
    assert not store.conn.in_transaction


def test_the_engine_fires_normally_after_a_failed_transition(counter_engine: Engine) -> None:
    _counting(counter_engine)
    with pytest.raises(Boom):
        counter_engine.fire("m1", "bump", {"fail": "guard"})

    fired = counter_engine.fire("m1", "pause")

    assert (fired.journal.seq, fired.journal.src, fired.row.state, fired.row.version) == (
        3,
        "Counting",
        "Paused",
        3,
    )


@pytest.mark.parametrize(
    ("trigger", "event", "message"),
    [
        ("launch", {}, r"unknown trigger 'launch'"),
        ("resume", {}, r"'resume' cannot fire from 'Counting'"),
        ("bump", {"step": 10}, r"every guard of 'bump' refused in 'Counting'"),
    ],
    ids=["unknown-trigger", "not-from-this-state", "every-guard-refuses"],
)
def test_a_refused_trigger_raises_transition_not_allowed_and_stores_nothing(
    counter_engine: Engine, store: Store, trigger: str, event: dict[str, Any], message: str
) -> None:
    _counting(counter_engine, limit=5)
    before = _snapshot(store)

    with pytest.raises(TransitionNotAllowed, match=message) as caught:
        counter_engine.fire("m1", trigger, event)

    assert (caught.value.machine_id, caught.value.state, caught.value.trigger) == ("m1", "Counting", trigger)
    assert _snapshot(store) == before


def test_create_stores_the_initial_state_and_the_creation_journal_row(
    counter_engine: Engine, store: Store
) -> None:
    row = counter_engine.create("m1", {"count": 0, "limit": 3})

    assert (row.id, row.kind, row.state, row.version, row.data) == (
        "m1",
        "counter",
        "Idle",
        0,
        {"count": 0, "limit": 3},
    )
    assert counter_engine.load("m1") == row
    assert counter_engine.load_many(["m1", "missing"]) == {"m1": row}
    assert read_journal(store.conn, "m1") == [
        JournalRow("m1", 0, row.created_at, CREATE_TRIGGER, None, "Idle", {"data": {"count": 0, "limit": 3}})
    ]


def test_create_refuses_an_existing_id_and_keeps_the_instance(counter_engine: Engine, store: Store) -> None:
    _counting(counter_engine)
    before = _snapshot(store)

    with pytest.raises(AlreadyExists):
        counter_engine.create("m1", new_counter_data())

    assert _snapshot(store) == before


def test_firing_on_a_missing_instance_raises_not_found(counter_engine: Engine) -> None:
    with pytest.raises(NotFound):
        counter_engine.fire("nobody", "start")
    assert counter_engine.find("nobody") is None


def test_fire_commits_the_row_its_journal_row_and_its_emissions(counter_engine: Engine, store: Store) -> None:
    _counting(counter_engine)

    fired = counter_engine.fire("m1", "bump", {"step": 3})

    assert fired.row == counter_engine.load("m1")
    assert (fired.row.state, fired.row.version) == ("Counting", 3)
    assert fired.row.data == {"count": 4, "limit": 1_000_000, "label": "first", "last_step": 3}
    assert read_journal(store.conn, "m1")[-1] == fired.journal
    assert fired.journal == JournalRow(
        "m1",
        3,
        fired.row.updated_at,
        "bump",
        "Counting",
        "Counting",
        {"event": {"step": 3}, "changes": {"count": 4, "last_step": 3}, "emitted": ["tick"]},
    )
    assert fired.emissions == (Emission("tick", {"count": 4}),)


def test_guards_pick_the_branch_of_a_shared_trigger(counter_engine: Engine, store: Store) -> None:
    _counting(counter_engine, limit=3)

    fired = counter_engine.fire("m1", "bump", {"step": 2})

    assert (fired.journal.src, fired.journal.dst, fired.row.state) == ("Counting", "Done", "Done")
    assert [row.kind for row in read_emitted(store.conn, "m1")][-2:] == ["tick", "done"]


def test_a_transition_without_a_decider_changes_only_the_state(counter_engine: Engine) -> None:
    _counting(counter_engine)
    data = counter_engine.load("m1").data

    fired = counter_engine.fire("m1", "pause")

    assert (fired.row.state, fired.row.data, fired.journal.payload["changes"]) == ("Paused", data, {})


def test_one_engine_fires_on_instances_in_different_states(counter_engine: Engine) -> None:
    """Each fire starts from its own instance's stored state, whatever the engine fired before."""
    _counting(counter_engine, "m1")
    _counting(counter_engine, "m2")
    counter_engine.fire("m1", "pause")

    with pytest.raises(TransitionNotAllowed, match="from 'Paused'"):
        counter_engine.fire("m1", "bump")
    assert counter_engine.fire("m2", "bump").journal.src == "Counting"
    with pytest.raises(TransitionNotAllowed, match="from 'Counting'"):
        counter_engine.fire("m2", "resume")
    assert counter_engine.fire("m1", "resume").row.state == "Counting"


def test_loading_runs_no_callback_and_never_resets_the_state(store: Store) -> None:
    """Another engine on another connection sees the instance as stored; no guard or decider runs."""
    calls: Counter[str] = Counter()
    engine = Engine(counter_machine(calls), store)
    _counting(engine)
    before, row = _snapshot(store), engine.load("m1")
    calls.clear()

    with open_store(store.path) as other_store:
        other = Engine(counter_machine(calls), other_store)
        assert other.load("m1") == row
        assert engine.load("m1") == row
        assert engine.find("m1") == row
        assert (calls, _snapshot(store)) == (Counter(), before)
        assert other.fire("m1", "pause").journal.src == "Counting"


def test_freezegun_controls_every_stored_timestamp(counter_engine: Engine, store: Store) -> None:
    with freeze_time("2030-01-02 03:04:05.678901") as frozen:
        counter_engine.create("m1", new_counter_data())
        frozen.tick(timedelta(seconds=90))
        counter_engine.fire("m1", "start")

    created, started = "2030-01-02T03:04:05.678901+00:00", "2030-01-02T03:05:35.678901+00:00"
    assert _stored_times(store) == (created, started, [created, started], [started])


def test_an_injected_clock_gives_every_stored_timestamp_in_utc(store: Store) -> None:
    """The engine reads its own clock (not the frozen one), once per write, and stores UTC."""
    plus_two = timezone(timedelta(hours=2))
    times = iter(
        [datetime(2031, 6, 1, 14, 0, tzinfo=plus_two), datetime(2031, 6, 1, 12, 30, 0, 5, tzinfo=UTC)]
    )
    engine = Engine(COUNTER, store, clock=lambda: next(times))

    with freeze_time("2000-01-01"):
        engine.create("m1", new_counter_data())
        engine.fire("m1", "start")

    created, started = "2031-06-01T12:00:00.000000+00:00", "2031-06-01T12:30:00.000005+00:00"
    assert _stored_times(store) == (created, started, [created, started], [started])


def _stored_times(store: Store) -> tuple[str, str, list[str], list[str]]:
    created_at, updated_at = store.conn.execute("SELECT created_at, updated_at FROM machines").fetchone()
    journal = [at for (at,) in store.conn.execute("SELECT at FROM journal ORDER BY seq")]
    emitted = [at for (at,) in store.conn.execute("SELECT created_at FROM emitted ORDER BY id")]
    return created_at, updated_at, journal, emitted


def test_emissions_are_stored_under_deterministic_idempotency_keys(
    counter_engine: Engine, store: Store
) -> None:
    """Key ``machine/seq/position/kind``: two emissions of one kind in one transition are both stored."""
    _counting(counter_engine)

    fired = counter_engine.fire("m1", "burst")

    stored = [(r.idem_key, r.seq, r.position, r.kind, r.payload) for r in read_emitted(store.conn, "m1")]
    assert stored == [
        ("m1/1/0/started", 1, 0, "started", {}),
        ("m1/2/0/tick", 2, 0, "tick", {"count": 1}),
        ("m1/3/0/tick", 3, 0, "tick", {"count": 2}),
        ("m1/3/1/tick", 3, 1, "tick", {"count": 3}),
    ]
    assert fired.journal.payload["emitted"] == ["tick", "tick"]
    assert idempotency_key("m1", 3, 1, "tick") == "m1/3/1/tick"


def test_an_undeclared_emission_kind_is_refused_and_nothing_is_stored(
    counter_engine: Engine, store: Store
) -> None:
    _counting(counter_engine)
    before = _snapshot(store)

    with pytest.raises(UndeclaredEmission, match=r"'smuggle' emitted undeclared kinds \['contraband'\]"):
        counter_engine.fire("m1", "smuggle")

    assert _snapshot(store) == before


def test_a_stale_expected_version_raises_concurrent_update_and_stores_nothing(
    counter_engine: Engine, store: Store
) -> None:
    _counting(counter_engine)
    seen = counter_engine.load("m1").version
    counter_engine.fire("m1", "bump")
    before = _snapshot(store)

    with pytest.raises(ConcurrentUpdate, match="version 3, not 2"):
        counter_engine.fire("m1", "bump", expected_version=seen)

    assert _snapshot(store) == before
    assert counter_engine.fire("m1", "bump", expected_version=seen + 1).row.version == seen + 2


def test_firing_from_a_known_row_reads_nothing_and_stores_what_a_load_would(
    counter_engine: Engine, store: Store
) -> None:
    _counting(counter_engine)
    known = counter_engine.load("m1")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)

    fired = counter_engine.fire("m1", "bump", {"step": 3}, known=known)

    store.conn.set_trace_callback(None)
    assert not [sql for sql in statements if sql.startswith("SELECT")]
    assert fired.row == counter_engine.load("m1")
    assert (fired.row.version, fired.row.data["count"]) == (known.version + 1, known.data["count"] + 3)
    assert read_journal(store.conn, "m1")[-1] == fired.journal


def test_a_known_row_that_moved_on_raises_concurrent_update_and_stores_nothing(
    counter_engine: Engine, store: Store
) -> None:
    _counting(counter_engine)
    stale = counter_engine.load("m1")
    counter_engine.fire("m1", "bump")
    before = _snapshot(store)

    with pytest.raises(ConcurrentUpdate):
        counter_engine.fire("m1", "bump", known=stale)
    with pytest.raises(ValueError, match="'m1' was given to fire 'm2'"):
        counter_engine.fire("m2", "bump", known=stale)

    assert _snapshot(store) == before


def test_allowed_triggers_lists_each_trigger_once_in_declared_order(counter_engine: Engine) -> None:
    assert counter_engine.allowed_triggers("Counting") == ["bump", "burst", "smuggle", "pause", "abort"]
    assert counter_engine.allowed_triggers("Done") == []
