"""
The engine's notion of time: an injectable clock, so freezegun (or a test's own clock) controls it.

Every stored timestamp is produced here in Python, never by SQLite's ``CURRENT_TIMESTAMP``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "format_time", "parse_time", "utc_now"]

#: A clock returns the current time as an aware UTC datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time in UTC (what freezegun freezes)."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Format a datetime as stored: ISO 8601 in UTC with microseconds, which sorts as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_time`."""
    return datetime.fromisoformat(text)
