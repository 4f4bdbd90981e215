"""
Named crash points: every durability boundary can kill the process on the spot, on demand.

Code marks a boundary with ``crash_point("after-commit:upload:failed_over")``. Nothing happens unless
the point is armed, by the environment or by :func:`arm`:

- ``FAILOVER_CRASH_AT=name`` kills at the first hit of ``name``; ``name@3`` at its third hit; several
  points may be listed, comma-separated. The process dies with ``os._exit(CRASH_EXIT_CODE)``: no
  ``finally``, no atexit, no flush, like a power cut for the process.
- ``FAILOVER_CRASH_LOG=file`` appends every point hit, one per line (``name``), so a dry run lists
  the points a scenario meets, in order; a crash matrix is generated from that list.

The environment is read once, at the first crash point a process meets, and again at the first one a
forked child meets (so a child may set its own variables right after ``fork``); hits count from there.
Crash points sit on every hot path, and reading the environment costs more than the rest of a hit.
Within a running process, arm with :func:`arm`.

Names: ``before-commit:<machine>:<trigger>`` / ``after-commit:<machine>:<trigger>`` around each
transition's commit, ``before-<effect>`` / ``after-<effect>`` around each side effect (``put``,
``register``, ``copy``, ``register-replica``, ``remove-catalog-replica``, ``remove-replica``,
``register-file``, ``remove-file``, ``record``, ``commit-request``); ``mid-write`` once the first range of a
big object is written to its temporary name (a put or a copy killed half-way).
"""

from __future__ import annotations

import os
from collections import Counter

__all__ = ["CRASH_AT", "CRASH_EXIT_CODE", "CRASH_LOG", "arm", "crash_point", "disarm", "hits"]

#: Environment variable arming crash points.
CRASH_AT = "FAILOVER_CRASH_AT"
#: Environment variable naming a file that records every crash point hit.
CRASH_LOG = "FAILOVER_CRASH_LOG"
#: The exit status of a process killed at a crash point.
CRASH_EXIT_CODE = 86

_armed: dict[str, int] = {}
_hits: Counter[str] = Counter()
_env_read = False
_log: str | None = None


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        armed[name] = int(nth) if nth else 1
    return armed


def arm(name: str, nth: int = 1) -> None:
    """Kill the process at the ``nth`` hit of crash point ``name`` (counting from now)."""
    _armed[name] = _hits[name] + nth


def disarm() -> None:
    """Disarm every crash point armed through :func:`arm` and forget the hit counts."""
    _armed.clear()
    _hits.clear()


def hits() -> Counter[str]:
    """How often each crash point was hit in this process."""
    return Counter(_hits)


def _read_env() -> None:
    global _env_read, _log
    _env_read = True
    _log = os.environ.get(CRASH_LOG) or None
    # Count from now, like arm(): a forked child inherits its parent's hit counts.
    for name, nth in _parse(os.environ.get(CRASH_AT, "")).items():
        _armed[name] = _hits[name] + nth


def _forget_env() -> None:
    global _env_read
    _env_read = False


os.register_at_fork(after_in_child=_forget_env)


def crash_point(name: str) -> None:
    """Mark a durability boundary; kill the process here if this hit of ``name`` is armed."""
    if not _env_read:
        _read_env()  # before counting this hit, so a point armed just now fires at its first hit
    _hits[name] += 1
    if _log is not None:
        with open(_log, "a", encoding="utf-8") as stream:
            stream.write(name + "\n")
    if _armed.get(name) == _hits[name]:
        os._exit(CRASH_EXIT_CODE)
