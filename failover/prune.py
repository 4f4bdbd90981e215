"""
Prune the workspace: forget the uploads and requests that ended long enough ago.

Every upload keeps its machine, journal and emitted operations, every request its operations and
files, so a service's database grows with every file it ever handled (DIRAC's request database is
kept small the same way, by deleting old finished requests). :func:`prune` deletes what ended before
a cutoff, in one transaction: uploads Registered, Cleaned or Failed and requests Done, Failed or
Canceled, each only with the requests or uploads it shares operations with (nothing left points at
what is gone). Nothing else is touched: not the catalogs, which keep every file's entry and replicas,
nor the storage. Afterwards ``status`` and ``history`` know nothing of a pruned upload, and the same
LFN uploaded again starts a new upload (the catalog then tells whether it is already there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from failover.environment import Environment
from failover.request import RequestStatus
from fsm.clock import format_time
from fsm.crashpoints import crash_point
from persistence.prune import delete_pruned, find_prunable
from states import UPLOAD_MACHINE

__all__ = ["PruneReport", "prune"]


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` deleted (or, in a dry run, would delete)."""

    #: The cutoff: what last changed before it.
    before: str
    uploads: int
    requests: int
    dry_run: bool


def prune(env: Environment, *, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """
    Delete the uploads and requests that ended before ``older_than`` ago (see the module's docstring).

    Args:
        env: the workspace.
        older_than: how long ago they must have last changed; not negative.
        dry_run: count them, delete nothing.

    Returns:
        The cutoff and the counts.

    Raises:
        ValueError: ``older_than`` is negative.
        StoreError: the database could not be used (nothing is deleted).
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, not {older_than}")
    before = format_time(env.clock() - older_than)
    # The write lock first: nothing can finish or restart between the search and the deletion.
    with env.store.transaction() as conn:
        machines, requests = find_prunable(
            conn,
            before=before,
            machine_kind=UPLOAD_MACHINE.name,
            final_states=sorted(UPLOAD_MACHINE.finals),
            final_statuses=sorted(status.value for status in RequestStatus if status.is_final),
        )
        if not dry_run:
            delete_pruned(conn, machines, requests)
            crash_point("before-commit:prune")
    if not dry_run:
        crash_point("after-commit:prune")
    return PruneReport(before, len(machines), len(requests), dry_run)
