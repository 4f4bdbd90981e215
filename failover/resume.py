"""
Resuming after a crash: drive every unfinished upload on, and commit the requests left as drafts.

A process that died mid-upload left its machine in Uploading (its stored state says which SE and
attempt come next) and maybe a draft request whose operations were already durable. :func:`resume`
finishes both: nothing is uploaded twice (puts find identical objects), nothing is lost. Uploads are
driven in batches (:func:`~failover.batch.drive_many`: one commit per batch for what can go at once).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from failover.batch import drive_many
from failover.environment import Environment
from failover.errors import FailoverError, StorageUnavailable, UploadInterrupted
from failover.uploads import UploadResult
from persistence.machines import iter_machines
from persistence.rows import MachineRow
from states import UPLOAD_MACHINE, UploadState

log = logging.getLogger("failover")

__all__ = [
    "ResumeReport",
    "draft_requests",
    "resume",
    "unfinished_upload_ids",
    "unfinished_uploads",
    "upload_ids_in",
]


@dataclass
class ResumeReport:
    """What :func:`resume` did."""

    finished: list[UploadResult] = field(default_factory=list)
    failed: dict[str, FailoverError] = field(default_factory=dict)
    committed: list[int] = field(default_factory=list)
    temporary_removed: int = 0
    #: SEs whose temporary files could not be looked for (down, not mounted), with why: the next
    #: ``resume --remove-temporary`` or ``fsck`` finds what is left there.
    temporary_not_removed: dict[str, str] = field(default_factory=dict)
    #: Uploads not driven because ``stopping`` was set: still in flight, for the next resume.
    left: int = 0


def unfinished_uploads(env: Environment) -> list[MachineRow]:
    """Every upload still in Uploading, in id order."""
    return list(iter_machines(env.store.conn, UPLOAD_MACHINE.name, [UploadState.UPLOADING.value]))


def unfinished_upload_ids(env: Environment) -> list[str]:
    """The ids of every upload still in Uploading: one indexed query, no data decoded (fast for 100k)."""
    return upload_ids_in(env, UploadState.UPLOADING)


def upload_ids_in(env: Environment, state: UploadState) -> list[str]:
    """The ids of every upload in ``state``, in id order: one indexed query, no data decoded."""
    rows = env.store.conn.execute(
        "SELECT id FROM machines WHERE kind = ? AND state = ? ORDER BY id", (UPLOAD_MACHINE.name, state.value)
    )
    return [machine_id for (machine_id,) in rows]


def draft_requests(env: Environment) -> list[int]:
    """Requests never committed whose uploads have all left Uploading (their clients are gone or done)."""
    rows = env.store.conn.execute(
        "SELECT r.id FROM requests r WHERE r.committed_at IS NULL AND NOT EXISTS ("
        "SELECT 1 FROM operations o JOIN machines m ON m.id = o.machine_id "
        "WHERE o.request_id = r.id AND m.state = ?) ORDER BY r.id",
        (UploadState.UPLOADING.value,),
    )
    return [request_id for (request_id,) in rows]


def resume(
    env: Environment,
    *,
    commit_drafts: bool = True,
    remove_temporary: bool = False,
    stopping: threading.Event | None = None,
) -> ResumeReport:
    """
    Drive every unfinished upload on, then commit the draft requests left behind.

    Args:
        env: the environment the uploads ran in.
        commit_drafts: commit requests that were never committed (do not use while clients still run).
        remove_temporary: first delete the temporary names interrupted puts left on the SEs (only when no
            other process is uploading to them: a running put's temporary name looks the same). An SE
            that does not answer is passed over (``temporary_not_removed``) and the uploads still driven.
        stopping: once set (by a signal handler, say), the batch being driven is finished and the other
            uploads are left in flight (counted in ``left``); the drafts whose uploads all ended are
            still committed.

    Returns:
        What was finished, what failed (by machine id), what was left, which requests were committed.
    """
    report = ResumeReport()
    if remove_temporary:
        for name, se in env.storage.items():
            try:
                report.temporary_removed += se.remove_temporary()
            except StorageUnavailable as err:
                log.warning("temporary files at %s not removed: %s", name, err)
                report.temporary_not_removed[name] = str(err)
    machine_ids = unfinished_upload_ids(env)
    outcomes = drive_many(env, machine_ids, stopping=stopping)
    stopped = stopping is not None and stopping.is_set()
    for machine_id, outcome in zip(machine_ids, outcomes, strict=True):
        if stopped and isinstance(outcome, UploadInterrupted):
            report.left += 1
        elif isinstance(outcome, FailoverError):
            report.failed[machine_id] = outcome
        else:
            report.finished.append(outcome)
    if commit_drafts:
        for request_id in draft_requests(env):
            if env.requests.commit(request_id):
                report.committed.append(request_id)
    return report
