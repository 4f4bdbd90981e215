"""
Pruning: uploads and requests that ended before the cutoff go with all stored of them; nothing that
is still in flight, nothing linked to it, and nothing of the catalogs or the storage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from failover import fsck
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.prune import prune
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from states import UploadState

MONTH = timedelta(days=30)
GUIDS = {
    "/vo/done": "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8",
    "/vo/recent": "0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9",
}


def _counts(env: Environment) -> dict[str, int]:
    tables = ("machines", "journal", "requests", "operations", "files")
    return {table: env.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


def _uploads(env: Environment) -> dict[str, str]:
    return dict(env.store.conn.execute("SELECT id, state FROM machines ORDER BY id").fetchall())


def _registered(env: Environment, local: Path, lfn: str) -> None:
    meta = {"GUID": GUIDS[lfn]}
    result = FailoverTransfer(environment=env).transferAndRegisterFile("out", str(local), lfn, "SE-A", meta)
    assert result["OK"], result


@pytest.fixture
def aged(client_env: Environment, failed_over: Callable[..., int], output_file: Path) -> Environment:
    """
    On 1 January: /vo/done Registered; /vo/cleaned failed over and cleaned up (its request Done); /vo/stuck
    failed over, its replica lost, Stuck (its request Failed). On 1 March: /vo/recent Registered.
    """
    with freeze_time("2026-01-01T12:00:00Z"):
        _registered(client_env, output_file, "/vo/done")
        failed_over("/vo/cleaned")
        failed_over("/vo/stuck")
        Path(client_env.se("FAIL-1").pfn("/vo/stuck").removeprefix("file://")).unlink()
        Executor(client_env, ExecutorPolicy(max_attempts=1)).run_once()
    with freeze_time("2026-03-01T12:00:00Z"):
        _registered(client_env, output_file, "/vo/recent")
    states = {lfn: client_env.uploads.load(lfn).state for lfn in ("/vo/cleaned", "/vo/stuck")}
    assert states == {"/vo/cleaned": UploadState.CLEANED, "/vo/stuck": UploadState.STUCK}
    return client_env


def test_what_ended_before_the_cutoff_goes_with_its_journal_and_operations(aged: Environment) -> None:
    before, problems = _counts(aged), fsck(aged).problems
    with freeze_time("2026-03-10T12:00:00Z"):
        report = prune(aged, older_than=MONTH)
    assert (report.before, report.uploads, report.requests) == ("2026-02-08T12:00:00.000000+00:00", 2, 1)
    assert _uploads(aged) == {"/vo/recent": "Registered", "/vo/stuck": "Stuck"}
    after = _counts(aged)
    assert after["requests"] == before["requests"] - 1 and after["operations"] == before["operations"] - 2
    assert after["journal"] < before["journal"] and after["files"] == before["files"] - 2
    catalog = aged.catalogs.get("LocalCatalog")
    assert [e.lfn for e, _ in catalog.iter_files()] == ["/vo/cleaned", "/vo/done", "/vo/recent", "/vo/stuck"]
    # Only the lost replica of the fixture, before as after: what was pruned is explained by the catalog.
    assert fsck(aged).problems == problems and [p.subject for p in problems] == ["/vo/stuck"]


def test_a_request_stays_while_one_of_its_uploads_is_unfinished_and_so_do_its_other_uploads(
    client_env: Environment, failed_over: Callable[..., int]
) -> None:
    with freeze_time("2026-01-01T12:00:00Z"):
        request_id = failed_over("/vo/one", "/vo/two")
        Path(client_env.se("FAIL-1").pfn("/vo/two").removeprefix("file://")).unlink()
        Executor(client_env, ExecutorPolicy(max_attempts=1)).run_once()
    assert _uploads(client_env) == {"/vo/one": "Cleaned", "/vo/two": "Stuck"}
    with freeze_time("2026-06-01T12:00:00Z"):
        report = prune(client_env, older_than=MONTH)
    assert (report.uploads, report.requests) == (0, 0)
    assert client_env.requests.load(request_id).request_id == request_id


def test_a_dry_run_counts_and_deletes_nothing(aged: Environment) -> None:
    before = _counts(aged)
    with freeze_time("2026-03-10T12:00:00Z"):
        report = prune(aged, older_than=MONTH, dry_run=True)
    assert (report.uploads, report.requests, report.dry_run) == (2, 1, True)
    assert _counts(aged) == before


def test_a_pruned_lfn_uploaded_again_is_found_done_by_the_catalog(
    aged: Environment, output_file: Path
) -> None:
    """The upload is forgotten; the catalog and the SE still hold the file (same GUID): no second put."""
    replica = Path(aged.se("SE-A").pfn("/vo/done").removeprefix("file://"))
    written = replica.stat().st_mtime_ns
    with freeze_time("2026-03-10T12:00:00Z"):
        prune(aged, older_than=MONTH)
    assert aged.uploads.find("/vo/done") is None
    _registered(aged, output_file, "/vo/done")
    assert aged.uploads.load("/vo/done").state == UploadState.REGISTERED
    assert replica.stat().st_mtime_ns == written


def test_a_negative_age_is_refused(aged: Environment) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        prune(aged, older_than=-MONTH)


@pytest.mark.parametrize(("point", "pruned"), [("before-commit:prune", False), ("after-commit:prune", True)])
def test_a_prune_killed_around_its_commit_deleted_all_or_nothing(
    tmp_path: Path, output_file: Path, point: str, pruned: bool
) -> None:
    home = tmp_path / "ws"
    run = [sys.executable, "-m", "failover.cli"]
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    for lfn in ("/vo/a", "/vo/b"):
        done = subprocess.run([*run, "upload", str(output_file), "--lfn", lfn], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    killed = subprocess.run([*run, "prune", "--older-than", "0s"], env={**env, CRASH_AT: point})
    assert killed.returncode == CRASH_EXIT_CODE
    listed = subprocess.run([*run, "status", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(listed.stdout)["total"] == (0 if pruned else 2)
    again = subprocess.run([*run, "prune", "--older-than", "0s", "--json"], env=env, capture_output=True)
    assert json.loads(again.stdout)["uploads"] == (0 if pruned else 2)
    assert subprocess.run([*run, "fsck"], env=env, capture_output=True).returncode == 0
