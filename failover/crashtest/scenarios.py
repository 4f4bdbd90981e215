"""
The crash matrix's scenarios: one job's work each, written so that running it again continues it.

A scenario is a function of a :class:`~failover.crashtest.sandbox.Sandbox`. Run again after a crash,
on the same directory, it first resumes what the crash interrupted
(``resume(env, remove_temporary=True)``), then goes through every phase again; each phase is
idempotent or skipped once done:

- uploads are idempotent by LFN (a call continues or reports the upload), except that a Failed upload
  is not called again: a new call would start a new generation, as a new job would;
- ``FailoverTransfer`` with a fixed client key, and its ``commitRequest``, are idempotent;
- ``Executor.run_once`` finds nothing due once the requests have ended;
- operator actions apply only to Stuck uploads, and the first executor pass of ``retry_after_stuck``
  only while the job's request has not ended.

Faults hold for a whole phase (``times=None``), so a phase's outcome does not depend on where a crash
fell. Scenarios never read DIRAC's result dicts (STYLE rule 7): what each must end with is declared in
:attr:`Scenario.expected` and checked on the crash-free run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from failover.batch import BatchItem, upload_many
from failover.catalog import FileEntry, Replica
from failover.crashtest.jobs import (
    GUIDS,
    ONE_TRY,
    JobFile,
    back_after,
    down,
    execute,
    failover_only,
    job_files,
    job_lfn,
    job_request_ended,
    stuck,
    to,
    to_retrying,
    upload_phase,
    with_failover,
)
from failover.crashtest.sandbox import CATALOG, Sandbox
from failover.operator import cancel_upload, retry_upload
from failover.request import RequestStatus
from failover.resume import resume
from persistence.requests import RequestHeader, client_requests
from states import UploadState

__all__ = ["SCENARIOS", "Scenario", "scenario"]


@dataclass(frozen=True)
class Scenario:
    """
    A job, re-entrant, and the upload states it must end with.

    Attributes:
        name: also the LFN directory and the request's client key.
        run: does (or continues) the job's work in a sandbox.
        expected: the final state of each file's upload, in file order.
        doc: what the scenario walks.
    """

    name: str
    run: Callable[[Sandbox], None]
    expected: tuple[UploadState, ...]
    doc: str

    def lfns(self) -> list[str]:
        """The LFNs of the job's files, in order."""
        return [job_lfn(self.name, index) for index in range(1, len(self.expected) + 1)]


def _direct(box: Sandbox) -> None:
    with down(box, "SE-B"):
        upload_phase(box, "direct", [to("SE-A"), to("SE-A"), to("SE-B", "SE-A")])


def _retry_same_se(box: Sandbox) -> None:
    (file,) = job_files(box, "retry_same_se", 1)
    back_after(box, "SE-A", [file.lfn], attempts=2)
    with down(box, "SE-A", operation="put"):
        upload_phase(box, "retry_same_se", [to_retrying("SE-A")])


def _deferred(box: Sandbox) -> None:
    with down(box, CATALOG):
        upload_phase(box, "deferred", [to("SE-A")] * 2)
    execute(box)


def _failover(box: Sandbox) -> None:
    with down(box, "SE-A"):
        upload_phase(box, "failover", [with_failover("SE-A", "FAIL-1")] * 2)
    execute(box)


def _failover_deferred(box: Sandbox) -> None:
    with down(box, "SE-A", CATALOG):
        upload_phase(box, "failover_deferred", [with_failover("SE-A", "FAIL-1")] * 2)
    execute(box)


def _replicate_remove(box: Sandbox) -> None:
    upload_phase(box, "replicate_remove", [failover_only("SE-A", "FAIL-1")] * 2)
    execute(box)


def _executor_meanwhile(box: Sandbox) -> None:
    # The executor is a daemon that runs all along; a pass right after the restarted job's resume (which
    # commits the draft request) stands for it, deterministically.
    resume(box.env, remove_temporary=True)
    execute(box)
    upload_phase(box, "executor_meanwhile", [failover_only("SE-A", "FAIL-1")] * 2)
    execute(box)


def _retry_after_stuck(box: Sandbox) -> None:
    name = "retry_after_stuck"
    upload_phase(box, name, [failover_only("SE-A", "FAIL-1")] * 3)
    if not job_request_ended(box, name):
        with down(box, "SE-A"):
            execute(box, ONE_TRY)
    *retried, cancelled = job_files(box, name, 3)
    for file in retried:
        if stuck(box, file.lfn):
            retry_upload(box.env, file.lfn)
    if stuck(box, cancelled.lfn):
        cancel_upload(box.env, cancelled.lfn)
    execute(box)


def _replica_unregistered(box: Sandbox) -> None:
    name = "replica_unregistered"
    upload_phase(box, name, [failover_only("SE-A", "FAIL-1")])
    if not job_request_ended(box, name):
        with down(box, CATALOG, operation="register_replica"):
            execute(box, ONE_TRY)
    (file,) = job_files(box, name, 1)
    if stuck(box, file.lfn):
        retry_upload(box.env, file.lfn)
    execute(box)


def _removal_stuck(box: Sandbox) -> None:
    name = "removal_stuck"
    upload_phase(box, name, [failover_only("SE-A", "FAIL-1")])
    with down(box, "FAIL-1", operation="remove"):
        execute(box, ONE_TRY)
    (file,) = job_files(box, name, 1)
    if stuck(box, file.lfn):
        cancel_upload(box.env, file.lfn)


def _many(box: Sandbox, name: str, count: int, batch_size: int = 2, **options: Any) -> None:
    """
    Resume, upload the job's files with ``upload_many`` in batches (to SE-A, then FAIL-1, unless
    ``options`` say otherwise), commit the request if any.
    """
    resume(box.env, remove_temporary=True)
    header = RequestHeader(f"crashtest:{name}", name, *box.env.request_owner)
    items = [
        BatchItem(file.path, file.lfn, file.meta)
        for file in job_files(box, name, count)
        if (upload := box.env.uploads.find(file.lfn)) is None or upload.state != UploadState.FAILED
    ]
    where = options or {"destinations": ["SE-A"], "failovers": ["FAIL-1"]}
    upload_many(box.env, items, request=header, batch_size=batch_size, **where)
    request = box.env.requests.find(header.client_key)
    if request is not None:
        box.env.requests.commit(request.id)


def _many_files(box: Sandbox) -> None:
    _many(box, "many_files", 5)


def _many_files_failover(box: Sandbox) -> None:
    with down(box, "SE-A"):
        _many(box, "many_files_failover", 3)
    execute(box)


def _one_request_stuck(box: Sandbox) -> None:
    name = "one_request_stuck"
    with down(box, "SE-A"):
        _many(box, name, 3)
    generations = client_requests(box.env.store.conn, f"crashtest:{name}")
    if not all(RequestStatus(row.status).is_final for row in generations):
        # One round takes every pair of the job's request: the copy of the file whose pair comes first
        # fails for good, the others were copied ahead and are removed again; the request fails and
        # leaves its uploads Stuck. (A crash in the uploads can split the job's request into two
        # generations, which resume committed apart: each one's first copy fails, so that every run
        # leaves all three Stuck.)
        with ExitStack() as faults:
            for row in generations:
                first = box.env.requests.load(row.id).operations[0].files[0].lfn
                faults.enter_context(down(box, "SE-A", operation="copy", lfn=first))
            execute(box, ONE_TRY)
    for file in job_files(box, name, 3):
        if stuck(box, file.lfn):
            retry_upload(box.env, file.lfn)
    execute(box)


def _many_files_retry(box: Sandbox) -> None:
    files = job_files(box, "many_files_retry", 3)
    back_after(box, "SE-A", [file.lfn for file in files], attempts=2)
    with down(box, "SE-A", operation="put"):
        _many(box, "many_files_retry", 3, batch_size=3, destinations=["SE-A"], retry_upload=True)


#: Big enough to be copied in ranges (by the kernel to a local SE, through Python SE to SE), so that
#: ``mid-write`` kills a put or a copy half-way.
BIG_FILE_SIZE = 20 * 1024 * 1024


def _big_files(box: Sandbox) -> None:
    (_, second) = job_files(box, "big_files", 2, BIG_FILE_SIZE)
    with down(box, "SE-A", operation="put", lfn=second.lfn):
        upload_phase(box, "big_files", [to("SE-A"), with_failover("SE-A", "FAIL-1")], BIG_FILE_SIZE)
    execute(box)


def _total_failure(box: Sandbox) -> None:
    with down(box, "SE-A", "SE-B"):
        upload_phase(box, "total_failure", [to("SE-A", "SE-B"), to()])


def _conflicting_entry(box: Sandbox, file: JobFile) -> None:
    """Another job registered the LFN with another GUID, at a site this sandbox does not hold."""
    entry = FileEntry(file.lfn, 1, "00000001", "ADLER32", str(uuid.uuid5(GUIDS, "other")).upper())
    box.raw.catalogs.get(CATALOG).register_file(entry, Replica(file.lfn, "ELSEWHERE", "root://elsewhere/x"))


def _refused(box: Sandbox) -> None:
    (file,) = job_files(box, "refused", 1)
    _conflicting_entry(box, file)
    upload_phase(box, "refused", [to("SE-A")])


def _registration_failed(box: Sandbox) -> None:
    with down(box, CATALOG):
        upload_phase(box, "registration_failed", [to("SE-A")])
    (file,) = job_files(box, "registration_failed", 1)
    _conflicting_entry(box, file)
    execute(box)


S = UploadState
#: Every scenario of the crash matrix, by name.
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("direct", _direct, (S.REGISTERED,) * 3, "uploaded; the third after its first SE failed"),
        Scenario(
            "retry_same_se",
            _retry_same_se,
            (S.REGISTERED,),
            "retryUpload on one SE: two transient failures, waits, then the put succeeds",
        ),
        Scenario("deferred", _deferred, (S.REGISTERED,) * 2, "registration deferred, then registered"),
        Scenario("failover", _failover, (S.CLEANED,) * 2, "destination down: failover, replicate, remove"),
        Scenario(
            "failover_deferred",
            _failover_deferred,
            (S.CLEANED,) * 2,
            "failover with the catalog down too: RegisterFile, replicate, remove",
        ),
        Scenario(
            "replicate_remove",
            _replicate_remove,
            (S.CLEANED,) * 2,
            "straight to failover; executor replicates",
        ),
        Scenario(
            "executor_meanwhile",
            _executor_meanwhile,
            (S.CLEANED,) * 2,
            "failover while the executor runs: the restarted job's resume commits its request early",
        ),
        Scenario(
            "retry_after_stuck",
            _retry_after_stuck,
            (S.CLEANED, S.CLEANED, S.FAILED),
            "target down: Stuck; operator retries two (Cleaned) and cancels one (Failed)",
        ),
        Scenario(
            "replica_unregistered",
            _replica_unregistered,
            (S.CLEANED,),
            "copied but the replica not registered: RegisterReplica fails, Stuck, operator retry",
        ),
        Scenario(
            "removal_stuck",
            _removal_stuck,
            (S.FAILED,),
            "replicated, but the failover replica cannot be removed: Stuck, then cancelled",
        ),
        Scenario(
            "many_files",
            _many_files,
            (S.REGISTERED,) * 5,
            "upload_many in batches: grouped puts, one catalog and one outcome commit per batch",
        ),
        Scenario(
            "many_files_failover",
            _many_files_failover,
            (S.CLEANED,) * 3,
            "upload_many with the destination down: each file fails over alone, then the executor",
        ),
        Scenario(
            "one_request_stuck",
            _one_request_stuck,
            (S.CLEANED,) * 3,
            "one request of three pairs fails at its first in a round: copies made ahead removed, "
            "all Stuck, operator retry",
        ),
        Scenario(
            "many_files_retry",
            _many_files_retry,
            (S.REGISTERED,) * 3,
            "upload_many with retryUpload on one SE down: the batch fails twice, waits together, then lands",
        ),
        Scenario(
            "big_files",
            _big_files,
            (S.REGISTERED, S.CLEANED),
            "two files of 20 MiB: one put to its SE, one failed over and replicated, each write killable "
            "half-way",
        ),
        Scenario("total_failure", _total_failure, (S.FAILED,) * 2, "every SE down; an empty SE list"),
        Scenario("refused", _refused, (S.FAILED,), "a catalog holds the LFN with another GUID"),
        Scenario(
            "registration_failed",
            _registration_failed,
            (S.FAILED,),
            "registration deferred, then refused by a conflicting entry",
        ),
    )
}


def scenario(name: str) -> Scenario:
    """A scenario by name."""
    return SCENARIOS[name]
