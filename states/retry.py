"""Retry policy for puts, as data stored with each upload (no sleeping in library code)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIRAC_PUT_RETRY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """
    How often and how long to wait before trying the same SE again after a transient error.

    ``delays[i]`` is the wait before attempt ``i + 2``; there is no wait after the last attempt
    (DIRAC sleeps 600 s after it for nothing).

    Args:
        delays: seconds between consecutive attempts.
    """

    delays: tuple[float, ...] = (10.0, 60.0, 300.0)

    @property
    def max_attempts(self) -> int:
        """Attempts per SE: one more than there are waits."""
        return len(self.delays) + 1


#: DIRAC's schedule for ``retryUpload=True``: four attempts, waiting 10, 60 then 300 seconds.
DIRAC_PUT_RETRY = RetryPolicy()
