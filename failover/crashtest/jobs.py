"""
The steps scenarios are made of: the job's files, its client, phases of faults, uploads, executor
passes and operator checks, each safe to run again after a crash.

Every step is idempotent or guarded by the durable state: uploads continue by LFN (a Failed one is
left alone: calling again would start a new generation, as a new job would), the client has a fixed
key, ``commitRequest`` and ``Executor.run_once`` are idempotent, and the checks read the database.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from failover.crashtest.sandbox import CATALOG, Sandbox
from failover.dirac import FailoverTransfer
from failover.executor import Executor, ExecutorPolicy
from failover.request import RequestStatus
from failover.resume import resume
from failover.testing import Fault
from persistence.requests import find_request
from states import UploadState

__all__ = [
    "GUIDS",
    "ONE_TRY",
    "POLICY",
    "JobFile",
    "Upload",
    "client",
    "down",
    "execute",
    "failover_only",
    "job_files",
    "job_lfn",
    "job_request_ended",
    "stuck",
    "back_after",
    "to",
    "to_retrying",
    "upload_phase",
    "with_failover",
]

#: Retries at once and leases that expire at once: a restart never waits for a crashed executor.
POLICY = ExecutorPolicy(backoff_base=0, jitter=0, lease_seconds=0)
#: Executor passes meant to fail: one try per file, then the file and its request are Failed.
ONE_TRY = ExecutorPolicy(backoff_base=0, jitter=0, lease_seconds=0, max_attempts=1)
#: The namespace of the jobs' fixed GUIDs (uuid5 of the LFN), so runs in different directories compare.
GUIDS = uuid.UUID("5d6b9c1e-0f4a-4c2e-9a57-3b1f2e8d7c60")


@dataclass(frozen=True)
class JobFile:
    """One output file of a scenario's job: where it is, its LFN, and its fileMetaDict (a fixed GUID)."""

    name: str
    path: str
    lfn: str
    meta: dict[str, Any]


def job_lfn(name: str, index: int) -> str:
    """The LFN of a job's ``index``-th file (from 1)."""
    return f"/vo/crashtest/{name}/out{index}.root"


def job_files(box: Sandbox, name: str, count: int, size: int | None = None) -> list[JobFile]:
    """
    The job's output files (written on first use), each with its own content and a fixed GUID: a few
    hundred bytes, or ``size`` bytes of seeded random data.
    """
    files = []
    for index in range(1, count + 1):
        path = box.home / "job" / name / f"out{index}.root"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            small = f"{name}: output file {index}\n".encode() * (40 * index)
            path.write_bytes(small if size is None else random.Random(f"{name}{index}").randbytes(size))
        lfn = job_lfn(name, index)
        guid = str(uuid.uuid5(GUIDS, lfn)).upper()
        files.append(JobFile(path.name, str(path), lfn, {"GUID": guid}))
    return files


def client(box: Sandbox, name: str) -> FailoverTransfer:
    """The job's client: the same client key in every process, so the request continues."""
    return FailoverTransfer(environment=box.env, client_key=f"crashtest:{name}")


@contextmanager
def down(
    box: Sandbox,
    *targets: str,
    fault: Fault | None = None,
    operation: str | None = None,
    lfn: str | None = None,
) -> Iterator[None]:
    """SEs or catalogs failing on every call (for ``lfn`` alone if given) for a phase, then back."""
    for target in targets:
        kind = fault or (Fault.CATALOG_UNAVAILABLE if target == CATALOG else Fault.STORAGE_UNAVAILABLE)
        box.faults.inject(target, kind, operation=operation, times=None, lfn=lfn)
    try:
        yield
    finally:
        for target in targets:
            box.faults.clear(target)


Upload = Callable[[FailoverTransfer, JobFile], object]


def upload_phase(box: Sandbox, name: str, calls: list[Upload], size: int | None = None) -> None:
    """
    Resume what a crash interrupted, upload each file (``calls[i]`` for file i; of ``size`` bytes if
    given, see :func:`job_files`), commit the request.
    """
    resume(box.env, remove_temporary=True)
    ft = client(box, name)
    for call, file in zip(calls, job_files(box, name, len(calls), size), strict=True):
        row = box.env.uploads.find(file.lfn)
        if row is None or row.state != UploadState.FAILED:
            call(ft, file)
    ft.commitRequest()


def execute(box: Sandbox, policy: ExecutorPolicy = POLICY) -> None:
    """One executor pass over every due request, by a new executor (a restart starts another one)."""
    Executor(box.env, policy, seed=0).run_once()


def to(*ses: str) -> Upload:
    """``transferAndRegisterFile`` to these destination SEs."""
    return lambda ft, f: ft.transferAndRegisterFile(f.name, f.path, f.lfn, list(ses), f.meta)


def to_retrying(se: str) -> Upload:
    """``transferAndRegisterFile`` to one SE with ``retryUpload=True``: transient failures retried there."""
    return lambda ft, f: ft.transferAndRegisterFile(f.name, f.path, f.lfn, [se], f.meta, retryUpload=True)


def back_after(box: Sandbox, se: str, lfns: Sequence[str], attempts: int) -> None:
    """
    Make ``se`` come back once ``attempts`` failed puts there are stored for each of ``lfns``.

    The put retry waits through the environment's sleeper, so this sleeper (which never sleeps) decides
    from the durable attempt counts, not from a count in this process: every restart sees the same outage.
    """

    def sleep(seconds: float) -> None:
        rows = [box.env.uploads.find(lfn) for lfn in lfns]
        if all(row is not None and row.data["attempts"].get(se, 0) >= attempts for row in rows):
            box.faults.clear(se)

    box.env.sleeper = sleep


def with_failover(destination: str, failover: str) -> Upload:
    """``transferAndRegisterFileWithFailover``: the destination first, then the failover SE."""
    return lambda ft, f: ft.transferAndRegisterFileWithFailover(
        f.name, f.path, f.lfn, destination, failover, f.meta
    )


def failover_only(target: str, failover: str) -> Upload:
    """``transferAndRegisterFileFailover``: straight to the failover SE, replicated to the target later."""
    return lambda ft, f: ft.transferAndRegisterFileFailover(f.name, f.path, f.lfn, target, failover, f.meta)


def job_request_ended(box: Sandbox, name: str) -> bool:
    """The job's own request has ended (Done, Failed or Canceled)."""
    row = find_request(box.env.store.conn, f"crashtest:{name}")
    return row is not None and RequestStatus(row.status).is_final


def stuck(box: Sandbox, lfn: str) -> bool:
    """The LFN's upload is Stuck."""
    return box.env.uploads.load(lfn).state == UploadState.STUCK
