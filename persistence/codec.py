"""Deterministic JSON for stored payloads: sorted keys, compact, so equal data gives equal text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "dumps_one_key", "loads"]

# ``json.dumps`` with options builds a new encoder on every call, which costs about as much as
# encoding a small payload; the encoder is stateless, so one shared instance is thread-safe.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """Encode ``value`` as canonical JSON text."""
    return _ENCODER.encode(value)


def dumps_one_key(key: str, encoded: str) -> str:
    """
    Encode ``{key: value}`` from ``value``'s text as :func:`dumps` gave it: equal to ``dumps({key: value})``
    without encoding ``value`` a second time.
    """
    return "{" + _ENCODER.encode(key) + ":" + encoded + "}"


def loads(text: str) -> Any:
    """Decode JSON text written by :func:`dumps`."""
    return json.loads(text)
