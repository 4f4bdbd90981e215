"""
fsck finds each violation it names: one workspace in good order, broken one way per case.

The crash tests prove recovery by fsck finding nothing; these prove that fsck would have found something.
"""

from __future__ import annotations

import dataclasses
import importlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failover import Environment, Executor, fsck, open_workspace, resume, upload
from failover.catalog import FileEntry, Replica
from failover.request import File, Operation, OperationType
from failover.storage import StorageElement
from failover.testing import Fault, FaultInjector
from failover.uploads import plan_upload
from persistence.requests import RequestHeader
from states import UploadState

#: The module, which ``failover.fsck`` (the function, re-exported by the package) hides.
fsck_module = importlib.import_module("failover.fsck")
JOB = RequestHeader("fsck-job", name="fsck-job", owner="alice", owner_group="vo")
REGISTERED = "/vo/fsck/registered.root"
CLEANED = "/vo/fsck/cleaned.root"
CATALOG = "LocalCatalog"


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """One upload Registered at DEST, one failed over to FAIL and then Cleaned: fsck finds nothing."""
    faults = FaultInjector()
    env = open_workspace(tmp_path / "ws", ses=("DEST", "FAIL"))
    for name, fill in (("registered.root", b"r"), ("cleaned.root", b"c")):
        (tmp_path / name).write_bytes(fill * 1000)
    upload(env, tmp_path / "registered.root", REGISTERED, destinations=["DEST"], request=JOB)
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, operation="put", times=1)
    failed_over = upload(
        faults.wrap(env),
        tmp_path / "cleaned.root",
        CLEANED,
        destinations=["DEST"],
        failovers=["FAIL"],
        request=JOB,
    )
    assert failed_over.state == UploadState.FAILED_OVER
    request = env.requests.find(JOB.client_key)
    assert request is not None
    env.requests.commit(request.id)
    Executor(env).run_once()
    assert env.uploads.load(CLEANED).state == UploadState.CLEANED
    report = fsck(env)
    assert report.ok, report.problems
    return env


def _object(env: Environment, se: str, lfn: str) -> Path:
    return Path(env.se(se).pfn(lfn).removeprefix("file://"))


def _sql(env: Environment, statement: str, *args: object) -> None:
    with env.store.transaction() as conn:
        conn.execute(statement, args)


def _in_flight(env: Environment, tmp_path: Path) -> None:
    """Created and put, then the process died: the machine is Uploading, the object at its SE."""
    local = tmp_path / "in-flight.root"
    local.write_bytes(b"f" * 500)
    machine_id, data = plan_upload(env, local, "/vo/fsck/in-flight.root", destinations=["DEST"], request=JOB)
    assert data is not None
    env.uploads.create(machine_id, data)
    env.se("DEST").put(local, "/vo/fsck/in-flight.root")


def _dangling_operation(env: Environment) -> None:
    """A row that refers to a request that does not exist (written with the foreign keys off)."""
    conn = env.store.conn
    conn.execute("PRAGMA foreign_keys = OFF")
    columns = "request_id, idem_key, machine_id, order_no, type, status, target_se, source_se, catalog, "
    columns += "arguments, error, creation_time, last_update"
    with env.store.transaction():
        conn.execute(
            f"INSERT INTO operations ({columns}) VALUES (999, 'x', NULL, 1, 'RemoveFile', 'Queued', '', '', "
            "'', '{}', '', '2026-01-01', '2026-01-01')"
        )
    conn.execute("PRAGMA foreign_keys = ON")


def _delete_operation(env: Environment, machine_id: str, kind: str) -> None:
    where = "machine_id = ? AND type = ?"
    _sql(
        env,
        f"DELETE FROM files WHERE operation_id IN (SELECT id FROM operations WHERE {where})",
        machine_id,
        kind,
    )
    _sql(env, f"DELETE FROM operations WHERE {where}", machine_id, kind)


#: What each case breaks, and the problem codes fsck must report (all of them, and no other).
BREAKAGES: dict[str, tuple[Callable[[Environment, Path], object], set[str]]] = {
    "replica deleted": (
        lambda env, _: _object(env, "DEST", REGISTERED).unlink(),
        {"missing-replica", "catalog-without-file"},
    ),
    "replica of another size": (
        lambda env, _: _object(env, "DEST", REGISTERED).write_bytes(b"r" * 999),
        {"bad-replica"},
    ),
    "replica of the same size, other bytes": (
        lambda env, _: _object(env, "DEST", REGISTERED).write_bytes(b"R" + b"r" * 999),
        {"bad-replica"},
    ),
    "catalog entry removed": (
        lambda env, _: env.catalogs.get(CATALOG).remove_file(REGISTERED),
        {"catalog-entry"},
    ),
    "catalog replica removed": (
        lambda env, _: env.catalogs.get(CATALOG).remove_replica(REGISTERED, "DEST"),
        {"catalog-replica"},
    ),
    "failover copy put back": (
        lambda env, tmp: env.se("FAIL").put(_object(env, "DEST", CLEANED), CLEANED),
        {"temporary-replica"},
    ),
    "catalog lists a file that is gone": (
        lambda env, _: env.catalogs.get(CATALOG).register_file(
            FileEntry(
                "/vo/fsck/ghost.root", 1, "00000001", "ADLER32", "0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9"
            ),
            Replica("/vo/fsck/ghost.root", "DEST", "file:///nowhere"),
        ),
        {"catalog-without-file"},
    ),
    "object nobody put": (
        lambda env, tmp: env.se("DEST").put(_object(env, "DEST", REGISTERED), "/vo/fsck/stray.root"),
        {"dark-data"},
    ),
    "object of an upload in flight": (_in_flight, {"in-flight-upload"}),
    "temporary file left": (
        lambda env, _: (_object(env, "DEST", REGISTERED).parent / f".x.root.failover-tmp-{'0' * 32}").touch(),
        {"temporary-file"},
    ),
    "state changed behind the journal": (
        lambda env, _: _sql(env, "UPDATE machines SET state = 'Failed' WHERE id = ?", REGISTERED),
        {"journal-replay"},
    ),
    "operation deleted": (
        lambda env, _: _delete_operation(env, CLEANED, "RemoveReplica"),
        {"lost-operation"},
    ),
    "operation copied": (
        lambda env, _: _sql(
            env,
            "INSERT INTO operations (request_id, idem_key, machine_id, order_no, type, status, target_se, "
            "source_se, catalog, arguments, error, creation_time, last_update) SELECT request_id, "
            "idem_key || '/again', machine_id, order_no + 100, type, status, target_se, source_se, catalog, "
            "arguments, error, creation_time, last_update FROM operations WHERE machine_id = ? LIMIT 1",
            CLEANED,
        ),
        {"duplicate-operation"},
    ),
    "operation pointing nowhere": (lambda env, _: _dangling_operation(env), {"store-integrity"}),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_violation_is_found_and_named(env: Environment, tmp_path: Path, breakage: str) -> None:
    breaking, codes = BREAKAGES[breakage]
    breaking(env, tmp_path)
    report = fsck(env)
    assert {problem.code for problem in report.problems} == codes, report.problems


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_quick_check_finds_the_same_except_bytes_changed_in_place(
    env: Environment, tmp_path: Path, breakage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read=False`` (``fsck --quick``) reads no replica back: only a same-size rewrite goes unseen."""
    breaking, codes = BREAKAGES[breakage]
    breaking(env, tmp_path)
    monkeypatch.setattr(StorageElement, "_read_checksum", _no_read)
    report = fsck(env, read=False)
    same_size = breakage == "replica of the same size, other bytes"
    assert {problem.code for problem in report.problems} == (set() if same_size else codes), report.problems


def _no_read(*args: object, **kwargs: object) -> str:
    raise AssertionError("a quick check read a replica back")


def test_a_quick_check_counts_the_replicas_it_compared_by_size(env: Environment) -> None:
    quick, full = fsck(env, read=False), fsck(env)
    # Two final replicas at DEST, whose local disk reports no checksum.
    assert quick.checked == {**full.checked, "replicas_by_size": 2}
    assert "replicas_by_size" not in full.checked


def test_a_replica_that_differs_says_how(env: Environment) -> None:
    _object(env, "DEST", REGISTERED).write_bytes(b"r" * 999)
    (problem,) = fsck(env).problems
    assert problem.message == f"DEST holds 999 bytes of {REGISTERED}, not 1,000"


def test_an_upload_in_flight_is_named_with_what_finishes_it(env: Environment, tmp_path: Path) -> None:
    """After a crash, the objects of the uploads in flight are theirs, not dark data; resume ends them."""
    _in_flight(env, tmp_path)
    (problem,) = fsck(env).problems
    assert problem.subject == "DEST:/vo/fsck/in-flight.root"
    assert (
        problem.message
        == "put by upload /vo/fsck/in-flight.root, still Uploading: `failover resume` finishes it"
    )
    resume(env)
    assert fsck(env).ok


def test_an_se_that_does_not_answer_is_named_and_nothing_there_is_judged(env: Environment) -> None:
    """
    DEST's storage not mounted (a root whose mount is not a mount point): fsck names it once, calls no
    replica there missing and no catalog entry unbacked, and still checks the rest (dark data at FAIL).
    """
    dest = env.storage["DEST"]
    root = _object(env, "DEST", REGISTERED).parents[2]  # <root>/vo/fsck/registered.root
    env.storage["DEST"] = StorageElement("DEST", dest.url, mount=root)
    env.se("FAIL").put(_object(env, "DEST", REGISTERED), "/vo/fsck/dark.root")
    report = fsck(env)
    assert [(p.code, p.subject) for p in report.problems] == [
        ("dark-data", "FAIL:/vo/fsck/dark.root"),
        ("storage-unavailable", "DEST"),
    ]
    assert report.problems[1].message == (
        f"DEST: {root}, its configured mount, is not mounted: nothing beneath it is read or written until "
        "it is (nothing it holds was checked)"
    )
    env.storage["DEST"] = dest  # mounted again
    assert [p.code for p in fsck(env).problems] == ["dark-data"]


def _while_fsck_reads(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> None:
    """Run ``meanwhile`` (another process's work) right after fsck has read the uploads."""
    read = fsck_module.iter_machines

    def then_meanwhile(*args: Any, **kwargs: Any) -> Any:
        rows = list(read(*args, **kwargs))
        meanwhile()
        return rows

    monkeypatch.setattr(fsck_module, "iter_machines", then_meanwhile)


def test_an_executor_running_during_fsck_is_not_taken_for_a_broken_journal(
    env: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    fsck reads the database in one snapshot: the upload's row and its journal as they stood together,
    although the executor takes the upload from FailedOver to Cleaned in between.
    """
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, operation="put", times=1)
    (tmp_path / "late.root").write_bytes(b"l" * 700)
    late = "/vo/fsck/late.root"
    header = dataclasses.replace(JOB, client_key="late-job")
    options: dict[str, Any] = {"destinations": ["DEST"], "failovers": ["FAIL"], "request": header}
    upload(faults.wrap(env), tmp_path / "late.root", late, **options)
    request = env.requests.find(header.client_key)
    assert request is not None and env.uploads.load(late).state == UploadState.FAILED_OVER
    env.requests.commit(request.id)
    executor_env = open_workspace(tmp_path / "ws", ses=("DEST", "FAIL"))
    _while_fsck_reads(monkeypatch, lambda: Executor(executor_env).run_once())
    report = fsck(env)
    assert report.ok, report.problems
    assert env.uploads.load(late).state == UploadState.CLEANED  # it did run during the check
    executor_env.close()


def test_an_upload_that_starts_during_fsck_is_not_taken_for_dark_data(
    env: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    An upload made after fsck read the uploads, its registration deferred (the catalog down): its object
    is judged again on the uploads as they are now, and found to be that upload's.
    """
    (tmp_path / "new.root").write_bytes(b"n" * 600)
    faults = FaultInjector()
    faults.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    other = faults.wrap(open_workspace(tmp_path / "ws", ses=("DEST", "FAIL")))

    def upload_meanwhile() -> None:
        result = upload(other, tmp_path / "new.root", "/vo/fsck/new.root", destinations=["DEST"], request=JOB)
        assert result.state == UploadState.REGISTERING

    _while_fsck_reads(monkeypatch, upload_meanwhile)
    report = fsck(env)
    assert report.ok, report.problems
    other.store.close()


def test_the_store_is_checked_with_sqlite_itself(env: Environment) -> None:
    """store-integrity comes from SQLite's own checks, run on the live connection."""
    _dangling_operation(env)
    assert sqlite3.connect(env.store.path).execute("PRAGMA foreign_key_check").fetchall()
    (problem,) = fsck(env).problems
    assert problem.code == "store-integrity" and "operations" in problem.message


def _on(kind: OperationType, lfn: str, *ses: str) -> Operation:
    """An operation of ``kind`` on ``lfn`` (at ``ses``), as a job's own request holds it."""
    return Operation(kind, target_se=list(ses), files=[File(lfn)])


def _later_request(env: Environment, *operations: Operation) -> None:
    """A job's own request, run after the uploads ended: it moves their files on."""
    request_id = env.requests.ensure(RequestHeader("later", owner="alice", owner_group="vo"))
    env.requests.add_operations(request_id, list(operations))
    env.requests.commit(request_id)
    assert Executor(env).run_once() >= 1
    assert env.requests.load(request_id).status == "Done"


def test_what_a_later_request_did_to_an_ended_upload_is_not_a_problem(env: Environment) -> None:
    _later_request(
        env,
        _on(OperationType.ReplicateAndRegister, REGISTERED, "FAIL"),
        _on(OperationType.RemoveReplica, REGISTERED, "DEST"),
        _on(OperationType.ReplicateAndRegister, CLEANED, "FAIL"),
        _on(OperationType.RemoveFile, CLEANED),
    )
    assert not env.se("DEST").exists(REGISTERED) and not env.se("DEST").exists(CLEANED)

    report = fsck(env)

    assert report.ok, report.problems
    # REGISTERED's replica at DEST, CLEANED's at DEST (its copy back at FAIL went with the RemoveFile).
    assert report.checked["changed_later"] == 2


def test_a_later_removal_elsewhere_does_not_excuse_a_lost_replica(env: Environment) -> None:
    _later_request(env, _on(OperationType.RemoveReplica, REGISTERED, "FAIL"))
    _object(env, "DEST", REGISTERED).unlink()

    codes = {problem.code for problem in fsck(env).problems}

    assert "missing-replica" in codes


def test_a_replica_copied_back_after_a_later_removal_is_checked_again(env: Environment) -> None:
    _later_request(
        env,
        _on(OperationType.ReplicateAndRegister, REGISTERED, "FAIL"),
        _on(OperationType.RemoveReplica, REGISTERED, "DEST"),
        _on(OperationType.ReplicateAndRegister, REGISTERED, "DEST"),
    )
    assert fsck(env).ok
    _object(env, "DEST", REGISTERED).unlink()

    codes = {problem.code for problem in fsck(env).problems}

    assert "missing-replica" in codes


def test_a_cleaned_upload_copied_back_to_its_failover_se_by_a_later_request_is_not_a_problem(
    env: Environment,
) -> None:
    _later_request(env, _on(OperationType.ReplicateAndRegister, CLEANED, "FAIL"))
    assert env.se("FAIL").exists(CLEANED)

    report = fsck(env)

    assert report.ok, report.problems
    assert report.checked["changed_later"] == 1
