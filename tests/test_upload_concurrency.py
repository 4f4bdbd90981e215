"""
The same LFNs uploaded by two processes at once into one workspace.

Whoever creates an upload's machine first owns it; the other continues it, as after a crash. Every
transition is fired from the row it was decided on, so the one that moves second fires nothing and
reports where the upload is. The interleavings are forced here at the points where the race is lost
(between plan and create, between put and outcome), then left to chance between real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from batch_support import batch_files

from failover import Environment, batch, driver, fsck, open_workspace, upload
from failover.batch import BatchItem, upload_many
from failover.testing import Fault, FaultInjector
from failover.uploads import UploadResult
from persistence.requests import RequestHeader
from states import UploadState

OURS = RequestHeader("ours")
THEIRS = RequestHeader("theirs")


def _open(home: Path) -> Environment:
    return open_workspace(home, ses=("DEST", "FAIL"))


def _theirs(env: Environment, item: BatchItem) -> UploadResult:
    return upload(env, item.local_path, item.lfn, destinations=["DEST"], request=THEIRS)


def _journal_triggers(env: Environment, lfn: str) -> list[str]:
    rows = env.store.conn.execute("SELECT trigger FROM journal WHERE machine_id = ? ORDER BY seq", (lfn,))
    return [trigger for (trigger,) in rows]


def _machines(env: Environment) -> int:
    (count,) = env.store.conn.execute("SELECT COUNT(*) FROM machines").fetchone()
    return int(count)


def _once(action: Callable[[], Any]) -> Callable[[], Any]:
    """
    ``action``, run on the first call only, even when it calls this again itself (the other process's
    upload passes the same patched points); what it returned is kept in ``.result``.
    """
    started = []

    def run() -> None:
        if not started:
            started.append(True)
            run.result = action()  # type: ignore[attr-defined]

    return run


def test_a_batch_whose_upload_another_process_created_since_the_plan_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = batch_files(tmp_path, 3)
    ours, theirs = _open(tmp_path / "ws"), _open(tmp_path / "ws")
    create_all = batch._create_all
    race = _once(lambda: _theirs(theirs, items[1]))

    def create_after_them(env: Environment, plans: Any) -> Any:
        race()
        return create_all(env, plans)

    monkeypatch.setattr(batch, "_create_all", create_after_them)
    results = upload_many(ours, items, destinations=["DEST"], request=OURS)
    assert [r.state for r in results] == [UploadState.REGISTERED] * 3  # type: ignore[union-attr]
    assert results[1] == race.result  # type: ignore[attr-defined]
    assert _machines(ours) == 3
    assert _journal_triggers(ours, items[1].lfn) == ["create", "uploaded"]
    assert fsck(ours).ok, fsck(ours).problems


def test_one_upload_whose_machine_another_process_created_since_the_plan_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (item,) = batch_files(tmp_path, 1)
    ours, theirs = _open(tmp_path / "ws"), _open(tmp_path / "ws")
    create = ours.uploads.create
    race = _once(lambda: _theirs(theirs, item))

    def create_after_them(machine_id: str, data: Any) -> Any:
        race()
        return create(machine_id, data)

    monkeypatch.setattr(ours.uploads, "create", create_after_them)
    result = upload(ours, item.local_path, item.lfn, destinations=["DEST"], request=OURS)
    assert result == race.result  # type: ignore[attr-defined]
    assert _machines(ours) == 1
    assert fsck(ours).ok, fsck(ours).problems


@pytest.mark.parametrize("module", [batch, driver], ids=["batch", "one-file"])
def test_an_upload_another_process_finished_between_our_put_and_our_outcome_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any
) -> None:
    """Both put the same bytes (the second finds them there); only the first outcome is journaled."""
    items = batch_files(tmp_path, 3)
    ours, theirs = _open(tmp_path / "ws"), _open(tmp_path / "ws")
    # The batch registers all three at once; one at a time, the race is on the first file put.
    raced, where = (1, "after-register") if module is batch else (0, "after-put")
    race = _once(lambda: _theirs(theirs, items[raced]))
    crash_point = module.crash_point

    def point(name: str) -> None:
        crash_point(name)
        if name == where:
            race()

    monkeypatch.setattr(module, "crash_point", point)
    if module is batch:
        results: list[Any] = upload_many(ours, items, destinations=["DEST"], request=OURS)
    else:
        results = [upload(ours, i.local_path, i.lfn, destinations=["DEST"], request=OURS) for i in items]
    assert [r.state for r in results] == [UploadState.REGISTERED] * 3
    assert results[raced] == race.result  # type: ignore[attr-defined]
    for item in items:
        assert _journal_triggers(ours, item.lfn) == ["create", "uploaded"], item.lfn
    assert sorted(ours.se("DEST").list_lfns()) == sorted(i.lfn for i in items)
    assert fsck(ours).ok, fsck(ours).problems


@pytest.mark.parametrize("many", [True, False], ids=["batch", "one-file"])
def test_our_failed_put_of_an_upload_another_process_landed_meanwhile_reports_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, many: bool
) -> None:
    """Our put fails, theirs lands: our failure is not journaled over their success."""
    (item,) = batch_files(tmp_path, 1)
    faults = FaultInjector()
    ours, theirs = faults.wrap(_open(tmp_path / "ws")), _open(tmp_path / "ws")
    faults.inject("DEST", Fault.PUT_ERROR, times=None)
    race = _once(lambda: _theirs(theirs, item))
    crash_point = driver.crash_point

    def point(name: str) -> None:
        crash_point(name)
        if name == "before-put":
            race()

    monkeypatch.setattr(driver, "crash_point", point)
    if many:
        (result,) = upload_many(ours, [item], destinations=["DEST"], request=OURS)
    else:
        result = upload(ours, item.local_path, item.lfn, destinations=["DEST"], request=OURS)
    assert faults.calls[("DEST", "put")] == 1
    assert result == race.result  # type: ignore[attr-defined]
    assert _journal_triggers(ours, item.lfn) == ["create", "uploaded"]


def _cli(home: Path, files: list[str], jobs: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "failover.cli", "upload", *files, "--lfn-prefix", "/vo/twice"]
    command += ["--dest", "LOCAL-DISK", "--failover", "FAILOVER-DISK", "--home", str(home), "--json"]
    command += ["--jobs", jobs]
    env = {key: value for key, value in os.environ.items() if not key.startswith("FAILOVER_")}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("jobs", [("1", "1"), ("2", "1")], ids=["1+1", "2+1"])
def test_two_commands_uploading_the_same_files_at_once_both_report_every_file(
    tmp_path: Path, jobs: tuple[str, str]
) -> None:
    """Real processes, interleaved as the scheduler pleases: each file is uploaded and journaled once."""
    items = batch_files(tmp_path, 300)
    files = [str(item.local_path) for item in items]
    home = tmp_path / "ws"
    _open(home).close()  # the workspace exists before the race, as when a job retries its upload
    commands = [_cli(home, files, jobs[0]), _cli(home, files, jobs[1])]
    for command in commands:
        stdout, stderr = command.communicate(timeout=120)
        assert command.returncode == 0, stderr
        uploads = json.loads(stdout)["uploads"]
        assert [u["state"] for u in uploads] == ["Registered"] * len(items)
    env = open_workspace(home)
    assert _machines(env) == len(items)
    (journal,) = env.store.conn.execute("SELECT COUNT(*) FROM journal").fetchone()
    assert journal == 2 * len(items)
    assert fsck(env).ok, fsck(env).problems
