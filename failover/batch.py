"""
Uploading many files: the same machines and guarantees, with one commit per batch instead of per file.

For each batch the new uploads' machines are created in one transaction, each file is put (streamed,
verified, fsync-ed, as always), the landed files are registered with one catalog transaction per catalog,
and every outcome is fired in one transaction. Nothing is acknowledged before its commit, and every step
is idempotent, so a crash anywhere leaves machines in Uploading that :func:`resume` finishes without a
second copy. A file whose put fails is recorded with the batch's other failures, and goes on to its next
SE in the next round, still in batch; files that must wait before trying their SE again (``retry_upload``)
wait together. A file that has no SE left, meets a catalog's refusal or has an upload that is not in
Uploading any more takes the one-file path (:func:`~failover.driver.drive_upload`) instead; so does an
upload that another process created or moved on meanwhile (the same LFN uploaded twice at once), which
then reports where that upload is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from failover.driver import StopFlag, drive_upload, landed_event, put_files, register_put, sleep_until
from failover.environment import Environment
from failover.errors import FailoverError, InvalidInput, TransientError, UploadInterrupted
from failover.registration import precheck_catalogs
from failover.storage import PutResult
from failover.uploads import UploadNames, UploadResult, check_names, plan_upload, result_of
from failover.validation.namespace import CallNames
from fsm.clock import parse_time
from fsm.crashpoints import crash_point
from persistence.errors import AlreadyExists
from persistence.requests import RequestHeader
from persistence.rows import MachineRow
from states import UploadState
from states.upload_data import current_candidate
from states.uploading import failure_trigger, outcome_trigger

log = logging.getLogger("failover")

__all__ = [
    "BatchItem",
    "drive_many",
    "left_in_flight",
    "left_waiting",
    "not_started",
    "upload_many",
]

Outcome = UploadResult | FailoverError


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch upload."""

    local_path: str | Path
    lfn: str
    file_meta: Mapping[str, Any] | None = None


def _chunks(items: Iterable[BatchItem], size: int) -> Iterator[list[BatchItem]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def upload_many(
    env: Environment,
    items: Iterable[BatchItem],
    *,
    request: RequestHeader | None = None,
    batch_size: int = 256,
    on_result: Callable[[BatchItem, Outcome], None] | None = None,
    stopping: StopFlag | None = None,
    **options: Any,
) -> list[Outcome]:
    """
    Upload many files with the options of :func:`~failover.uploads.upload` (destinations, failovers, ...).

    Args:
        stopping: once set (by a signal handler, say), the batch being uploaded is finished and the files
            of the batches after it are left alone: each ends with :func:`not_started`.

    Returns:
        For each item in order, its :class:`UploadResult` or the error that stopped it.
    """
    outcomes: list[Outcome] = []
    header = request or env.default_request
    names = _names_once(env, options)
    taken = CallNames()
    for chunk in _chunks(items, batch_size):
        done: list[Outcome]
        if stopping is not None and stopping.is_set():
            done = [not_started(item) for item in chunk]
        else:
            done = _upload_chunk(env, chunk, header, options, names, taken, stopping)
        for item, outcome in zip(chunk, done, strict=True):
            outcomes.append(outcome)
            if on_result is not None:
                on_result(item, outcome)
    return outcomes


def not_started(item: BatchItem) -> UploadInterrupted:
    """The outcome of a file left alone by a stopped upload: nothing of it was stored."""
    return UploadInterrupted(
        f"{item.local_path} was not uploaded: the upload was stopped before its turn, and nothing of it "
        "was stored; running the same upload again uploads it",
        lfn=item.lfn,
    )


def _names_once(env: Environment, options: Mapping[str, Any]) -> UploadNames | None:
    """The call's SE lists and catalogs, checked once; None when a list cannot be parsed (each file says)."""
    keys = ("destinations", "failovers", "targets", "catalogs", "master_only")
    try:
        return check_names(env, **{key: options[key] for key in keys if key in options})
    except InvalidInput:
        return None


def _upload_chunk(
    env: Environment,
    chunk: list[BatchItem],
    request: RequestHeader,
    options: dict[str, Any],
    names: UploadNames | None,
    taken: CallNames,
    stopping: StopFlag | None,
) -> list[Outcome]:
    while True:
        outcomes, fresh, existing = _plan_chunk(env, chunk, request, options, names, taken)
        try:
            created = _create_all(env, fresh.values())
        except AlreadyExists:
            # Another process created one of these uploads since it was planned (the same LFN uploaded
            # twice at once). Nothing was created: plan again, and that LFN's upload is one to continue.
            continue
        break
    # The uploads this call continues (an earlier call was stopped, say) go in the rounds too: one still
    # in Uploading goes on with the others (after them, if it must wait), any other takes the one-file
    # path, which reports it.
    machines = {index: machine_id for index, (machine_id, _) in fresh.items()} | dict(existing)
    _drive_chunk(env, machines, outcomes, known=created, stopping=stopping)
    return [outcomes[index] for index in range(len(chunk))]


def _plan_chunk(
    env: Environment,
    chunk: list[BatchItem],
    request: RequestHeader,
    options: dict[str, Any],
    names: UploadNames | None,
    taken: CallNames,
) -> tuple[dict[int, Outcome], dict[int, tuple[str, dict[str, Any]]], list[tuple[int, str]]]:
    """
    Plan each file: its error, a machine to create (id and data), or an existing upload to drive. A file
    whose LFN clashes with another's of the call (``taken``, which the planned files join) is refused:
    the catalogs, which would refuse it, do not hold the other file yet.
    """
    outcomes: dict[int, Outcome] = {}
    fresh: dict[int, tuple[str, dict[str, Any]]] = {}
    existing: list[tuple[int, str]] = []
    for index, item in enumerate(chunk):
        try:
            machine_id, data = plan_upload(
                env,
                item.local_path,
                item.lfn,
                file_meta=item.file_meta,
                request=request,
                names=names,
                **options,
            )
        except FailoverError as err:
            outcomes[index] = err
            continue
        clash = taken.clash(item.lfn)
        if clash is not None:
            outcomes[index] = InvalidInput(clash, lfn=item.lfn)
            continue
        taken.add(item.lfn)
        if data is None:
            existing.append((index, machine_id))
        else:
            fresh[index] = (machine_id, data)
    return outcomes, fresh, existing


def drive_many(
    env: Environment,
    machine_ids: Sequence[str],
    *,
    batch_size: int = 256,
    stopping: StopFlag | None = None,
) -> list[Outcome]:
    """
    Move existing uploads on until each leaves Uploading, a batch at a time (what :func:`resume` uses).

    The same rounds as :func:`upload_many`: the batch's puts to one SE together, one catalog transaction
    per catalog and one transaction for the outcomes per round, the failed puts recorded together, and
    the uploads that must wait before their next try waited for together. Any other upload (no SE left, a
    catalog refusal) is driven by :func:`~failover.driver.drive_upload`, as it would be alone.

    Args:
        stopping: once set, the batch being driven is finished and the uploads after it are left as they
            are (in flight): each ends with :func:`left_in_flight`. A wait for a retry is cut short, and
            the uploads waiting are left in flight too (:func:`left_waiting`).

    Returns:
        For each machine id in order, its :class:`UploadResult` or the error that stopped it.
    """
    outcomes: list[Outcome] = []
    for start in range(0, len(machine_ids), batch_size):
        chunk = machine_ids[start : start + batch_size]
        if stopping is not None and stopping.is_set():
            outcomes.extend(left_in_flight(machine_id) for machine_id in chunk)
            continue
        found: dict[int, Outcome] = {}
        _drive_chunk(env, dict(enumerate(chunk)), found, stopping=stopping)
        outcomes.extend(found[index] for index in range(len(chunk)))
    return outcomes


def left_in_flight(machine_id: str) -> UploadInterrupted:
    """The outcome of an upload that a stopped :func:`drive_many` did not get to: still in flight."""
    return UploadInterrupted(
        f"upload {machine_id} was left in flight: driving was stopped before its turn; "
        "`failover resume` finishes it",
        lfn=machine_id,
    )


def _drive_chunk(
    env: Environment,
    machines: Mapping[int, str],
    outcomes: dict[int, Outcome],
    *,
    known: Mapping[str, MachineRow] | None = None,
    stopping: StopFlag | None = None,
) -> None:
    """
    Drive ``machines`` (by index) in rounds of the fast path, then those that cannot take it one by one.
    ``known`` holds rows just created, by machine id (the others are loaded).

    In a round, each upload whose current SE can be tried is put there; the landed files are registered
    and recorded together, and the failed puts are recorded together too. An upload with another try
    left takes the next round: with its destination down, a batch goes to the failover SE as a batch,
    not file by file; with ``retry_upload``, the uploads that must wait before trying their one SE again
    wait together, once, not one after the other (a batch of 256 files waits the 370 s of DIRAC's
    schedule once, not 256 times). ``stopping`` cuts such a wait short: the uploads waiting are left in
    flight, their outcome :func:`left_waiting`.
    """
    rows_known: Mapping[str, MachineRow] = known or {}
    pending = dict(machines)
    slow: list[tuple[int, str]] = []
    while pending:
        rows_known = _loaded(env, pending, rows_known)
        pending, later = _this_round(env, pending, rows_known, outcomes, stopping)
        landed, failed = _put_all(env, pending, slow, rows_known)
        rows = _record_landed(env, landed)
        rows_known = _record_failures(env, failed)
        slow_indexes = {index for index, _ in slow}
        next_round: dict[int, str] = {}
        for index, machine_id in pending.items():
            if index in slow_indexes:
                continue
            if machine_id in rows:
                outcomes[index] = _result(env, rows[machine_id])
            elif machine_id in rows_known:
                next_round[index] = machine_id
            else:  # another process moved it on meanwhile: the one-file path reports it
                slow.append((index, machine_id))
        pending = next_round | later
    for index, machine_id in slow:
        outcomes[index] = _drive(env, machine_id)


def _loaded(
    env: Environment, pending: Mapping[int, str], known: Mapping[str, MachineRow]
) -> dict[str, MachineRow]:
    """``known`` with the rows of the pending uploads it lacks, loaded at once."""
    missing = [machine_id for machine_id in pending.values() if machine_id not in known]
    return {**known, **env.uploads.load_many(missing)} if missing else dict(known)


def _retry_time(row: MachineRow) -> datetime | None:
    """When an upload in Uploading may try its SE again, if it must wait for that."""
    when = row.data["next_attempt_at"] if row.state == UploadState.UPLOADING else None
    return None if when is None else parse_time(when)


def _this_round(
    env: Environment,
    pending: Mapping[int, str],
    rows: Mapping[str, MachineRow],
    outcomes: dict[int, Outcome],
    stopping: StopFlag | None,
) -> tuple[dict[int, str], dict[int, str]]:
    """
    Split the pending uploads into those to put in this round and those for a later one. The uploads
    that may be tried now go first; once only uploads that must wait before their next try are left,
    this waits until all of them may try again (the latest of their times: uploads that failed together
    are due a moment apart), and they all go. Stopped during the wait, they are left in flight (their
    outcome set here) and nothing goes.
    """
    times = {
        index: when for index, mid in pending.items() if mid in rows and (when := _retry_time(rows[mid]))
    }
    if not times:
        return dict(pending), {}
    if len(times) < len(pending):
        now = {index: machine_id for index, machine_id in pending.items() if index not in times}
        return now, {index: pending[index] for index in times}
    if sleep_until(env, max(times.values()), stopping):
        return dict(pending), {}
    for index in times:
        outcomes[index] = left_waiting(rows[pending[index]])
    return {}, {}


def left_waiting(row: MachineRow) -> UploadInterrupted:
    """The outcome of an upload stopped while it waited to try its SE again: left in flight."""
    data = row.data
    se = (current_candidate(data) or {}).get("se", "its SE")
    return UploadInterrupted(
        f"{data['local_path']} was not uploaded yet: the upload was stopped while it waited to try {se} "
        f"again at {data['next_attempt_at']}; it is left in flight, and the same upload run again (or "
        "`failover resume`) continues it",
        lfn=data["lfn"],
    )


def _create_all(env: Environment, plans: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, MachineRow]:
    # Any error ends the whole transaction: the machines' own blocks need no savepoint each.
    with env.store.transaction(savepoints=False):
        created = {machine_id: env.uploads.create(machine_id, data) for machine_id, data in plans}
        crash_point("before-commit:batch:create")
    crash_point("after-commit:batch:create")
    return created


def _put_all(
    env: Environment,
    machines: Mapping[int, str],
    slow: list[tuple[int, str]],
    known: Mapping[str, MachineRow],
) -> tuple[list[tuple[MachineRow, PutResult]], list[tuple[MachineRow, Mapping[str, Any], FailoverError]]]:
    """
    Put each upload's file at its current SE; an upload that cannot take the fast path joins ``slow``.
    Returns the landed files, and the failed puts (with the SE tried and the error) for the caller to
    record.

    The fast path is for an upload in Uploading with an SE left to try (any retry delay was waited for,
    by :func:`_this_round`). Before its first put, the catalogs are asked whether they would refuse it
    (a refusal takes the one-file path, which records it). The files going to one SE are put together
    (:meth:`~failover.storage.StorageElement.put_many`).
    """
    ready: list[tuple[int, MachineRow, Mapping[str, Any]]] = []
    for index, machine_id in machines.items():
        row = known.get(machine_id) or env.uploads.load(machine_id)
        candidate = current_candidate(row.data)
        if row.state != UploadState.UPLOADING or candidate is None:
            slow.append((index, machine_id))
            continue
        if not row.data["attempts"]:
            try:
                precheck_catalogs([env.catalogs.get(name) for name in row.data["catalogs"]], row.data)
            except FailoverError:
                slow.append((index, machine_id))
                continue
        ready.append((index, row, candidate))
    landed: list[tuple[MachineRow, PutResult]] = []
    failed: list[tuple[MachineRow, Mapping[str, Any], FailoverError]] = []
    for se_name in dict.fromkeys(where["se"] for _, _, where in ready):
        group = [entry for entry in ready if entry[2]["se"] == se_name]
        outcomes = put_files(env, [entry[1].data for entry in group], se_name)
        for (_, put_row, where), outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, FailoverError):
                failed.append((put_row, where, outcome))
            else:
                landed.append((put_row, outcome))
    return landed, failed


def _record_failures(
    env: Environment, failed: Sequence[tuple[MachineRow, Mapping[str, Any], FailoverError]]
) -> dict[str, MachineRow]:
    """Journal the failed puts in one transaction; return the uploads' rows as stored, by id."""
    decided = []
    for row, candidate, err in failed:
        log.info("put of %s to %s failed: %s", row.data["lfn"], candidate["se"], err)
        failure = {
            "se": candidate["se"],
            "error": err.to_record(),
            "retryable": isinstance(err, TransientError),
        }
        decided.append((row, failure_trigger(row.data, failure), failure))
    return _fire_all(env, decided, "batch:failures")


def _register_all(
    env: Environment, landed: Sequence[tuple[MachineRow, PutResult]]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Register every landed file, one transaction per catalog; each file's registered and failed catalogs."""
    results: dict[str, tuple[list[str], dict[str, str]]] = {row.id: ([], {}) for row, _ in landed}
    names = list(dict.fromkeys(name for row, _ in landed for name in row.data["catalogs"]))
    for name in names:
        catalog = env.catalogs.get(name)
        mine = [(row, put) for row, put in landed if name in row.data["catalogs"]]
        try:
            with catalog.batch():
                for row, put in mine:
                    done, failed = register_put(catalog, row.data, put)
                    results[row.id][0].extend(done)
                    results[row.id][1].update(failed)
        except FailoverError as err:  # the batch itself could not open or commit: none of these registered
            for row, _ in mine:
                results[row.id][0][:] = [n for n in results[row.id][0] if n != name]
                results[row.id][1][name] = f"{type(err).__name__}: {err}"
    return results


def _record_landed(env: Environment, landed: list[tuple[MachineRow, PutResult]]) -> dict[str, MachineRow]:
    """
    Register the landed files, then fire every outcome in one transaction; return the rows as stored
    (an upload another process moved on meanwhile has none: see :func:`_fire_all`).
    """
    if not landed:
        return {}
    crash_point("before-register")
    registered = _register_all(env, landed)
    crash_point("after-register")
    decided = []
    for row, put in landed:
        event = landed_event(row.data, put, *registered[row.id])
        decided.append((row, outcome_trigger(row.data, event), event))
    return _fire_all(env, decided, "batch:outcomes")


def _fire_all(
    env: Environment, decided: Sequence[tuple[MachineRow, str, Mapping[str, Any]]], point: str
) -> dict[str, MachineRow]:
    """
    Fire each decided transition from the row it was decided on, all in one transaction; return the rows
    as stored, by id. An upload that another process moved on since its row was loaded is left out (no
    row in the result): its transition would fail the compare-and-swap, and inside this one unit, all.
    """
    if not decided:
        return {}
    rows: dict[str, MachineRow] = {}
    with env.store.transaction(savepoints=False):  # any error ends it all: no savepoint per transition
        # Read under the write lock: no other process can move these on between this read and the fires.
        versions = env.uploads.versions([row.id for row, _, _ in decided])
        for row, trigger, event in decided:
            if versions.get(row.id) == row.version:
                rows[row.id] = env.uploads.fire(row.id, trigger, event, known=row).row
        crash_point(f"before-commit:{point}")
    crash_point(f"after-commit:{point}")
    return rows


def _result(env: Environment, row: MachineRow) -> Outcome:
    try:
        return result_of(env, row)
    except FailoverError as err:
        return err


def _drive(env: Environment, machine_id: str) -> Outcome:
    try:
        return result_of(env, drive_upload(env, machine_id))
    except FailoverError as err:
        return err
