"""
The Pythonic upload API: validate, create or continue the upload's machine, drive it, report.

One upload machine per (LFN, generation): calling :func:`upload` again for an LFN whose upload is
unfinished continues that upload (same GUID, same request) instead of starting another; a finished
one is reported as it ended. Once an upload has landed, a call's local file is compared with what landed
(size and checksum): the same content is reported, wherever it is now; other content is refused. Only
after a Failed upload does a new call start a new generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failover.checksum import ChecksumType, checksum_file, parse_checksum_type, same_checksum
from failover.driver import drive_upload
from failover.environment import Environment
from failover.errors import InvalidInput, UploadFailed
from failover.request_store import REQUEST_KEY, header_data
from failover.validation import UploadInput, parse_name_list, select_catalogs, validate_ses, validate_upload
from persistence.errors import AlreadyExists
from persistence.requests import OperationRow, RequestHeader, operations_of_machine
from persistence.rows import MachineRow
from states import UploadState, new_upload_data

__all__ = [
    "UploadNames",
    "UploadResult",
    "check_names",
    "latest_upload",
    "machine_ids",
    "plan_upload",
    "result_of",
    "upload",
]

TOTAL_FAILURE = "Failed to upload output data file"


@dataclass(frozen=True)
class UploadResult:
    """
    Where an upload ended (or stands, when it waits for its request to be executed).

    Attributes:
        lfn: the logical file name.
        state: the upload machine's state (Registered, Registering, FailedOver, ...).
        se: the SE that took the file.
        pfn: its URL there.
        size, checksum, checksum_type, guid: what was uploaded.
        registered: catalogs where the file is registered.
        deferred: catalogs where registration was deferred to a request, with the reason.
        operations: the request operations this upload emitted, in order.
        machine_id: the upload's machine.
    """

    lfn: str
    state: UploadState
    se: str
    pfn: str
    size: int
    checksum: str
    checksum_type: str
    guid: str
    registered: tuple[str, ...]
    deferred: Mapping[str, str]
    operations: tuple[OperationRow, ...] = field(default=())
    machine_id: str = ""


def machine_ids(lfn: str) -> Iterator[str]:
    """The machine ids of an LFN's uploads, generation 1, 2, ... (ids are the LFN, then ``LFN#n``)."""
    yield lfn
    generation = 2
    while True:
        yield f"{lfn}#{generation}"
        generation += 1


def latest_upload(env: Environment, lfn: str) -> MachineRow | None:
    """The LFN's latest upload (a new generation starts only after a Failed one), or None."""
    return _latest(env, lfn)[0]


def _latest(env: Environment, lfn: str) -> tuple[MachineRow | None, str]:
    """The LFN's latest upload (None when there is none), and the id a new generation would get."""
    latest: MachineRow | None = None
    ids = machine_ids(lfn)
    machine_id = next(ids)
    while (row := env.uploads.find(machine_id)) is not None:
        latest, machine_id = row, next(ids)
    return latest, machine_id


def result_of(env: Environment, row: MachineRow) -> UploadResult:
    """
    Report a finished (or handed-over) upload.

    Raises:
        UploadFailed: the upload ended Failed; ``errors`` holds each SE's last reason.
    """
    data = row.data
    if row.state == UploadState.FAILED:
        errors = {f["se"]: f["error"]["message"] for f in data["failures"]}
        if data.get("refusal"):
            errors.setdefault("catalog", data["refusal"]["message"])
        raise UploadFailed(TOTAL_FAILURE, errors=errors, lfn=data["lfn"])
    return UploadResult(
        lfn=data["lfn"],
        state=UploadState(row.state),
        se=data["uploaded_se"],
        pfn=data["pfn"],
        size=data["size"],
        checksum=data["checksum"],
        checksum_type=data["checksum_type"],
        guid=data["guid"],
        registered=tuple(data["registered_catalogs"]),
        deferred=dict(data["unregistered_catalogs"]),
        operations=tuple(operations_of_machine(env.store.conn, row.id)),
        machine_id=row.id,
    )


@dataclass(frozen=True)
class UploadNames:
    """
    An upload call's SE lists and catalogs, parsed and checked once for all its files.

    Attributes:
        destinations, failovers, targets: the parsed SE lists (``targets`` defaults to the destinations).
        ses: every SE name of the three lists, checked against the configuration; ``None`` when one is
            not configured (each file then reports it, after its own checks, as SPEC §1 orders them).
        catalogs: the catalogs to register in, likewise ``None`` when the choice is refused.
    """

    destinations: list[str]
    failovers: list[str]
    targets: list[str]
    ses: tuple[str, ...] | None
    catalogs: tuple[str, ...] | None


def check_names(
    env: Environment,
    *,
    destinations: str | Iterable[str] = (),
    failovers: str | Iterable[str] = (),
    targets: str | Iterable[str] | None = None,
    catalogs: str | Iterable[str] | None = None,
    master_only: bool = False,
) -> UploadNames:
    """
    Parse and check an upload call's SE lists and catalogs, for :func:`plan_upload` to use for each file.

    Raises:
        InvalidInput: a list is neither a string nor strings.
    """
    dest, fail = parse_name_list(destinations), parse_name_list(failovers)
    aims = parse_name_list(targets) if targets is not None else dest
    try:
        ses: tuple[str, ...] | None = validate_ses([*dest, *fail, *aims], list(env.storage))
    except InvalidInput:
        ses = None
    try:
        chosen: tuple[str, ...] | None = select_catalogs(catalogs, env.catalog_choices(), master_only)
    except InvalidInput:
        chosen = None
    return UploadNames(dest, fail, aims, ses, chosen)


def _validate(
    env: Environment, local_path: str | Path, lfn: str, names: UploadNames, **options: Any
) -> UploadInput:
    return validate_upload(
        lfn=lfn,
        local_path=local_path,
        file_meta=options["file_meta"],
        ses=[*names.destinations, *names.failovers, *names.targets],
        configured_ses=list(env.storage),
        catalogs=options["catalogs"],
        configured_catalogs=env.catalog_choices(),
        master_only=options["master_only"],
        default_checksum_type=options["default_checksum_type"],
        checked_ses=names.ses,
        checked_catalogs=names.catalogs,
    )


def _new_data(
    checked: UploadInput,
    *,
    destinations: list[str],
    failovers: list[str],
    targets: list[str],
    retry_upload: bool,
    overwrite: bool,
    header: RequestHeader,
    env: Environment,
) -> dict[str, Any]:
    data = new_upload_data(
        lfn=checked.lfn,
        local_path=str(checked.local_path),
        size=checked.size,
        checksum=checked.checksum,
        checksum_type=checked.checksum_type.value,
        guid=checked.guid,
        catalogs=checked.catalogs,
        destinations=destinations,
        failovers=failovers,
        targets=targets,
        retry_upload=retry_upload,
        policy=env.put_retry,
    )
    return {**data, "overwrite": overwrite, REQUEST_KEY: header_data(header)}


def _check_same_upload(row: MachineRow, checked: UploadInput) -> None:
    """
    A call for an LFN that has an upload must bring that upload's file (and GUID, when it gives one).

    Before the file has landed, that is the same local path: the upload goes on from the path it
    recorded. Once it has landed, it is the same content, wherever the file is now (a job run again in
    a new directory): the same size and checksum, or the caller would be told the new file is stored
    while the SE and the catalogs hold the old one (SPEC §2: an LFN registered with other metadata is
    refused, nothing uploaded). The local file is then read once more to compare, unless the caller gave
    its checksum (already verified against the file).
    """
    data, lfn = row.data, checked.lfn
    landed = data.get("uploaded_se") is not None
    if not landed and data["local_path"] != str(checked.local_path):
        raise InvalidInput(f"{lfn} is already being uploaded from {data['local_path']}", lfn=lfn)
    if not checked.guid_generated and checked.guid != data["guid"]:
        raise InvalidInput(f"{lfn} is already being uploaded with GUID {data['guid']}", lfn=lfn)
    if not landed:
        return
    kind = parse_checksum_type(data["checksum_type"])
    if checked.size != data["size"]:
        now, then = f"{checked.size:,} bytes", f"{data['size']:,}"
    else:
        given = checked.checksum if checked.checksum_type is kind else None
        checksum = given or checksum_file(checked.local_path, [kind]).hexdigest(kind)
        if same_checksum(checksum, data["checksum"], kind):
            return
        now, then = f"{kind.value} {checksum}", data["checksum"]
    raise InvalidInput(
        f"{lfn} was already uploaded ({row.state} at {data['uploaded_se']}) with other content: "
        f"{checked.local_path} has {now}, what landed {then}; nothing uploaded (give the new file "
        f"another LFN)",
        lfn=lfn,
    )


def plan_upload(
    env: Environment,
    local_path: str | Path,
    lfn: str,
    *,
    destinations: str | Iterable[str] = (),
    failovers: str | Iterable[str] = (),
    targets: str | Iterable[str] | None = None,
    catalogs: str | Iterable[str] | None = None,
    master_only: bool = False,
    retry_upload: bool = False,
    file_meta: Mapping[str, Any] | None = None,
    default_checksum_type: str | ChecksumType | None = "ADLER32",
    overwrite: bool = False,
    request: RequestHeader,
    names: UploadNames | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """
    Validate an upload and decide its machine: an existing one to continue, or a new one to create.

    ``names``, from :func:`check_names` with the same lists, saves parsing and checking them again for
    each of many files.

    Returns:
        The machine id, and the new machine's data (None when the LFN has an upload to continue or report).

    Raises:
        InvalidInput: bad input; another GUID than the LFN's upload; another file than an upload that
            has not landed; other content than one that has.
    """
    if names is None:
        names = check_names(
            env,
            destinations=destinations,
            failovers=failovers,
            targets=targets,
            catalogs=catalogs,
            master_only=master_only,
        )
    options = {
        "file_meta": file_meta,
        "catalogs": catalogs,
        "master_only": master_only,
        "default_checksum_type": default_checksum_type,
    }
    checked = _validate(env, local_path, lfn, names, **options)
    latest, next_id = _latest(env, checked.lfn)
    if latest is not None and latest.state != UploadState.FAILED:
        _check_same_upload(latest, checked)
        return latest.id, None
    data = _new_data(
        checked,
        destinations=names.destinations,
        failovers=names.failovers,
        targets=names.targets,
        retry_upload=retry_upload,
        overwrite=overwrite,
        header=request,
        env=env,
    )
    return next_id, data


def upload(
    env: Environment,
    local_path: str | Path,
    lfn: str,
    *,
    destinations: str | Iterable[str] = (),
    failovers: str | Iterable[str] = (),
    targets: str | Iterable[str] | None = None,
    catalogs: str | Iterable[str] | None = None,
    master_only: bool = False,
    retry_upload: bool = False,
    file_meta: Mapping[str, Any] | None = None,
    default_checksum_type: str | ChecksumType | None = "ADLER32",
    overwrite: bool = False,
    request: RequestHeader | None = None,
) -> UploadResult:
    """
    Upload one file: destination SEs in order, then failover SEs; register it or defer registration.

    Args:
        env: storage, catalogs, database and time.
        local_path: the file to upload (never modified).
        lfn: its logical file name.
        destinations: SEs to try first, in order.
        failovers: SEs to fall back to; the file is then replicated to ``targets`` later.
        targets: where a failed-over file must end up (default: the destinations).
        catalogs: catalogs to register in (None = all configured).
        master_only: register in the master catalogs only.
        retry_upload: with exactly one SE, retry transient failures on it with waits (SPEC §2).
        file_meta: DIRAC's fileMetaDict (GUID, Checksum, ChecksumType, Size).
        default_checksum_type: the checksum type when ``file_meta`` names none.
        overwrite: replace different content already under the LFN at the SE.
        request: the request the upload's operations go to (default: the environment's session request).

    Returns:
        Where the upload stands.

    Raises:
        InvalidInput: bad input (nothing uploaded).
        RegistrationRefused: a catalog holds the LFN with other metadata (nothing uploaded).
        UploadFailed: no SE took the file.
    """
    while True:
        machine_id, data = plan_upload(
            env,
            local_path,
            lfn,
            destinations=destinations,
            failovers=failovers,
            targets=targets,
            catalogs=catalogs,
            master_only=master_only,
            retry_upload=retry_upload,
            file_meta=file_meta,
            default_checksum_type=default_checksum_type,
            overwrite=overwrite,
            request=request or env.default_request,
        )
        if data is None:
            break
        try:
            env.uploads.create(machine_id, data)
            break
        except AlreadyExists:
            continue  # another process created it since the plan: plan again, to continue that one
    return result_of(env, drive_upload(env, machine_id))
