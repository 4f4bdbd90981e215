"""
The consistency checker: SPEC.md §6's invariants, checked against the database, storage and catalogs.

Problems found (each with a stable ``code``):

- ``store-integrity``: SQLite's integrity or foreign-key check fails.
- ``journal-replay``: an instance's journal does not replay to its stored state (invariant 4).
- ``lost-operation`` / ``duplicate-operation``: a transition's journaled emissions and the stored
  operations differ (invariant 3).
- ``missing-replica`` / ``bad-replica``: a Registered or Cleaned upload has no good copy at its final SE.
- ``catalog-entry`` / ``catalog-replica``: its catalog entry or replica is missing or different.
- ``temporary-replica``: a Cleaned upload still has its failover copy, on storage or in a catalog.

  An upload's file may be moved on once it is done, by operations of its own (a job's ``RemoveReplica``, a
  ``RemoveFile``, a replication back to the failover SE): what such a later operation, done, explains is
  not a problem (counted in ``checked["changed_later"]``).
- ``catalog-without-file``: a catalog replica whose physical file is gone.
- ``in-flight-upload``: an object put by an upload still in Uploading, whose process stopped before
  recording the put (a crash): ``resume`` finishes that upload.
- ``dark-data``: an object on an SE that no upload or catalog entry explains.
- ``temporary-file``: a leftover temporary name from an interrupted put (``resume --remove-temporary``).
- ``stranded-upload``: an upload waiting on the executor (Registering, FailedOver, Replicating) with no
  unfinished operation in a request that can still run: nothing would ever finish it.
- ``storage-unavailable``: an SE did not answer (down, its storage not mounted): what it holds is not
  judged (no replica there is called missing), and everything else is still checked.

fsck may run beside uploads and executors. The database is read in one snapshot (rows, journals and
operations as they stood together), and an object on an SE that the snapshot does not explain is judged
again on the database as it is when the object is found. An ``in-flight-upload`` or a ``temporary-file``
may then be a running upload's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from failover.catalog import FileEntry, conflicting_field
from failover.checksum import parse_checksum_type, same_checksum
from failover.environment import Environment
from failover.errors import FailoverError, StorageUnavailable
from failover.uploads import machine_ids
from fsm.replay import JournalMismatch, verify_replay
from persistence.journal import read_journal
from persistence.machines import iter_machines
from persistence.requests import later_operations_on
from persistence.rows import MachineRow
from states import UPLOAD_MACHINE, UploadState

__all__ = ["FsckReport", "Problem", "fsck"]


@dataclass(frozen=True)
class Problem:
    """One violated invariant."""

    code: str
    subject: str
    message: str


@dataclass
class _Unreachable:
    """The SEs that did not answer, with the first error of each: nothing at them is judged after it."""

    errors: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def trying(self, se: str) -> Iterator[None]:
        """Run the block's calls to ``se``; a ``StorageUnavailable`` ends the block and marks ``se``."""
        try:
            yield
        except StorageUnavailable as err:
            self.errors.setdefault(se, str(err))

    def problems(self) -> list[Problem]:
        """One ``storage-unavailable`` problem per SE that did not answer."""
        return [
            Problem("storage-unavailable", se, f"{error} (nothing it holds was checked)")
            for se, error in self.errors.items()
        ]


@dataclass
class FsckReport:
    """Everything :func:`fsck` found, and how much it looked at."""

    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {"ok": self.ok, "checked": dict(self.checked), "problems": [asdict(p) for p in self.problems]}


def fsck(env: Environment, *, read: bool = True) -> FsckReport:
    """
    Check every invariant of SPEC.md §6 over an environment's database, SEs and catalogs.

    Args:
        env: the environment to check.
        read: compare each final replica's checksum, reading the replica back where its storage reports
            none (local disks, WebDAV). ``False`` compares sizes, and checksums the storage reports
            (XRootD, S3), only: for terabytes, minutes instead of hours, at the cost of not seeing a
            replica whose bytes changed but not its size. Counted in ``checked["replicas_by_size"]``.

    Returns:
        The report; ``report.ok`` when nothing is wrong.
    """
    report, unreachable = FsckReport(), _Unreachable()
    later: dict[str, _LaterChanges] = {}
    # The database is read in one snapshot, its rows, journals and operations as they stood together:
    # uploads and executors may run meanwhile, and a transition they commit is not seen in half.
    with env.store.snapshot():
        report.problems += [
            Problem("store-integrity", env.store.path, text) for text in env.store.integrity_check()
        ]
        uploads = list(iter_machines(env.store.conn, UPLOAD_MACHINE.name))
        for row in uploads:
            report.problems += list(_check_records(env, row))
            if row.state in _ENDED:
                later[row.id] = _changes_since(env, row)
    report.checked["uploads"] = len(uploads)
    if not read:
        report.checked["replicas_by_size"] = 0
    for row in uploads:  # an ended upload's replicas, on storage and in the catalogs
        if row.id in later:
            changes = later[row.id]
            report.problems += list(_check_final_replicas(env, row, report, changes, unreachable, read=read))
            if row.state == UploadState.CLEANED:
                report.problems += list(_check_no_temporary(env, row, report, changes, unreachable))
    report.problems += list(_check_catalogs(env, report, unreachable))
    report.problems += list(_check_storage(env, uploads, report, unreachable))
    report.problems += unreachable.problems()
    return report


def _check_records(env: Environment, row: MachineRow) -> Iterator[Problem]:
    """An upload's journal, emitted operations and pending work, from the database alone."""
    journal = read_journal(env.store.conn, row.id)
    try:
        verify_replay(UPLOAD_MACHINE, row, journal)
    except JournalMismatch as err:
        yield Problem("journal-replay", row.id, str(err))
    yield from _check_emissions(env, row.id, journal)
    if row.state in _WAITING_ON_EXECUTOR and not _has_runnable_operation(env, row.id):
        yield Problem(
            "stranded-upload", row.id, f"{row.state} with no operation left to run in an open request"
        )


_ENDED = (UploadState.REGISTERED, UploadState.CLEANED)
_WAITING_ON_EXECUTOR = (UploadState.REGISTERING, UploadState.FAILED_OVER, UploadState.REPLICATING)


def _has_runnable_operation(env: Environment, machine_id: str) -> bool:
    """An operation of the upload is unfinished, in a request that is a draft or has not ended."""
    row = env.store.conn.execute(
        "SELECT 1 FROM operations o JOIN requests r ON r.id = o.request_id WHERE o.machine_id = ? "
        "AND o.status NOT IN ('Done', 'Failed', 'Canceled') "
        "AND (r.committed_at IS NULL OR r.status NOT IN ('Done', 'Failed', 'Canceled')) LIMIT 1",
        (machine_id,),
    ).fetchone()
    return row is not None


def _check_emissions(env: Environment, machine_id: str, journal: list[Any]) -> Iterator[Problem]:
    stored: dict[int, list[str]] = {}
    rows = env.store.conn.execute("SELECT idem_key, type FROM operations WHERE machine_id = ?", (machine_id,))
    for key, kind in rows:
        seq = int(key.removeprefix(f"{machine_id}/").split("/")[0])
        stored.setdefault(seq, []).append(kind)
    for entry in journal[1:]:
        emitted = list(entry.payload.get("emitted", []))
        found = stored.pop(entry.seq, [])
        if sorted(found) != sorted(emitted):
            code = "lost-operation" if len(found) < len(emitted) else "duplicate-operation"
            yield Problem(code, machine_id, f"seq {entry.seq} emitted {emitted} but the store holds {found}")
    for seq, kinds in stored.items():
        yield Problem(
            "duplicate-operation", machine_id, f"operations {kinds} claim seq {seq}, which emitted none"
        )


@dataclass(frozen=True)
class _LaterChanges:
    """
    What done operations that are not the upload's own did to its file after the upload ended, the last
    one on each SE counting: where they left it removed, whether the whole file was removed (then only the
    SEs it was copied to again should hold it), and where they left a copy.
    """

    removed_from: frozenset[str] = frozenset()
    file_removed: bool = False
    copied_to: frozenset[str] = frozenset()

    def explains_absence_at(self, se: str) -> bool:
        """A replica missing at ``se`` is what these operations left."""
        return se in self.removed_from or (self.file_removed and se not in self.copied_to)


def _changes_since(env: Environment, row: MachineRow) -> _LaterChanges:
    removed: set[str] = set()
    copied: set[str] = set()
    file_removed = False
    for op in later_operations_on(env.store.conn, row.data["lfn"], row.id, row.updated_at):
        if op.type == "RemoveFile":
            file_removed = True
            removed.clear()
            copied.clear()
        elif op.type == "RemoveReplica":
            removed.update(op.target_se)
            copied.difference_update(op.target_se)
        elif op.type in ("ReplicateAndRegister", "RegisterReplica"):
            copied.update(op.target_se)
            removed.difference_update(op.target_se)
    return _LaterChanges(frozenset(removed), file_removed, frozenset(copied))


def _final_ses(row: MachineRow) -> list[str]:
    return [row.data["uploaded_se"]] if row.state == UploadState.REGISTERED else list(row.data["targets"])


def _good_copy(
    env: Environment, se: str, data: dict[str, Any], report: FsckReport, *, read: bool
) -> Problem | None:
    """Why ``se`` holds no good copy of the upload, or None when it does (see :func:`fsck`'s ``read``)."""
    lfn = data["lfn"]
    info = env.se(se).stat(lfn)
    if info is None:
        return Problem("missing-replica", lfn, f"no copy of {lfn} at {se}")
    if info.size != data["size"]:
        return Problem("bad-replica", lfn, f"{se} holds {info.size:,} bytes of {lfn}, not {data['size']:,}")
    kind = parse_checksum_type(data["checksum_type"])
    if not read and kind not in info.checksums:
        report.checked["replicas_by_size"] += 1
        return None
    found = info.checksums.get(kind) or env.se(se).checksum(lfn, kind)
    if not same_checksum(found, data["checksum"], kind):
        return Problem(
            "bad-replica", lfn, f"{se} holds {lfn} with {kind.value} {found}, not {data['checksum']}"
        )
    return None


def _check_final_replicas(
    env: Environment,
    row: MachineRow,
    report: FsckReport,
    later: _LaterChanges,
    unreachable: _Unreachable,
    *,
    read: bool,
) -> Iterator[Problem]:
    data = row.data
    entry = FileEntry(data["lfn"], data["size"], data["checksum"], data["checksum_type"], data["guid"])
    for se in _final_ses(row):
        if later.explains_absence_at(se):
            report.checked["changed_later"] = report.checked.get("changed_later", 0) + 1
            continue
        if se not in unreachable.errors:
            with unreachable.trying(se):
                if (problem := _good_copy(env, se, data, report, read=read)) is not None:
                    yield Problem(problem.code, row.id, problem.message)
        for name in data["catalogs"]:
            catalog = env.catalogs.get(name)
            registered = catalog.get_file(data["lfn"])
            if registered is None or conflicting_field(registered, entry) is not None:
                yield Problem("catalog-entry", row.id, f"{name} does not hold {data['lfn']} as uploaded")
            elif not any(r.se == se for r in catalog.get_replicas(data["lfn"])):
                yield Problem("catalog-replica", row.id, f"{name} has no replica of {data['lfn']} at {se}")


def _check_no_temporary(
    env: Environment, row: MachineRow, report: FsckReport, later: _LaterChanges, unreachable: _Unreachable
) -> Iterator[Problem]:
    data, temporary = row.data, row.data["uploaded_se"]
    if temporary in data["targets"]:
        return
    if temporary in later.copied_to:
        report.checked["changed_later"] = report.checked.get("changed_later", 0) + 1
        return
    if temporary not in unreachable.errors:
        with unreachable.trying(temporary):
            if env.se(temporary).exists(data["lfn"]):
                yield Problem(
                    "temporary-replica", row.id, f"{data['lfn']} is still at failover SE {temporary}"
                )
    for name in data["catalogs"]:
        if any(r.se == temporary for r in env.catalogs.get(name).get_replicas(data["lfn"])):
            yield Problem("temporary-replica", row.id, f"{name} still lists {data['lfn']} at {temporary}")


def _check_catalogs(env: Environment, report: FsckReport, unreachable: _Unreachable) -> Iterator[Problem]:
    replicas = 0
    for catalog in env.catalogs:
        try:
            files = list(catalog.iter_files())
        except FailoverError as err:
            yield Problem("catalog-unavailable", catalog.name, str(err))
            continue
        for entry, entry_replicas in files:
            for replica in entry_replicas:
                replicas += 1
                if replica.se not in env.storage or replica.se in unreachable.errors:
                    continue
                with unreachable.trying(replica.se):
                    if not env.se(replica.se).exists(entry.lfn):
                        yield Problem(
                            "catalog-without-file", entry.lfn, f"{catalog.name} lists it at {replica.se}"
                        )
    report.checked["catalog_replicas"] = replicas


def _explained(env: Environment, uploads: list[MachineRow]) -> set[tuple[str, str]]:
    """The (SE, LFN) pairs that ended or waiting uploads and the catalogs account for."""
    known = {(r.se, entry.lfn) for c in env.catalogs for entry, reps in c.iter_files() for r in reps}
    for row in uploads:
        known.update((se, row.data["lfn"]) for se in _accounted(row)[0])
    return known


def _accounted(row: MachineRow) -> tuple[list[str], list[str]]:
    """The SEs where an upload accounts for its LFN's object, and those where it may be putting it now."""
    data = row.data
    ses = [data["uploaded_se"]] if data.get("uploaded_se") else []
    if row.state in (UploadState.FAILED_OVER, UploadState.REPLICATING, UploadState.STUCK):
        ses += data["targets"]
    uploading = [c["se"] for c in data["candidates"]] if row.state == UploadState.UPLOADING else []
    return ses, uploading


def _unexplained(env: Environment, se: str, lfn: str) -> Problem | None:
    """
    What an object the snapshot did not explain is, judged again on the uploads and catalogs as they are
    now: an upload that started or moved on since the snapshot explains it (None).
    """
    for machine_id in machine_ids(lfn):
        row = env.uploads.find(machine_id)
        if row is None:
            break
        ses, uploading = _accounted(row)
        if se in ses:
            return None
        if se in uploading:
            return Problem("in-flight-upload", f"{se}:{lfn}", f"put by upload {row.id}, {_IN_FLIGHT}")
    if any(replica.se == se for catalog in env.catalogs for replica in catalog.get_replicas(lfn)):
        return None
    return Problem("dark-data", f"{se}:{lfn}", "no upload or catalog entry explains this object")


_IN_FLIGHT = "still Uploading: `failover resume` finishes it"
_TEMPORARY_FILE = "left by an interrupted put: with nothing uploading, `resume --remove-temporary` deletes it"


def _check_storage(
    env: Environment, uploads: list[MachineRow], report: FsckReport, unreachable: _Unreachable
) -> Iterator[Problem]:
    try:
        known = _explained(env, uploads)
    except FailoverError:
        return  # a catalog that does not answer was reported already; dark data cannot be judged
    objects = 0
    for name, se in env.storage.items():
        if name in unreachable.errors:
            continue
        with unreachable.trying(name):
            lfns, temporary = list(se.list_lfns()), list(se.list_temporary())
            objects += len(lfns)
            for lfn in lfns:
                # Judged again now if the snapshot does not explain it: an upload may have started, or
                # recorded its put, since.
                if (name, lfn) not in known and (problem := _unexplained(env, name, lfn)) is not None:
                    yield problem
            for path in temporary:
                yield Problem("temporary-file", f"{name}:{path}", _TEMPORARY_FILE)
    report.checked["objects"] = objects
