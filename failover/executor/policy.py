"""How the executor retries: declared as data, timed by the injected clock, jittered by a seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ExecutorPolicy"]


@dataclass(frozen=True)
class ExecutorPolicy:
    """
    Retry, backoff and lease settings of the request executor.

    Args:
        max_attempts: tries per file before it is Failed with "(Max attempts limit reached)".
        backoff_base: seconds before the first retry.
        backoff_factor: growth of the delay per attempt.
        backoff_cap: the longest delay.
        jitter: the delay varies by up to this fraction either way, so retries of many requests spread out.
        lease_seconds: how long a taken request stays Assigned without renewal.
        batch_size: requests taken per transaction; failover requests among them run together, with
            one catalog commit and one store commit per round, each with up to this many of its pairs
            (1: every request alone, one operation at a time).
        round_bytes: a request's pairs after its first join a round only while their files total at
            most this many bytes; a round's copies are made in chunks of about this size, and its leases
            renewed between chunks once a third of their time has passed.
    """

    max_attempts: int = 10
    backoff_base: float = 60.0
    backoff_factor: float = 2.0
    backoff_cap: float = 3600.0
    jitter: float = 0.1
    lease_seconds: float = 300.0
    batch_size: int = 32
    round_bytes: int = 64 << 20

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.backoff_cap, self.backoff_base * self.backoff_factor ** max(0, attempt - 1))
        return min(self.backoff_cap, raw * (1 + self.jitter * (2 * rng.random() - 1)))
