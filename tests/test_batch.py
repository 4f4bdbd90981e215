"""upload_many: one commit per batch, the same outcomes and crash guarantees as one upload at a time."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest
from batch_support import batch_files

from failover import Environment, fsck, open_workspace, resume, uploads
from failover.batch import BatchItem, upload_many
from failover.errors import InvalidInput, RegistrationRefused, UploadFailed, UploadInterrupted
from failover.testing import Fault, FaultInjector
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from persistence.requests import RequestHeader
from states import UploadState

REQUEST = RequestHeader("batch-test")


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """A workspace with a destination and a failover SE, faults scriptable through ``env.faults``."""
    return open_workspace(tmp_path / "ws", ses=("DEST", "FAIL"))


def test_every_file_is_registered_with_one_result_each(tmp_path: Path, env: Environment) -> None:
    items = batch_files(tmp_path, 7)
    results = upload_many(env, items, destinations=["DEST"], request=REQUEST, batch_size=3)
    assert [r.lfn for r in results] == [i.lfn for i in items]  # type: ignore[union-attr]
    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert sorted(env.se("DEST").list_lfns()) == sorted(i.lfn for i in items)
    assert fsck(env).ok


def test_a_batch_commits_its_machines_and_outcomes_once(tmp_path: Path, env: Environment) -> None:
    """Four uploads in one batch: 3 transactions for the machines and outcomes, not 2 per file."""
    commits = []
    env.store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    upload_many(env, batch_files(tmp_path, 4), destinations=["DEST"], request=REQUEST)
    env.store.conn.set_trace_callback(None)
    assert len(commits) == 2


def test_bad_input_fails_only_that_file(tmp_path: Path, env: Environment) -> None:
    items = batch_files(tmp_path, 3)
    items[1] = BatchItem(items[1].local_path, "relative/lfn")
    results = upload_many(env, items, destinations=["DEST"], request=REQUEST)
    assert isinstance(results[1], InvalidInput)
    assert [type(r).__name__ for r in (results[0], results[2])] == ["UploadResult", "UploadResult"]


@pytest.mark.parametrize("lists", [{"failovers": ["NOPE"]}, {"targets": ["DEST, NOPE"]}])
def test_an_unknown_failover_or_target_se_is_refused_before_anything_is_stored(
    tmp_path: Path, env: Environment, lists: dict[str, list[str]]
) -> None:
    results = upload_many(env, batch_files(tmp_path, 2), destinations=["DEST"], request=REQUEST, **lists)
    assert [type(r).__name__ for r in results] == ["UnknownStorageElement"] * 2
    assert [getattr(r, "se", None) for r in results] == ["NOPE"] * 2
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (0,)
    assert list(env.se("DEST").list_lfns()) == []


def test_the_names_are_checked_once_per_call_and_still_after_each_files_own_checks(
    tmp_path: Path, env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown SE fails every file, but a file whose LFN is bad reports its LFN first (SPEC §1 order)."""
    checks = []
    real = uploads.validate_ses
    monkeypatch.setattr(uploads, "validate_ses", lambda *args: checks.append(args) or real(*args))
    items = batch_files(tmp_path, 4)
    items[2] = BatchItem(items[2].local_path, "relative/lfn")

    results = upload_many(env, items, destinations=["DEST", "NOPE"], catalogs="NOCAT", request=REQUEST)

    assert len(checks) == 1
    assert [type(r).__name__ for r in results] == ["UnknownStorageElement"] * 2 + ["InvalidInput"] + [
        "UnknownStorageElement"
    ]
    assert [r.lfn for r in results] == [i.lfn for i in items]  # type: ignore[union-attr]
    items = batch_files(tmp_path, 3)
    refused = upload_many(env, items, destinations=["DEST"], catalogs="NOCAT", request=REQUEST)
    assert {type(r).__name__ for r in refused} == {"UnknownCatalog"}


def test_a_failing_first_se_sends_the_batch_to_the_failover_se_as_a_batch(
    tmp_path: Path, env: Environment
) -> None:
    """Three files, DEST down: one commit creates them, one records the failures, one the landings."""
    faults = FaultInjector()
    wrapped = faults.wrap(env)
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=None)
    commits = []
    env.store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    results = upload_many(
        wrapped, batch_files(tmp_path, 3), destinations=["DEST"], failovers=["FAIL"], request=REQUEST
    )
    env.store.conn.set_trace_callback(None)
    assert {r.state for r in results} == {UploadState.FAILED_OVER}  # type: ignore[union-attr]
    assert len(commits) == 3
    assert faults.calls[("DEST", "put")] == 3, "each file tried DEST exactly once"
    assert faults.calls[("FAIL", "put")] == 3
    assert [len(r.operations) for r in results] == [2, 2, 2]  # type: ignore[union-attr]
    assert fsck(wrapped).ok


def test_an_upload_whose_next_try_must_wait_waits_then_tries_in_the_next_round(
    tmp_path: Path, env: Environment
) -> None:
    """With retryUpload and one SE, a transient failure waits (once), then the file is put again."""
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=1)
    sleeps: list[float] = []
    wrapped = dataclasses.replace(faults.wrap(env), sleeper=sleeps.append)
    results = upload_many(
        wrapped, batch_files(tmp_path, 2), destinations=["DEST"], retry_upload=True, request=REQUEST
    )
    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert faults.calls[("DEST", "put")] == 3 and len(sleeps) == 1


def test_files_that_must_wait_before_trying_again_wait_together(tmp_path: Path, env: Environment) -> None:
    """
    Their SE down, 20 files with retryUpload wait DIRAC's 10, 60 and 300 s once, together: before, each
    file went through its whole schedule after the one before it (256 files: over a day).
    """
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=None)
    sleeps: list[float] = []
    wrapped = dataclasses.replace(faults.wrap(env), sleeper=sleeps.append)
    results = upload_many(wrapped, batch_files(tmp_path, 20), destinations=["DEST"], retry_upload=True)
    assert all(isinstance(r, UploadFailed) for r in results)
    assert faults.calls[("DEST", "put")] == 20 * 4
    assert sleeps == pytest.approx([10, 60, 300], abs=1)
    assert {env.uploads.load(i.lfn).data["attempts"]["DEST"] for i in batch_files(tmp_path, 20)} == {4}


def test_a_stop_during_a_retry_wait_leaves_the_files_in_flight_for_the_same_call_again(
    tmp_path: Path, env: Environment
) -> None:
    """Ctrl-C while the batch waits 300 s: it stops at once; called again, the uploads go on from there."""
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=None)
    stopping = threading.Event()
    sleeps: list[float] = []

    def sleeper(seconds: float) -> None:
        sleeps.append(seconds)
        stopping.set()  # the signal arrives during the first slice of the wait

    wrapped = dataclasses.replace(faults.wrap(env), sleeper=sleeper)
    items = batch_files(tmp_path, 3)
    stopped = upload_many(wrapped, items, destinations=["DEST"], retry_upload=True, stopping=stopping)
    assert all(isinstance(r, UploadInterrupted) and "left in flight" in str(r) for r in stopped)
    assert len(sleeps) == 1 and sleeps[0] <= 0.2
    assert {env.uploads.load(item.lfn).state for item in items} == {UploadState.UPLOADING}

    faults.clear()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=3)  # one more failed try each, then it is back
    again = dataclasses.replace(faults.wrap(env), sleeper=lambda seconds: None)
    results = upload_many(again, items, destinations=["DEST"], retry_upload=True)
    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert {env.uploads.load(i.lfn).data["attempts"]["DEST"] for i in items} == {2}
    assert fsck(env).ok


def _stopped_while_waiting(env: Environment, items: list[BatchItem]) -> FaultInjector:
    """Upload ``items`` with retryUpload while DEST is down, stopped in the first wait; DEST stays down."""
    faults = FaultInjector()
    faults.inject("DEST", Fault.STORAGE_UNAVAILABLE, times=None)
    stopping = threading.Event()
    stopped = dataclasses.replace(faults.wrap(env), sleeper=lambda seconds: stopping.set())
    outcomes = upload_many(stopped, items, destinations=["DEST"], retry_upload=True, stopping=stopping)
    assert all(isinstance(outcome, UploadInterrupted) for outcome in outcomes)
    return faults


def test_files_that_may_go_now_are_not_held_back_by_files_that_must_wait(
    tmp_path: Path, env: Environment
) -> None:
    """The same call again, with new files too: the new ones are put first, then the batch waits."""
    items = batch_files(tmp_path, 5)
    faults = _stopped_while_waiting(env, items[:3])
    faults.clear()
    states_at_the_wait: list[set[str]] = []

    def sleeper(seconds: float) -> None:
        states_at_the_wait.append({env.uploads.load(item.lfn).state for item in items[3:]})

    again = dataclasses.replace(faults.wrap(env), sleeper=sleeper)
    results = upload_many(again, items, destinations=["DEST"], retry_upload=True)

    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert states_at_the_wait == [{UploadState.REGISTERED}]


def test_resume_waits_once_for_the_uploads_left_waiting(tmp_path: Path, env: Environment) -> None:
    items = batch_files(tmp_path, 5)
    faults = _stopped_while_waiting(env, items)
    sleeps: list[float] = []

    report = resume(dataclasses.replace(faults.wrap(env), sleeper=sleeps.append))

    assert sorted(report.failed) == sorted(item.lfn for item in items)
    assert sleeps == pytest.approx([10, 60, 300], abs=1)


def test_total_failure_is_reported_per_file(tmp_path: Path, env: Environment) -> None:
    faults = FaultInjector()
    wrapped = faults.wrap(env)
    faults.inject("DEST", Fault.PUT_ERROR, times=None)
    results = upload_many(wrapped, batch_files(tmp_path, 2), destinations=["DEST"], request=REQUEST)
    assert all(isinstance(r, UploadFailed) and "DEST" in r.errors for r in results)


def test_a_stop_finishes_the_batch_being_uploaded_and_leaves_the_rest_alone(
    tmp_path: Path, env: Environment
) -> None:
    items = batch_files(tmp_path, 7)
    stopping = threading.Event()
    results = upload_many(
        env,
        items,
        destinations=["DEST"],
        request=REQUEST,
        batch_size=3,
        on_result=lambda *_: stopping.set(),
        stopping=stopping,
    )
    assert [r.state for r in results[:3]] == [UploadState.REGISTERED] * 3  # type: ignore[union-attr]
    assert {type(r) for r in results[3:]} == {UploadInterrupted}
    assert [r.lfn for r in results[3:]] == [i.lfn for i in items[3:]]  # type: ignore[union-attr]
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (3,)
    assert sorted(env.se("DEST").list_lfns()) == sorted(i.lfn for i in items[:3])
    assert fsck(env).ok


def test_running_the_same_batch_again_continues_and_puts_nothing(tmp_path: Path, env: Environment) -> None:
    items = batch_files(tmp_path, 5)
    upload_many(env, items, destinations=["DEST"], request=REQUEST)
    faults = FaultInjector()
    again = upload_many(faults.wrap(env), items, destinations=["DEST"], request=REQUEST)
    assert {r.state for r in again} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert faults.calls[("DEST", "put")] == 0
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (5,)


@pytest.mark.parametrize(
    "point",
    ["after-commit:batch:create", "after-put@3", "after-register", "before-commit:batch:outcomes"],
)
def test_a_crash_mid_batch_loses_nothing_and_copies_nothing_twice(tmp_path: Path, point: str) -> None:
    """Kill a real process inside the batch; resume finishes every upload, each file put once."""
    home = tmp_path / "ws"
    items = batch_files(tmp_path, 4)
    pid = os.fork()
    if pid == 0:  # the child uploads with the crash point armed, and dies there
        os.environ[CRASH_AT] = point
        upload_many(open_workspace(home, ses=("DEST", "FAIL")), items, destinations=["DEST"], request=REQUEST)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == CRASH_EXIT_CODE
    env = open_workspace(home, ses=("DEST", "FAIL"))
    faults = FaultInjector()
    wrapped = faults.wrap(env)
    resume(wrapped, remove_temporary=True)
    results = upload_many(wrapped, items, destinations=["DEST"], request=REQUEST)
    assert {r.state for r in results} == {UploadState.REGISTERED}  # type: ignore[union-attr]
    assert fsck(env).ok, fsck(env).problems
    assert sorted(env.se("DEST").list_lfns()) == sorted(i.lfn for i in items)
    assert faults.calls[("DEST", "put")] <= 4, "a put already done is found, not repeated"


@pytest.mark.parametrize("order", ["file first", "directory's file first"])
def test_a_file_whose_lfn_clashes_with_anothers_of_the_call_is_refused_alone(
    tmp_path: Path, env: Environment, order: str
) -> None:
    """
    /vo/batch/f0 and /vo/batch/f0/part1 in one call: the later one is refused before anything of it is
    stored. Before, the destination refused whichever came second, it went to the failover SE, and its
    registration and replication could never succeed.
    """
    items = batch_files(tmp_path, 3)
    items[1] = BatchItem(items[1].local_path, f"{items[0].lfn}/part1")
    if order != "file first":
        items[0], items[1] = items[1], items[0]
    outcomes = upload_many(env, items, destinations=["DEST"], failovers=["FAIL"], request=REQUEST)
    refused = outcomes[1]
    assert isinstance(refused, InvalidInput) and refused.lfn == items[1].lfn
    assert "another file of this upload: a name is a file or a directory, never both" in str(refused)
    assert [getattr(outcomes[i], "state", None) for i in (0, 2)] == [UploadState.REGISTERED] * 2
    assert sorted(env.se("DEST").list_lfns()) == sorted([items[0].lfn, items[2].lfn])
    assert list(env.se("FAIL").list_lfns()) == []
    assert env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone() == (2,)
    assert env.store.conn.execute("SELECT COUNT(*) FROM operations").fetchone() == (0,)


def test_a_file_below_one_registered_by_an_earlier_call_is_refused_by_the_catalog(
    tmp_path: Path, env: Environment
) -> None:
    items = batch_files(tmp_path, 2)
    first = upload_many(env, items[:1], destinations=["DEST"], failovers=["FAIL"], request=REQUEST)
    below = BatchItem(items[1].local_path, f"{items[0].lfn}/part1")
    (refused,) = upload_many(env, [below], destinations=["DEST"], failovers=["FAIL"], request=REQUEST)
    assert getattr(first[0], "state", None) == UploadState.REGISTERED
    assert isinstance(refused, RegistrationRefused)
    assert f"refuses {below.lfn}: {items[0].lfn} is a file, not a directory" in str(refused)
    assert list(env.se("DEST").list_lfns()) == [items[0].lfn]
    assert list(env.se("FAIL").list_lfns()) == []


def test_a_file_whose_name_is_not_utf8_is_refused_alone(tmp_path: Path, env: Environment) -> None:
    """Its path could not be stored in the upload's record: refused up front, the batch goes on."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9.root"
    with open(raw, "wb") as written:
        written.write(b"events")
    good = batch_files(tmp_path, 2)
    items = [good[0], BatchItem(os.fsdecode(raw), "/vo/batch/cafe.root"), good[1]]
    outcomes = upload_many(env, items, destinations=["DEST"])
    assert isinstance(outcomes[1], InvalidInput) and "not valid Unicode" in str(outcomes[1])
    assert [getattr(outcomes[i], "state", None) for i in (0, 2)] == [UploadState.REGISTERED] * 2
