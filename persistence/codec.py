"""Deterministic JSON for stored payloads: sorted keys, compact, so equal data gives equal text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

# ``json.dumps`` with options builds a new encoder on every call, which costs about as much as
# encoding a small payload; the encoder is stateless, so one shared instance is thread-safe.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Encode ``value`` as canonical JSON text."""
    return _ENCODER.encode(value)


def loads(text: str) -> Any:
    """Decode JSON text written by :func:`dumps`."""
    return json.loads(text)
