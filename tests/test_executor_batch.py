"""
The executor's batch path for failover requests (failover/executor/batch.py): per round one catalog
commit and one store commit for many requests, with the one-at-a-time order of effects per request, and
everything off the happy path handed back to the one-at-a-time path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.errors import CatalogUnavailable
from failover.executor import Executor, ExecutorPolicy, PassReport
from failover.request import FileStatus, RequestStatus
from failover.testing import Fault, FaultInjector
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from states import UploadState

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = ExecutorPolicy(lease_seconds=120.0, jitter=0.0, backoff_base=60.0)
CATALOG = "LocalCatalog"


class RecordingInjector(FaultInjector):
    """A fault injector that also keeps the order of the calls it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.sequence: list[tuple[str, str, str | None]] = []
        self.probe: dict[tuple[str, str], Any] = {}

    def check(self, target: str, operation: str, lfn: str | None = None) -> None:
        """Keep the call, run its probe if any, then count it and apply scripted faults."""
        self.sequence.append((target, operation, lfn))
        if (target, operation) in self.probe:
            self.probe[(target, operation)](lfn)
        super().check(target, operation, lfn)


@pytest.fixture
def injector() -> RecordingInjector:
    """Overrides conftest's: these tests look at the order of storage and catalog calls."""
    return RecordingInjector()


def _jobs(
    env: Environment, tmp_path: Path, count: int, files_per_job: int = 1, name: str = "batch"
) -> list[list[str]]:
    """``count`` jobs, each failing over its files to FAIL-1 (target SE-A) and committing its request."""
    jobs = []
    for job in range(count):
        client = FailoverTransfer(environment=env)
        lfns = []
        for n in range(files_per_job):
            lfn = f"/vo/{name}/job{job}/out{n}.root"
            local = tmp_path / "job" / name / f"{job}-{n}.root"
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(f"job {job} file {n}\n".encode() * 50)
            result = client.transferAndRegisterFileFailover(local.name, str(local), lfn, "SE-A", "FAIL-1", {})
            assert result["OK"] and result["Value"]["uploadedSE"] == "FAIL-1"
            lfns.append(lfn)
        assert client.commitRequest()["OK"]
        jobs.append(lfns)
    return jobs


def _committed_replicas(home: Path, lfn: str) -> set[str]:
    """The catalog's replicas of ``lfn`` as another process would read them: committed ones only."""
    with sqlite3.connect(home / "catalog.db") as conn:
        return {se for (se,) in conn.execute("SELECT se FROM catalog_replicas WHERE lfn = ?", (lfn,))}


def _commits(env: Environment) -> tuple[list[str], list[str]]:
    """Lists that fill with each COMMIT of the store and of the catalog from now on."""
    store: list[str] = []
    catalog: list[str] = []
    env.store.conn.set_trace_callback(lambda sql: store.append(sql) if sql == "COMMIT" else None)
    inner = env.catalogs.get(CATALOG).inner  # type: ignore[attr-defined]
    inner._open().conn.set_trace_callback(lambda sql: catalog.append(sql) if sql == "COMMIT" else None)
    return store, catalog


def _states(env: Environment, lfns: list[str]) -> list[str]:
    return [env.uploads.load(lfn).state for lfn in lfns]


def test_a_batch_of_failover_requests_commits_once_per_round(client_env: Environment, tmp_path: Path) -> None:
    jobs = _jobs(client_env, tmp_path, 5)
    store_commits, catalog_commits = _commits(client_env)

    assert Executor(client_env, POLICY).run_once() == 5

    assert len(store_commits) == 3, "the take, the round's record, the take that finds nothing"
    assert len(catalog_commits) == 1, "every registration and catalog removal of the round"
    lfns = [lfn for job in jobs for lfn in job]
    assert _states(client_env, lfns) == [UploadState.CLEANED] * 5
    assert [client_env.requests.load(n).status for n in range(1, 6)] == [RequestStatus.Done] * 5


def test_a_failover_replica_is_removed_only_after_the_catalog_commit_that_unregisters_it(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    _jobs(client_env, tmp_path, 3)
    seen: dict[str, set[str]] = {}
    home = tmp_path / "ws"
    injector.probe[("FAIL-1", "remove")] = lambda lfn: seen.setdefault(lfn, _committed_replicas(home, lfn))

    Executor(client_env, POLICY).run_once()

    assert len(seen) == 3
    assert all(replicas == {"SE-A"} for replicas in seen.values()), seen


def test_a_request_of_many_pairs_runs_them_in_one_round_with_its_catalog_and_removals_in_order(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """
    What ``failover upload`` of many files leaves: one request, a pair per file. Its pairs share one
    round (one catalog commit, one store commit); the copies run ahead, but each file's registration
    and catalog removal come in the request's order, and each object removal after the catalog commit.
    """
    ((first, second, third),) = _jobs(client_env, tmp_path, 1, files_per_job=3)
    injector.sequence.clear()
    store_commits, catalog_commits = _commits(client_env)

    assert Executor(client_env, POLICY).run_once() == 1

    effects = {
        ("SE-A", "copy"),
        (CATALOG, "register_replica"),
        (CATALOG, "remove_replica"),
        ("FAIL-1", "remove"),
    }
    assert [(t, op, lfn) for t, op, lfn in injector.sequence if (t, op) in effects] == [
        ("SE-A", "copy", first),
        ("SE-A", "copy", second),
        ("SE-A", "copy", third),
        *(
            step
            for lfn in (first, second, third)
            for step in ((CATALOG, "register_replica", lfn), (CATALOG, "remove_replica", lfn))
        ),
        ("FAIL-1", "remove", first),
        ("FAIL-1", "remove", second),
        ("FAIL-1", "remove", third),
    ]
    assert len(store_commits) == 3, "the take, the round's record, the take that finds nothing"
    assert len(catalog_commits) == 1
    assert _states(client_env, [first, second, third]) == [UploadState.CLEANED] * 3
    assert client_env.requests.load(1).status is RequestStatus.Done


@pytest.mark.parametrize(
    ("batch_size", "round_files", "rounds"),
    [(32, 100, 1), (3, 100, 2), (3, 2, 3), (32, 0, 5)],
    ids=["all-in-one", "batch-size", "round-bytes", "one-by-one"],
)
def test_a_round_of_one_request_takes_as_many_pairs_as_the_policy_lets_it(
    client_env: Environment, tmp_path: Path, batch_size: int, round_files: int, rounds: int
) -> None:
    """``batch_size`` pairs at most, and past the first only while their files total ``round_bytes``."""
    ((*lfns,),) = _jobs(client_env, tmp_path, 1, files_per_job=5)
    size = client_env.requests.load(1).operations[0].files[0].size
    _, catalog_commits = _commits(client_env)

    policy = replace(POLICY, batch_size=batch_size, round_bytes=round_files * size)
    assert Executor(client_env, policy).run_once() == 1

    assert len(catalog_commits) == rounds, "one catalog commit per round"
    assert sorted(client_env.se("SE-A").list_lfns()) == sorted(lfns)
    assert _states(client_env, lfns) == [UploadState.CLEANED] * 5
    assert client_env.requests.load(1).status is RequestStatus.Done


def _files(env: Environment, request_id: int = 1) -> list[tuple[FileStatus, int]]:
    """Each operation's file, in the request's order: (status, attempt)."""
    return [(f.status, f.attempt) for op in env.requests.load(request_id).operations for f in op.files]


def test_a_pair_that_must_wait_stops_its_request_there_and_the_copies_made_ahead_are_removed(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """
    The first file's copy fails (transient): the request waits at its first operation, as one at a time;
    the later pairs were copied ahead, and those copies are removed again, unregistered and unrecorded.
    Once due, the request runs from its first operation and ends Done.
    """
    ((first, second, third),) = _jobs(client_env, tmp_path, 1, files_per_job=3)
    injector.probe[("SE-A", "copy")] = lambda lfn: (
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="copy") if lfn == first else None
    )
    home = tmp_path / "ws"

    with freeze_time(T0):
        Executor(client_env, POLICY).run_once()

    request = client_env.requests.load(1)
    assert request.status is RequestStatus.Waiting and request.not_before is not None
    assert _files(client_env) == [(FileStatus.Waiting, 1)] + [(FileStatus.Waiting, 0)] * 5
    assert list(client_env.se("SE-A").list_lfns()) == []
    assert sorted(client_env.se("FAIL-1").list_lfns()) == sorted([first, second, third])
    assert all(_committed_replicas(home, lfn) == {"FAIL-1"} for lfn in (first, second, third))
    assert _states(client_env, [first, second, third]) == [UploadState.FAILED_OVER] * 3

    injector.probe.clear()
    with freeze_time(T0.replace(hour=14)):
        Executor(client_env, POLICY).run_once()

    assert client_env.requests.load(1).status is RequestStatus.Done
    assert _states(client_env, [first, second, third]) == [UploadState.CLEANED] * 3
    assert all(_committed_replicas(home, lfn) == {"SE-A"} for lfn in (first, second, third))
    assert list(client_env.se("FAIL-1").list_lfns()) == []


def test_a_request_that_fails_for_good_leaves_no_copy_made_ahead(
    client_env: Environment, tmp_path: Path
) -> None:
    """
    The first file's temporary replica is gone: its replication fails for good and so does the request,
    whose later operations never run. Their files were copied ahead; no unregistered copy stays behind,
    and their temporary replicas, still the only ones, are kept.
    """
    from failover.fsck import fsck

    ((first, second, third),) = _jobs(client_env, tmp_path, 1, files_per_job=3)
    assert client_env.se("FAIL-1").remove(first)

    Executor(client_env, POLICY).run_once()

    assert client_env.requests.load(1).status is RequestStatus.Failed
    assert _files(client_env)[0][0] is FileStatus.Failed
    assert _files(client_env)[2:] == [(FileStatus.Waiting, 0)] * 4
    assert list(client_env.se("SE-A").list_lfns()) == []
    assert sorted(client_env.se("FAIL-1").list_lfns()) == sorted([second, third])
    assert all(_committed_replicas(tmp_path / "ws", lfn) == {"FAIL-1"} for lfn in (second, third))
    assert not [p for p in fsck(client_env).problems if "SE-A" in str(p)]


def test_a_removal_that_must_wait_records_its_request_up_to_it_and_the_later_pairs_are_found_done(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """
    The first temporary replica cannot be removed yet (after its catalog entry was): the request is
    recorded up to that removal, which waits. The later pairs went through in the same round (their
    effects are not undone), and are recorded when their turn comes, found done, not copied again.
    """
    ((first, second, third),) = _jobs(client_env, tmp_path, 1, files_per_job=3)
    injector.probe[("FAIL-1", "remove")] = lambda lfn: (
        injector.inject("FAIL-1", Fault.STORAGE_UNAVAILABLE, operation="remove") if lfn == first else None
    )

    with freeze_time(T0):
        Executor(client_env, POLICY).run_once()

    assert (
        _files(client_env) == [(FileStatus.Done, 1), (FileStatus.Waiting, 1)] + [(FileStatus.Waiting, 0)] * 4
    )
    assert client_env.requests.load(1).status is RequestStatus.Waiting
    assert _states(client_env, [first, second, third]) == [
        UploadState.REPLICATING,
        UploadState.FAILED_OVER,
        UploadState.FAILED_OVER,
    ]
    assert sorted(client_env.se("SE-A").list_lfns()) == sorted([first, second, third])
    assert list(client_env.se("FAIL-1").list_lfns()) == [first]

    injector.probe.clear()
    injector.sequence.clear()
    with freeze_time(T0.replace(hour=14)):
        Executor(client_env, POLICY).run_once()

    assert client_env.requests.load(1).status is RequestStatus.Done
    assert _states(client_env, [first, second, third]) == [UploadState.CLEANED] * 3
    assert [call for call in injector.sequence if call[:2] == ("SE-A", "copy")] == []
    assert list(client_env.se("FAIL-1").list_lfns()) == []


@pytest.mark.parametrize("files_per_job", [1, 2], ids=["released", "kept-for-the-next-round"])
def test_a_lease_taken_over_during_the_removals_records_nothing_for_that_request(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path, files_per_job: int
) -> None:
    """
    Another executor takes request 1 after the round's lease check: its release (or, when the round
    keeps it, its renewal) finds the lease gone, so none of its outcomes is recorded; request 2 is.
    """
    taken, other = _jobs(client_env, tmp_path, 2, files_per_job=files_per_job)

    def take_over(lfn: str | None) -> None:
        if lfn == taken[0]:
            client_env.store.conn.execute("UPDATE requests SET lease_owner = 'thief' WHERE id = 1")

    injector.probe[("FAIL-1", "remove")] = take_over

    Executor(client_env, POLICY).run_once()

    request = client_env.requests.load(1)
    assert client_env.store.conn.execute("SELECT lease_owner FROM requests WHERE id = 1").fetchone() == (
        "thief",
    )
    assert [f.status for op in request.operations for f in op.files] == [FileStatus.Waiting] * (
        2 * files_per_job
    )
    assert _states(client_env, taken) == [UploadState.FAILED_OVER] * files_per_job
    assert _states(client_env, other) == [UploadState.CLEANED] * files_per_job
    assert client_env.requests.load(2).status is RequestStatus.Done


def test_an_upload_moved_by_one_request_of_a_round_is_loaded_again_by_the_next_that_names_it(
    client_env: Environment, tmp_path: Path
) -> None:
    """
    Request 1 fails (its source is gone), which makes its upload Stuck; request 2, in the same round,
    names that upload too (edited in by hand). Request 2 must see the upload as request 1 left it, not
    as the round loaded it: its transitions do not apply to a Stuck upload, and the round goes through.
    """
    (first,), (second,) = _jobs(client_env, tmp_path, 2)
    client_env.store.conn.execute("UPDATE operations SET machine_id = ? WHERE request_id = 2", (first,))
    assert client_env.se("FAIL-1").remove(first)

    assert Executor(client_env, POLICY).run_once() == 2

    assert client_env.requests.load(1).status is RequestStatus.Failed
    assert client_env.requests.load(2).status is RequestStatus.Done
    assert _states(client_env, [first]) == [UploadState.STUCK]
    assert client_env.se("SE-A").exists(second) and not client_env.se("FAIL-1").exists(second)


def test_a_round_checks_each_thing_once_and_trusts_the_copy_it_just_verified(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """The target is looked at once before the copy and never read back: the copy's put verified it."""
    (lfn,), _ = _jobs(client_env, tmp_path, 2)
    injector.sequence.clear()

    Executor(client_env, POLICY).run_once()

    calls = [(target, operation) for target, operation, name in injector.sequence if name == lfn]
    assert calls == [
        ("SE-A", "stat"),
        ("LocalCatalog", "get_replicas"),
        ("FAIL-1", "stat"),
        ("FAIL-1", "read"),
        ("SE-A", "copy"),
        ("LocalCatalog", "register_replica"),
        ("LocalCatalog", "get_file"),
        ("LocalCatalog", "get_replicas"),
        ("LocalCatalog", "remove_replica"),
        ("FAIL-1", "remove"),
    ]
    assert _states(client_env, [lfn]) == [UploadState.CLEANED]


@pytest.mark.parametrize("batch_size", [1, 32])
def test_a_copy_that_does_not_match_the_catalog_entry_keeps_the_failover_replica(
    client_env: Environment, tmp_path: Path, batch_size: int
) -> None:
    """
    The copy matches the request, but the catalog entry says another checksum: it is no verified copy
    in the catalog's eyes, on either path, so the failover replica stays (SoleReplica, retried later).
    """
    ((lfn,),) = _jobs(client_env, tmp_path, 1)
    with sqlite3.connect(tmp_path / "ws" / "catalog.db") as conn:
        conn.execute("UPDATE catalog_files SET checksum = '00000001' WHERE lfn = ?", (lfn,))

    with freeze_time(T0):
        Executor(client_env, replace(POLICY, batch_size=batch_size)).run_once()

    replicate, remove = client_env.requests.load(1).operations
    assert replicate.files[0].status is FileStatus.Done
    assert (remove.files[0].status, remove.files[0].attempt) == (FileStatus.Waiting, 1)
    assert "SoleReplica" in remove.files[0].errors[0]
    assert client_env.se("FAIL-1").exists(lfn) and client_env.se("SE-A").exists(lfn)
    assert _committed_replicas(tmp_path / "ws", lfn) == {"FAIL-1", "SE-A"}
    assert _states(client_env, [lfn]) == [UploadState.REPLICATING]


def test_a_batch_of_requests_loads_as_each_request_alone(client_env: Environment, tmp_path: Path) -> None:
    _jobs(client_env, tmp_path, 3, files_per_job=2)
    Executor(client_env, POLICY).run_once()  # statuses, attempts and errors to load back
    _jobs(client_env, tmp_path, 1, files_per_job=2, name="later")

    loaded = client_env.requests.load_many([4, 2, 99, 1])

    assert set(loaded) == {1, 2, 4}
    assert loaded == {n: client_env.requests.load(n) for n in (1, 2, 4)}
    assert [len(loaded[n].operations) for n in (1, 2, 4)] == [4, 4, 4]
    assert [f.lfn for f in loaded[2].operations[0].files] == ["/vo/batch/job1/out0.root"]


def test_a_failing_copy_delays_its_request_only(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    jobs = _jobs(client_env, tmp_path, 3)
    broken = jobs[1][0]
    injector.probe[("SE-A", "copy")] = lambda lfn: (
        injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="copy") if lfn == broken else None
    )

    with freeze_time(T0):
        Executor(client_env, POLICY).run_once()

    request = client_env.requests.load(2)
    assert request.status is RequestStatus.Waiting and request.not_before is not None
    replicate, remove = request.operations
    assert (replicate.files[0].status, replicate.files[0].attempt) == (FileStatus.Waiting, 1)
    assert "StorageUnavailable" in replicate.files[0].errors[0]
    assert remove.files[0].attempt == 0
    assert client_env.se("FAIL-1").exists(broken)
    assert _states(client_env, [jobs[0][0], broken, jobs[2][0]]) == [
        UploadState.CLEANED,
        UploadState.FAILED_OVER,
        UploadState.CLEANED,
    ]


def test_requests_of_other_shapes_in_the_batch_run_one_at_a_time(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """The catalog was down at upload time: the request starts with RegisterFile, so it is not a pair."""
    with injector_down(injector, CATALOG):
        deferred = _jobs(client_env, tmp_path, 1, name="deferred")[0][0]
    pairs = _jobs(client_env, tmp_path, 2)

    assert Executor(client_env, POLICY).run_once() == 3

    assert _states(client_env, [deferred, *(job[0] for job in pairs)]) == [UploadState.CLEANED] * 3


def test_a_catalog_commit_that_fails_hands_the_requests_to_the_one_at_a_time_path(
    client_env: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _jobs(client_env, tmp_path, 3)
    catalog = client_env.catalogs.get(CATALOG).inner  # type: ignore[attr-defined]
    real = type(catalog).batch
    failures: list[int] = []

    @contextmanager
    def commit_fails_once(self: Any) -> Iterator[None]:
        with real(self):
            yield
            if not failures:
                failures.append(1)
                raise CatalogUnavailable("database is locked", catalog=self.name)

    monkeypatch.setattr(type(catalog), "batch", commit_fails_once)

    assert Executor(client_env, POLICY).run_once() == 3

    assert failures == [1]
    lfns = [job[0] for job in jobs]
    assert _states(client_env, lfns) == [UploadState.CLEANED] * 3
    assert all(_committed_replicas(tmp_path / "ws", lfn) == {"SE-A"} for lfn in lfns)
    assert all(not client_env.se("FAIL-1").exists(lfn) for lfn in lfns)


@pytest.mark.parametrize(
    "point",
    [
        "after-copy@2",
        "before-commit:catalog:batch",
        "after-commit:catalog:batch",
        "after-remove-replica@2",
        "before-commit:executor:batch",
    ],
)
def test_a_crash_in_a_round_is_finished_by_the_next_executor(tmp_path: Path, point: str) -> None:
    """A real process dies in the middle of a round; the next executor ends every upload Cleaned, once."""
    import os

    from failover.fsck import fsck
    from failover.workspace import open_workspace

    home = tmp_path / "ws"
    env = open_workspace(home, ses=("SE-A", "FAIL-1"))
    jobs = _jobs(env, tmp_path, 3)
    env.store.close()
    policy = ExecutorPolicy(lease_seconds=0.0, jitter=0.0, backoff_base=0.0)
    pid = os.fork()
    if pid == 0:
        os.environ[CRASH_AT] = point
        Executor(open_workspace(home, ses=("SE-A", "FAIL-1")), policy).run_once()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == CRASH_EXIT_CODE

    faults = FaultInjector()
    env = faults.wrap(open_workspace(home, ses=("SE-A", "FAIL-1")))
    Executor(env, policy).run_once()

    lfns = [job[0] for job in jobs]
    assert _states(env, lfns) == [UploadState.CLEANED] * 3
    assert all(_committed_replicas(home, lfn) == {"SE-A"} for lfn in lfns)
    assert sorted(env.se("SE-A").list_lfns()) == sorted(lfns)
    assert list(env.se("FAIL-1").list_lfns()) == []
    assert fsck(env).ok, fsck(env).problems
    journal = [
        row[0] for row in env.store.conn.execute("SELECT trigger FROM journal WHERE trigger = 'cleaned'")
    ]
    assert len(journal) == 3


@contextmanager
def injector_down(injector: FaultInjector, target: str) -> Iterator[None]:
    injector.inject(target, Fault.CATALOG_UNAVAILABLE, times=None)
    try:
        yield
    finally:
        injector.clear(target)


def test_a_pass_reports_how_it_left_each_request_and_which_failed(
    client_env: Environment, tmp_path: Path
) -> None:
    jobs = _jobs(client_env, tmp_path, 3)
    assert client_env.se("FAIL-1").remove(jobs[1][0])

    report = Executor(client_env, POLICY).run_pass()

    assert report == PassReport(taken=3, left={"Done": 2, "Failed": 1}, failed=(2,))
    assert Executor(client_env, POLICY).run_pass() == PassReport()


def test_reports_of_passes_side_by_side_merge() -> None:
    merged = PassReport.merged(
        [
            PassReport(2, {"Done": 1, "Failed": 1}, (4,)),
            PassReport(),
            PassReport(3, {"Done": 2, "Waiting": 1}, ()),
        ]
    )
    assert merged == PassReport(5, {"Done": 3, "Failed": 1, "Waiting": 1}, (4,))


def test_copies_made_ahead_are_left_when_the_lease_was_lost_before_their_removal(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """
    The first file's registration fails (its pair goes on one operation at a time, the later pairs are
    not reached), and meanwhile another executor takes the request over: the copies made ahead for the
    later pairs are that executor's to find and register now, so they are not removed.
    """
    ((first, second, third),) = _jobs(client_env, tmp_path, 1, files_per_job=3)

    def taken_over_while_registering(lfn: str | None) -> None:
        if lfn == first:
            client_env.store.conn.execute("UPDATE requests SET lease_owner = 'thief' WHERE id = 1")

    injector.probe[(CATALOG, "register_replica")] = taken_over_while_registering
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, operation="register_replica", lfn=first, times=None)

    Executor(client_env, POLICY).run_once()

    assert sorted(client_env.se("SE-A").list_lfns()) == sorted([first, second, third])
    assert all(_committed_replicas(tmp_path / "ws", lfn) == {"FAIL-1"} for lfn in (first, second, third))
    assert client_env.store.conn.execute("SELECT lease_owner FROM requests WHERE id = 1").fetchone() == (
        "thief",
    )


def test_a_stop_starts_no_further_chunk_of_copies(
    client_env: Environment, injector: RecordingInjector, tmp_path: Path
) -> None:
    """
    Big files go one per chunk (``round_bytes``): a stop during the first copy lets that copy finish and
    be registered, and starts no other; the other requests are released untried, for the next run.
    """
    (first,), (second,), (third,) = _jobs(client_env, tmp_path, 3)
    executor = Executor(client_env, replace(POLICY, round_bytes=0))
    injector.probe[("SE-A", "copy")] = lambda lfn: executor.stopping.set()

    assert executor.run_once() == 3

    assert list(client_env.se("SE-A").list_lfns()) == [first]
    assert _committed_replicas(tmp_path / "ws", first) == {"FAIL-1", "SE-A"}
    assert _files(client_env, 1)[0] == (FileStatus.Done, 1)
    assert _files(client_env, 2) == _files(client_env, 3) == [(FileStatus.Waiting, 0)] * 2
    assert [client_env.requests.load(n).status for n in (1, 2, 3)] == [RequestStatus.Waiting] * 3
    assert _states(client_env, [first, second, third]) == [
        UploadState.REPLICATING,
        UploadState.FAILED_OVER,
        UploadState.FAILED_OVER,
    ]

    injector.probe.clear()
    assert Executor(client_env, POLICY).run_once() == 3
    assert _states(client_env, [first, second, third]) == [UploadState.CLEANED] * 3
