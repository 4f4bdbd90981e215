"""Shapes of the rows the store reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EmittedRow", "JournalRow", "MachineRow"]


@dataclass(frozen=True)
class MachineRow:
    """One persisted state-machine instance."""

    id: str
    kind: str
    state: str
    version: int
    data: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class JournalRow:
    """One committed transition of an instance; ``seq`` 0 records its creation."""

    machine_id: str
    seq: int
    at: str
    trigger: str
    src: str | None
    dst: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class EmittedRow:
    """One item a transition emitted, keyed by a deterministic idempotency key."""

    id: int
    idem_key: str
    machine_id: str
    seq: int
    position: int
    kind: str
    payload: dict[str, Any]
    created_at: str
