"""Replaying a journal: it recomputes the stored row from the journal alone, and catches tampering."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from machines.counter import COUNTER, Boom, new_counter_data

from fsm import Engine, JournalMismatch, Replayed, TransitionNotAllowed, replay_journal, verify_replay
from fsm.errors import UndeclaredEmission
from persistence import Store, open_store
from persistence.journal import read_journal

#: Triggers (valid, refused and unknown), weighted towards moving the counter.
_TRIGGERS = st.sampled_from(["bump", "bump", "bump", "burst", "pause", "resume", "start", "smuggle", "nope"])
#: Events: steps (some pass the limit, so every guard refuses), none, or a callback that raises.
_EVENTS = st.sampled_from([{}, {"step": 1}, {"step": 2}, {"step": 4}, {"fail": "guard"}, {"fail": "decide"}])
_HISTORIES = st.lists(st.tuples(_TRIGGERS, _EVENTS), min_size=10, max_size=40)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(limit=st.integers(3, 30), fires=_HISTORIES, abort=st.booleans())
def test_replay_of_a_random_history_equals_the_stored_row(
    limit: int, fires: list[tuple[str, dict[str, Any]]], abort: bool
) -> None:
    """Committed, refused and failing fires mixed: the journal alone still gives the stored row."""
    with open_store(":memory:") as store:
        engine = Engine(COUNTER, store)
        engine.create("m1", new_counter_data(limit))
        committed = 0
        ending = [("abort", {"reason": "enough"})] if abort else []
        for trigger, event in [("start", {}), *fires, *ending]:
            try:
                engine.fire("m1", trigger, event)
                committed += 1
            except (TransitionNotAllowed, UndeclaredEmission, Boom):
                pass
        row, journal = engine.load("m1"), read_journal(store.conn, "m1")

        assert (row.version, len(journal)) == (committed, committed + 1)
        verify_replay(COUNTER, row, journal)


def test_replay_recomputes_state_data_and_version(counter_history: Store) -> None:
    replayed = replay_journal(COUNTER, read_journal(counter_history.conn, "m1"))

    data = {"count": 5, "limit": 10, "label": None, "last_step": 1, "resumes": 1}
    assert replayed == Replayed("Counting", data, 6)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE journal SET dst = 'Done' WHERE seq = 2", r"seq 3 .* does not follow from Done"),
        ("UPDATE journal SET dst = 'Done' WHERE seq = 6", r"stored .* but journal replays to .*'Done'"),
        ("UPDATE journal SET src = 'Paused' WHERE seq = 3", r"seq 3 .*Paused --burst--> Counting"),
        ("UPDATE journal SET trigger = 'pause' WHERE seq = 3", r"seq 3 .*--pause--> Counting"),
        ("DELETE FROM journal WHERE seq = 4", r"jumps to seq 5 \(expected 4\)"),
        ("DELETE FROM journal WHERE seq = 6", r"stored .* but journal replays to"),
        ("DELETE FROM journal WHERE seq = 0", r"does not start with its creation row"),
        (
            "UPDATE journal SET payload = json_set(payload, '$.changes.count', 99) WHERE seq = 6",
            r"stored .* but journal replays to .*'count': 99",
        ),
        (
            "UPDATE journal SET payload = json_remove(payload, '$.changes.resumes') WHERE seq = 5",
            r"stored .* but journal replays to",
        ),
    ],
    ids=[
        "changed-dst",
        "changed-last-dst",
        "changed-src",
        "changed-trigger",
        "removed-row",
        "removed-last-row",
        "removed-creation",
        "changed-changes",
        "dropped-change",
    ],
)
def test_a_tampered_journal_does_not_verify(counter_history: Store, tamper: str, message: str) -> None:
    row = Engine(COUNTER, counter_history).load("m1")
    verify_replay(COUNTER, row, read_journal(counter_history.conn, "m1"))

    counter_history.conn.execute(tamper)

    with pytest.raises(JournalMismatch, match=message):
        verify_replay(COUNTER, row, read_journal(counter_history.conn, "m1"))
