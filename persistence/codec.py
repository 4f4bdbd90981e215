"""Deterministic JSON for stored payloads: sorted keys, compact, so equal data gives equal text."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]


def dumps(value: Any) -> str:
    """Encode ``value`` as canonical JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Any:
    """Decode JSON text written by :func:`dumps`."""
    return json.loads(text)
