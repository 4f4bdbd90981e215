"""
Replaying an instance's journal: the state and data it implies, computed from the journal alone.

Replay checks that each row starts where the previous one ended and follows a transition the spec
allows, then applies the recorded data changes. SPEC.md §6 invariant 4: the stored row must equal
its replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsm.engine import CREATE_TRIGGER
from fsm.errors import FsmError
from fsm.spec import MachineSpec
from persistence.rows import JournalRow, MachineRow

__all__ = ["JournalMismatch", "Replayed", "replay_journal", "verify_replay"]


class JournalMismatch(FsmError):
    """A journal does not replay, or replays to something other than the stored row."""

    code = "journal_mismatch"


@dataclass(frozen=True)
class Replayed:
    """The state, data and version a journal implies."""

    state: str
    data: dict[str, Any]
    version: int


def replay_journal(spec: MachineSpec, journal: list[JournalRow]) -> Replayed:
    """
    Recompute an instance from its journal.

    Raises:
        JournalMismatch: the journal is empty, has gaps, or records a move the spec does not allow.
    """
    if not journal or journal[0].trigger != CREATE_TRIGGER or journal[0].seq != 0:
        raise JournalMismatch("journal does not start with its creation row")
    edges = {(source, t.trigger, t.dest) for t in spec.transitions for source in t.sources}
    state, data = journal[0].dst, dict(journal[0].payload["data"])
    for expected_seq, row in enumerate(journal[1:], start=1):
        if row.seq != expected_seq:
            raise JournalMismatch(
                f"journal of {row.machine_id!r} jumps to seq {row.seq} (expected {expected_seq})"
            )
        if row.src != state or (row.src, row.trigger, row.dst) not in edges:
            raise JournalMismatch(
                f"seq {row.seq} of {row.machine_id!r}: {row.src} --{row.trigger}--> {row.dst} "
                f"does not follow from {state}"
            )
        state = row.dst
        data.update(row.payload["changes"])
    return Replayed(state, data, journal[-1].seq)


def verify_replay(spec: MachineSpec, row: MachineRow, journal: list[JournalRow]) -> None:
    """
    Check that the stored row equals what its journal replays to.

    Raises:
        JournalMismatch: naming what differs.
    """
    replayed = replay_journal(spec, journal)
    stored = Replayed(row.state, row.data, row.version)
    if replayed != stored:
        raise JournalMismatch(f"{row.id!r}: stored {stored} but journal replays to {replayed}")
