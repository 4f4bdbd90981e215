"""
The bytes puts copy, told as they go to whoever shows progress (the CLI's bar).

A put has no callback of its own: the listener is set for a stretch of code with :func:`reporting_bytes`
and hears every chunk any put copies in that thread (a put retried at another SE is heard again). Worker
threads and processes do not inherit it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["bytes_copied", "reporting_bytes"]

BytesListener = Callable[[int], None]

_listener: ContextVar[BytesListener | None] = ContextVar("failover_put_bytes", default=None)


@contextmanager
def reporting_bytes(listener: BytesListener) -> Iterator[None]:
    """
    Tell ``listener`` how many bytes each chunk of a put carries, for puts run inside the block.

    Args:
        listener: called with a chunk's size once it is written; it must be quick and must not raise.
    """
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def bytes_copied(count: int) -> None:
    """Tell the listener of this context, if any, that a put wrote ``count`` more bytes."""
    listener = _listener.get()
    if listener is not None:
        listener(count)
