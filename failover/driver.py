"""
Driving an upload machine through Uploading: wait, put, register, and fire what happened.

Every side effect runs between transitions, never inside one, and is idempotent: a put finds an
identical object already at the SE and counts it done; registration treats an identical entry as
registered. So a crash anywhere, followed by :func:`drive_upload` again, repeats no effect twice and
loses none: the machine's stored state says where to go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from failover.catalog import FileCatalog
from failover.checksum import parse_checksum_type
from failover.environment import Environment
from failover.errors import FailoverError, RegistrationRefused, TransientError
from failover.registration import precheck_catalogs, register_everywhere
from failover.storage import PutItem, PutResult
from fsm.clock import parse_time
from fsm.crashpoints import crash_point
from persistence.errors import ConcurrentUpdate
from persistence.rows import MachineRow
from states import UploadState, UploadTrigger
from states.upload_data import current_candidate
from states.uploading import failure_trigger, outcome_trigger

__all__ = ["StopFlag", "drive_upload", "landed_event", "put_file", "register_put", "sleep_until"]

log = logging.getLogger("failover")


def drive_upload(env: Environment, machine_id: str) -> MachineRow:
    """
    Move an upload on until it leaves Uploading; return its stored row.

    Another process may drive the same upload at the same time (the same LFN uploaded twice at once, or
    ``resume`` beside a live upload): each transition is fired from the row its decision was made on,
    and if the other process moved the upload on first, nothing is fired and the driving goes on from
    the stored row (every side effect being idempotent, the other's put or registration counts).

    Raises:
        RegistrationRefused: a catalog refuses the file before any put (the upload is then Failed).
    """
    row = env.uploads.load(machine_id)
    if row.state == UploadState.UPLOADING and not row.data["attempts"]:
        row = _precheck(env, row)
    while row.state == UploadState.UPLOADING:
        row = _step(env, row)
    return row


def _catalogs(env: Environment, data: Mapping[str, Any]) -> list[Any]:
    return [env.catalogs.get(name) for name in data["catalogs"]]


def _precheck(env: Environment, row: MachineRow) -> MachineRow:
    try:
        precheck_catalogs(_catalogs(env, row.data), row.data)
    except RegistrationRefused as err:
        try:
            env.uploads.fire(row.id, UploadTrigger.REFUSED, {"error": err.to_record()}, known=row)
        except ConcurrentUpdate:
            return env.uploads.load(row.id)  # another process moved it on first: go on from there
        raise
    return row


def _step(env: Environment, row: MachineRow) -> MachineRow:
    candidate = current_candidate(row.data)
    if candidate is None:
        return _fire(env, row, UploadTrigger.EXHAUSTED, {})
    _wait_for_next_attempt(env, row.data)
    se_name = candidate["se"]
    try:
        event = _put_and_register(env, row.data, se_name)
    except FailoverError as err:
        log.info("put of %s to %s failed: %s", row.data["lfn"], se_name, err)
        failure = {"se": se_name, "error": err.to_record(), "retryable": isinstance(err, TransientError)}
        return _fire(env, row, failure_trigger(row.data, failure), failure)
    return _fire(env, row, outcome_trigger(row.data, event), event)


def _fire(env: Environment, row: MachineRow, trigger: str, event: Mapping[str, Any]) -> MachineRow:
    """Fire what was decided from ``row``; the stored row instead if another process moved it on first."""
    try:
        return env.uploads.fire(row.id, trigger, event, known=row).row
    except ConcurrentUpdate:
        log.info("%s was moved on by another process; going on from where it is", row.id)
        return env.uploads.load(row.id)


def _wait_for_next_attempt(env: Environment, data: Mapping[str, Any]) -> None:
    if data["next_attempt_at"] is not None:
        sleep_until(env, parse_time(data["next_attempt_at"]))


class StopFlag(Protocol):
    """What tells a long call to stop early: a ``threading.Event``, or a ``multiprocessing`` one."""

    def is_set(self) -> bool:
        """Whether to stop."""
        ...


#: The longest slice of a wait that a stop flag may cut short.
_WAIT_SLICE_S = 0.2


def sleep_until(env: Environment, when: datetime, stopping: StopFlag | None = None) -> bool:
    """
    Sleep with the environment's sleeper until ``when`` (by its clock); False if ``stopping`` was set
    meanwhile. With a stop flag, the sleep goes in short slices (the sleeper, injected by tests, may not
    be interruptible).
    """
    delay = (when - env.clock()).total_seconds()
    if delay <= 0:
        return True
    if stopping is None:
        env.sleeper(delay)
        return True
    slept = 0.0
    while slept < delay:
        if stopping.is_set():
            return False
        step = min(_WAIT_SLICE_S, delay - slept)
        env.sleeper(step)
        slept += step
    return True


def put_file(env: Environment, data: Mapping[str, Any], se_name: str) -> PutResult:
    """
    Put an upload's local file at one SE (idempotent: an identical object already there counts); a file
    whose size or checksum is no longer the one the upload checked is refused (``SourceChanged``).
    """
    kind = parse_checksum_type(data["checksum_type"])
    crash_point("before-put")
    put = env.se(se_name).put(
        data["local_path"],
        data["lfn"],
        checksum_types=(kind,),
        overwrite=data["overwrite"],
        expected_size=data["size"],
        expected_checksum=data["checksum"],
    )
    crash_point("after-put")
    return put


def put_files(
    env: Environment, uploads: Sequence[Mapping[str, Any]], se_name: str
) -> list[PutResult | FailoverError]:
    """
    Put several uploads' local files at one SE, as :func:`put_file` puts one (on a local disk, with
    grouped flushes).

    Returns:
        For each upload in order, its put or the error that stopped it.
    """
    items = [
        PutItem(
            data["local_path"],
            data["lfn"],
            (parse_checksum_type(data["checksum_type"]),),
            data["overwrite"],
            expected_size=data["size"],
            expected_checksum=data["checksum"],
        )
        for data in uploads
    ]
    for _ in items:
        crash_point("before-put")
    outcomes = env.se(se_name).put_many(items)
    for _ in items:
        crash_point("after-put")
    return outcomes


def register_put(
    catalog: FileCatalog, data: Mapping[str, Any], put: PutResult
) -> tuple[list[str], dict[str, str]]:
    """Register what a put stored in ``catalog`` (see :func:`register_everywhere`)."""
    kind = parse_checksum_type(data["checksum_type"])
    upload = {**data, "size": put.size}
    return register_everywhere([catalog], upload, se=put.se, pfn=put.pfn, checksum=put.checksums[kind])


def landed_event(
    data: Mapping[str, Any], put: PutResult, registered: list[str], unregistered: dict[str, str]
) -> dict[str, Any]:
    """The event that records a landed file: where it is, what it is, where it is registered."""
    kind = parse_checksum_type(data["checksum_type"])
    return {
        "se": put.se,
        "pfn": put.pfn,
        "size": put.size,
        "checksum": put.checksums[kind],
        "checksum_type": kind.value,
        "registered": registered,
        "unregistered": unregistered,
    }


def _put_and_register(env: Environment, data: Mapping[str, Any], se_name: str) -> dict[str, Any]:
    put = put_file(env, data, se_name)
    registered: list[str] = []
    unregistered: dict[str, str] = {}
    crash_point("before-register")
    for catalog in _catalogs(env, data):
        done, failed = register_put(catalog, data, put)
        registered += done
        unregistered.update(failed)
    crash_point("after-register")
    return landed_event(data, put, registered, unregistered)
