"""
Leases on requests: an executor takes a due request as Assigned until an expiry it keeps renewing.

Taking is one ``UPDATE ... WHERE id = (SELECT ...)`` inside ``BEGIN IMMEDIATE``, so two executors can
never take the same request; a lease whose expiry has passed makes the request eligible again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

__all__ = ["lease_owners", "release_request", "renew_lease", "take_due_requests"]


def take_due_requests(
    conn: sqlite3.Connection,
    owner: str,
    now: str,
    expires: str,
    exclude: Collection[int] = (),
    *,
    limit: int,
) -> list[int]:
    """
    Assign up to ``limit`` due requests to ``owner`` until ``expires``; return their ids, earliest
    NotBefore first, then by id.

    Due: committed, and either Waiting with NotBefore passed (or unset), or Assigned with an expired lease;
    and not one of ``exclude``.
    """
    skip = f" AND id NOT IN ({', '.join('?' * len(exclude))})" if exclude else ""
    # Two indexed look-ups (requests_due: status, not_before, id) instead of one OR over both kinds,
    # which made SQLite scan and sort every committed request on each take.
    waiting = conn.execute(
        "SELECT COALESCE(not_before, ''), id FROM requests WHERE committed_at IS NOT NULL "
        f"AND status = 'Waiting' AND (not_before IS NULL OR not_before <= ?){skip} "
        "ORDER BY not_before, id LIMIT ?",
        (now, *exclude, limit),
    ).fetchall()
    expired = conn.execute(
        "SELECT COALESCE(not_before, ''), id FROM requests WHERE committed_at IS NOT NULL "
        f"AND status = 'Assigned' AND lease_expires < ?{skip} ORDER BY not_before, id LIMIT ?",
        (now, *exclude, limit),
    ).fetchall()
    taken = [int(request_id) for _, request_id in sorted(waiting + expired)[:limit]]
    if taken:
        conn.execute(
            "UPDATE requests SET status = 'Assigned', lease_owner = ?, lease_expires = ?, last_update = ? "
            f"WHERE id IN ({', '.join('?' * len(taken))})",
            (owner, expires, now, *taken),
        )
    return taken


def lease_owners(conn: sqlite3.Connection, request_ids: Sequence[int]) -> dict[int, str]:
    """The executor holding each of ``request_ids`` that is Assigned now, by request id."""
    if not request_ids:
        return {}
    rows = conn.execute(
        f"SELECT id, lease_owner FROM requests WHERE id IN ({', '.join('?' * len(request_ids))}) "
        "AND status = 'Assigned'",
        tuple(request_ids),
    )
    return {int(request_id): owner for request_id, owner in rows}


def renew_lease(conn: sqlite3.Connection, request_id: int, owner: str, expires: str) -> bool:
    """Extend ``owner``'s lease; False when the lease was lost (expired and taken by another executor)."""
    cursor = conn.execute(
        "UPDATE requests SET lease_expires = ? WHERE id = ? AND status = 'Assigned' AND lease_owner = ?",
        (expires, request_id, owner),
    )
    return cursor.rowcount == 1


def release_request(
    conn: sqlite3.Connection,
    request_id: int,
    owner: str,
    status: str,
    now: str,
    *,
    error: str = "",
    not_before: str | None = None,
) -> bool:
    """
    Give a request back with its new status; False when ``owner`` no longer held it.

    A request canceled meanwhile is not Assigned any more, and keeps its Canceled status.
    """
    cursor = conn.execute(
        "UPDATE requests SET status = ?, error = ?, not_before = ?, last_update = ?, lease_owner = NULL, "
        "lease_expires = NULL WHERE id = ? AND lease_owner = ? AND status = 'Assigned'",
        (status, error, not_before, now, request_id, owner),
    )
    return cursor.rowcount == 1
