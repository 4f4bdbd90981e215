"""An executor's hold on one request: taken, renewed with every record, released at the end."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from failover.errors import FailoverError
from fsm.clock import format_time
from persistence.leases import renew_lease

__all__ = ["Lease", "LeaseLost"]


class LeaseLost(FailoverError):
    """The lease expired and another executor took the request: stop working on it."""

    code = "lease_lost"


@dataclass(frozen=True)
class Lease:
    """
    A request held by one executor.

    Args:
        request_id: the request.
        owner: the executor's name.
        seconds: how long each renewal lasts.
    """

    request_id: int
    owner: str
    seconds: float

    def expiry(self, now: datetime) -> str:
        """The expiry of a lease taken or renewed at ``now``."""
        return format_time(now + timedelta(seconds=self.seconds))

    def renew(self, conn: sqlite3.Connection, now: datetime) -> None:
        """
        Extend the lease, inside the caller's transaction.

        Raises:
            LeaseLost: the request is no longer ours.
        """
        if not renew_lease(conn, self.request_id, self.owner, self.expiry(now)):
            raise LeaseLost(f"request {self.request_id}: lease of {self.owner} lost")
