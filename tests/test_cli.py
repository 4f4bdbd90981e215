"""
The ``failover`` command as a user runs it: most paths in-process with click's ``CliRunner``, and the
error contract (one line on stderr, no traceback, exit status 1; 2 for usage errors) in real processes.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import doctest
import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import pytest
from batch_support import batch_files
from click.testing import CliRunner, Result
from rich.cells import cell_len

from failover import parallel
from failover.batch import BatchItem, upload_many
from failover.cli import app, cli
from failover.cli import prune as prune_cli
from failover.cli import requests as requests_cli
from failover.dirac import FailoverTransfer
from failover.errors import UploadInterrupted
from failover.testing import Fault, FaultInjector
from failover.uploads import plan_upload
from failover.workspace import open_workspace
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from persistence.requests import RequestHeader

REPOSITORY = Path(__file__).resolve().parent.parent
#: The request of the job that a crash interrupted.
JOB = RequestHeader("crashed-job", name="crashed-job", owner="alice", owner_group="vo")
#: An LFN directory that the ``blocked`` fixture makes unwritable on LOCAL-DISK.
BLOCKED = "/blocked/run42"


def failover(home: Path, *args: str) -> Result:
    """Run ``failover ARGS`` in-process on the workspace ``home`` (no configuration file)."""
    env = {"FAILOVER_HOME": str(home), "FAILOVER_CONFIG": None}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_process(
    home: Path, *args: str, timeout: float = 30, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m failover.cli ARGS`` in a subprocess, as a user would from a shell."""
    env = {**os.environ, "FAILOVER_HOME": str(home), **(env_extra or {})}
    env.pop("FAILOVER_CONFIG", None)
    command = [sys.executable, "-m", "failover.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=home.parent)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The workspace directory of one test (it does not exist yet: the CLI creates it)."""
    return tmp_path / "ws"


@pytest.fixture
def outputs(tmp_path: Path) -> list[Path]:
    """Two small job output files with different content."""
    job = tmp_path / "job"
    job.mkdir()
    paths = [job / "hits.root", job / "tracks.root"]
    for index, path in enumerate(paths):
        path.write_bytes(f"event data {index}\n".encode() * 100)
    return paths


@pytest.fixture
def blocked(home: Path) -> Path:
    """
    LOCAL-DISK refuses every LFN under ``/blocked``: a plain file stands where its directory would go, so
    a put fails there for real (the CLI runs no fault injector). Remove the returned file to unblock.
    """
    blocker = home / "se" / "LOCAL-DISK" / "blocked"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    return blocker


@pytest.fixture
def failed_over(home: Path, outputs: list[Path], blocked: Path) -> list[str]:
    """Both outputs uploaded while LOCAL-DISK refuses them: each waits on FAILOVER-DISK (request 1)."""
    result = failover(home, "upload", *map(str, outputs), "--lfn-prefix", BLOCKED, "--json")
    report = as_json(result)
    assert [u["state"] for u in report["uploads"]] == ["FailedOver", "FailedOver"]
    assert report["request"] == 1
    return [u["lfn"] for u in report["uploads"]]


@pytest.mark.parametrize("module", [app, requests_cli, prune_cli], ids=lambda module: module.__name__)
def test_the_doctests_of_the_cli_pass(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def test_upload_one_file_registers_it_at_the_default_destination(home: Path, outputs: list[Path]) -> None:
    result = failover(home, "upload", str(outputs[0]), "--lfn", "/vo/run42/hits.root")
    assert result.exit_code == 0, result.output
    assert "/vo/run42/hits.root" in result.stdout
    assert "Registered" in result.stdout and "LOCAL-DISK" in result.stdout


def test_upload_processes_every_file_and_exits_1_when_one_fails(
    home: Path, outputs: list[Path], tmp_path: Path
) -> None:
    """A missing and an empty file are reported on stderr, one line each; the good files are uploaded."""
    empty = tmp_path / "job" / "empty.root"
    empty.touch()
    missing = tmp_path / "job" / "missing.root"
    files = [str(outputs[0]), str(missing), str(empty), str(outputs[1])]
    result = failover(home, "upload", *files, "--lfn-prefix", "/vo/run42", "--json")
    assert result.exit_code == 1
    uploads = json.loads(result.stdout)["uploads"]
    assert [u["state"] for u in uploads] == ["Registered", "Failed", "Failed", "Registered"]
    assert [u["error"]["type"] for u in uploads[1:3]] == ["InvalidInput", "InvalidInput"]
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{missing}: InvalidInput: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dest", "LOCAL-DISK"], "exactly one of --lfn"),
        (["--lfn", "/vo/a", "--lfn-prefix", "/vo"], "exactly one of --lfn"),
        (["--failover", "FAILOVER-DISK", "--lfn", "/vo/a"], "--failover needs --dest or --target"),
    ],
)
def test_upload_usage_errors_exit_2(home: Path, outputs: list[Path], args: list[str], message: str) -> None:
    result = failover(home, "upload", str(outputs[0]), *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize("null", [False, True], ids=["lines", "nul"])
def test_upload_files_from_a_list_as_find_writes_it(home: Path, tmp_path: Path, null: bool) -> None:
    """More files than a command line holds: ``find ... | failover upload --files-from -``."""
    names = ["a b.root", "émigré.root", "semi;colon.root"] + (["new\nline.root"] if null else [])
    folder = tmp_path / "listed"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(name.encode() * 10)
    given = tmp_path / "given.root"
    given.write_bytes(b"named on the command line")
    end = b"\0" if null else b"\n"
    listing = b"".join(os.fsencode(folder / name) + end for name in names) + end  # an empty entry too
    args = ["upload", str(given), "--files-from", "-", "--lfn-prefix", "/vo/listed", "--json"]
    env = {"FAILOVER_HOME": str(home), "FAILOVER_CONFIG": None}
    result = CliRunner().invoke(cli, args + (["-0"] if null else []), input=listing, env=env)

    assert result.exit_code == (1 if null else 0), result.output
    uploads = json.loads(result.stdout)["uploads"]
    assert [u["file"] for u in uploads] == [str(given)] + [str(folder / name) for name in names]
    states = {u["lfn"]: u["state"] for u in uploads}
    # A newline is a legal file name on the system but a control character in an LFN: refused, alone.
    expected = {f"/vo/listed/{name}": "Registered" for name in ["given.root", *names] if "\n" not in name}
    assert {lfn: state for lfn, state in states.items() if "\n" not in lfn} == expected
    assert [state for lfn, state in states.items() if "\n" in lfn] == (["Failed"] if null else [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--files-from", os.devnull, "--lfn-prefix", "/vo"], "no files to upload"),
        (["--lfn-prefix", "/vo"], "no files to upload"),
        (["-0", "x.root", "--lfn-prefix", "/vo"], "--null describes the list of --files-from"),
    ],
)
def test_upload_without_files_or_with_null_alone_exits_2(home: Path, args: list[str], message: str) -> None:
    result = failover(home, "upload", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_database_that_fills_up_mid_upload_says_what_finishes_the_work(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workspace's disk fills (here: SQLite's page limit) while 600 files are uploaded."""
    files = [str(item.local_path) for item in batch_files(tmp_path, 600)]
    assert failover(home, "status").exit_code == 0  # the workspace, with its schema
    with sqlite3.connect(home / "failover.db") as probe:
        # Room for the first batch's 256 new uploads, not for their outcomes (between ~100 and ~185 pages).
        limit = probe.execute("PRAGMA page_count").fetchone()[0] + 145
    connect = sqlite3.connect

    def connect_to_a_full_disk(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(path, *args, **kwargs)
        if Path(path).name == "failover.db":
            conn.execute(f"PRAGMA max_page_count = {limit}")
        return conn

    command = ["upload", *files, "--lfn-prefix", "/vo/full", "--jobs", "1", "--json"]
    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", connect_to_a_full_disk)
        result = failover(home, *command)

    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("StoreUnavailable: ") and "database or disk is full" in line
    assert "`failover resume` finishes the uploads left in flight" in line
    env = open_workspace(home)
    query = "SELECT COUNT(*) FROM machines WHERE state = 'Uploading'"
    (in_flight,) = env.store.conn.execute(query).fetchone()
    assert 0 < in_flight < 600
    env.store.close()

    assert failover(home, "resume").exit_code == 0
    again = as_json(failover(home, *command))
    assert [u["state"] for u in again["uploads"]] == ["Registered"] * 600
    assert failover(home, "fsck").exit_code == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--lfn-prefix", "vo/run42"], "InvalidInput: --lfn-prefix: LFN 'vo/run42' is not absolute"),
        (["--lfn-prefix", "/vo/../run42/"], "InvalidInput: --lfn-prefix: LFN '/vo/../run42' has an empty"),
        (
            ["--lfn-prefix", "/vo/run42", "--dest", "NOPE"],
            "UnknownStorageElement: Storage element 'NOPE' is not configured (configured: LOCAL-DISK, "
            "FAILOVER-DISK)",
        ),
        (
            ["--lfn-prefix", "/vo/run42", "--catalog", "NOPE"],
            "UnknownCatalog: Catalog 'NOPE' is not configured (configured: LocalCatalog)",
        ),
    ],
)
def test_a_mistake_common_to_every_file_is_said_once(
    home: Path, outputs: list[Path], args: list[str], line: str
) -> None:
    """Not once per file (10,000 files: 10,000 lines), and nothing is uploaded."""
    result = failover(home, "upload", *map(str, outputs), *args)
    assert result.exit_code == 1
    (said,) = result.stderr.splitlines()
    assert said.startswith(line)
    assert result.stdout == ""


def test_upload_lfn_names_a_single_file(home: Path, outputs: list[Path]) -> None:
    result = failover(home, "upload", *map(str, outputs), "--lfn", "/vo/a")
    assert result.exit_code == 2
    assert "--lfn names one file" in result.stderr


def test_a_changed_file_is_refused_under_the_lfn_it_landed_under(
    home: Path, outputs: list[Path], failed_over: list[str]
) -> None:
    """Waiting on the failover SE or registered, the LFN keeps what landed; the new content is refused."""
    first = as_json(failover(home, "upload", str(outputs[0]), "--lfn", "/vo/run42/hits.root", "--json"))
    assert first["uploads"][0]["state"] == "Registered"
    for path in outputs:
        path.write_bytes(path.read_bytes() + b"one more event\n")
    for lfn in ("/vo/run42/hits.root", failed_over[0]):
        result = failover(home, "upload", str(outputs[0]), "--lfn", lfn, "--json")
        assert result.exit_code == 1
        (upload,) = json.loads(result.stdout)["uploads"]
        assert (upload["state"], upload["error"]["type"]) == ("Failed", "InvalidInput")
        assert f"{lfn} was already uploaded" in result.stderr and "with other content" in result.stderr
    states = {lfn: as_json(failover(home, "status", lfn, "--json"))["state"] for lfn in failed_over}
    assert states == {failed_over[0]: "FailedOver", failed_over[1]: "FailedOver"}


def test_failed_over_uploads_end_cleaned_after_the_executor_runs(
    home: Path, failed_over: list[str], blocked: Path
) -> None:
    """The issue's story through the CLI: fail over, bring the target back, execute, all Cleaned, fsck ok."""
    assert as_json(failover(home, "status", "--json"))["uploads"]["FailedOver"] == 2
    blocked.unlink()
    ran = as_json(failover(home, "executor", "--once", "--json"))
    assert (ran["requests"], ran["left"], ran["failed"], ran["stuck"]) == (1, {"Done": 1}, [], 0)
    counts = as_json(failover(home, "status", "--json"))
    assert (counts["uploads"]["Cleaned"], counts["total"], counts["requests"]) == (2, 2, {"Done": 1})
    assert "Stuck upload" not in failover(home, "status").stdout
    fsck = failover(home, "fsck")
    assert fsck.exit_code == 0, fsck.output
    assert "ok" in fsck.stdout
    quick = failover(home, "fsck", "--quick")
    assert quick.exit_code == 0, quick.output
    assert quick.stdout.strip() == "checked 2 uploads, 2 replicas by size, 2 catalog replicas, 2 objects: ok"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_executor_once_reports_a_request_that_failed_on_stderr_and_exits_1(
    home: Path, failed_over: list[str], blocked: Path, jobs: str
) -> None:
    """
    A job wrapper's ``failover executor --once || alert`` must alert: the first file's temporary replica
    is gone, so the request fails for good (exit 0 before, with "processed 1 request" only).
    """
    (home / "se" / "FAILOVER-DISK" / failed_over[0].lstrip("/")).unlink()
    blocked.unlink()

    result = failover(home, "executor", "--once", "--jobs", jobs)

    assert result.exit_code == 1
    assert result.stdout.rstrip().endswith(
        "processed 1 request" + (" in 2 processes" if jobs == "2" else "") + "; left Failed 1"
    )
    assert result.stderr.startswith("request 1 failed: ReplicateAndRegister: SourceMissing: ")
    assert failed_over[0] in result.stderr
    assert "2 uploads left Stuck: `failover status LFN` says why" in result.stderr
    assert "`failover retry --all` runs them again" in result.stderr

    # Run again: nothing is due, nothing failed in this pass.
    again = failover(home, "executor", "--once", "--json", "--jobs", jobs)
    assert again.exit_code == 0
    assert json.loads(again.stdout)["requests"] == 0


def test_executor_once_json_names_each_failed_request_with_why(
    home: Path, failed_over: list[str], blocked: Path
) -> None:
    (home / "se" / "FAILOVER-DISK" / failed_over[0].lstrip("/")).unlink()
    blocked.unlink()

    result = failover(home, "executor", "--once", "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["requests"], report["left"], report["stuck"]) == (1, {"Failed": 1}, 2)
    ((failed),) = report["failed"]
    assert failed["id"] == 1
    assert failed["error"].startswith("ReplicateAndRegister: SourceMissing: ")
    listed = as_json(failover(home, "requests", "list", "--json"))
    assert [r["error"] for r in listed] == [failed["error"]], "the same reason as requests list gives"


def test_status_and_explain_of_a_stuck_upload_say_why_and_the_ways_on(
    home: Path, failed_over: list[str], blocked: Path
) -> None:
    """The second file did nothing wrong: its request failed on the first. Status says so, and what next."""
    (home / "se" / "FAILOVER-DISK" / failed_over[0].lstrip("/")).unlink()
    blocked.unlink()
    assert failover(home, "executor", "--once").exit_code == 1
    lfn = failed_over[1]

    shown = failover(home, "status", lfn)
    details = as_json(failover(home, "status", lfn, "--json"))
    explained = failover(home, "explain", lfn, "--json")

    assert shown.exit_code == 0
    reason = "ReplicateAndRegister: SourceMissing: no good replica of " + failed_over[0]
    assert f"  stuck: request 1 failed: {reason}" in shown.stdout
    assert (
        f"`failover retry {lfn}` runs it again; `failover cancel --upload {lfn}` gives it up" in shown.stdout
    )
    assert details["state"] == "Stuck"
    assert details["stuck"]["request"] == 1 and details["stuck"]["reason"].startswith(reason)
    assert as_json(explained)["stuck"] == details["stuck"]
    assert as_json(failover(home, "status", failed_over[0], "--json"))["stuck"]["request"] == 1

    counted = failover(home, "status")
    assert "2 Stuck uploads wait for an operator: `failover status LFN` says why" in counted.stdout

    assert failover(home, "retry", lfn).exit_code == 0
    assert as_json(failover(home, "status", lfn, "--json"))["stuck"] is None
    assert "1 Stuck upload waits for an operator" in failover(home, "status").stdout


def test_upload_in_worker_processes_reports_each_file_in_place(
    home: Path, outputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--jobs 2, one file per batch: the same report, in the order given, as in one process."""
    monkeypatch.setattr(parallel, "BATCH_FILES", 1)
    files = [str(outputs[0]), str(tmp_path / "job" / "missing.root"), str(outputs[1])]
    result = failover(home, "upload", *files, "--lfn-prefix", "/vo/run42", "--jobs", "2", "--json")
    assert result.exit_code == 1
    uploads = json.loads(result.stdout)["uploads"]
    assert [u["file"] for u in uploads] == files
    assert [u["state"] for u in uploads] == ["Registered", "Failed", "Registered"]
    assert result.stderr.startswith(f"{files[1]}: InvalidInput: ")


def test_failed_over_in_worker_processes_ends_cleaned_with_one_request(
    home: Path, outputs: list[Path], blocked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers fail the files over: one request holds both uploads' operations; the executor ends it."""
    monkeypatch.setattr(parallel, "BATCH_FILES", 1)
    result = failover(home, "upload", *map(str, outputs), "--lfn-prefix", BLOCKED, "--jobs", "2", "--json")
    report = as_json(result)
    assert [u["state"] for u in report["uploads"]] == ["FailedOver", "FailedOver"]
    assert report["request"] == 1
    blocked.unlink()
    assert as_json(failover(home, "executor", "--once", "--json"))["requests"] == 1
    counts = as_json(failover(home, "status", "--json"))
    assert (counts["uploads"]["Cleaned"], counts["total"], counts["requests"]) == (2, 2, {"Done": 1})


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_on_a_terminal_a_bar_counts_the_files_and_bytes_and_json_hides_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    monkeypatch.setattr(parallel, "BATCH_FILES", 1)
    files = []
    for index in range(3):
        file = tmp_path / f"part{index}.root"
        file.write_bytes(b"x" * 1000)
        files.append(str(file))
    terminal = {"FAILOVER_HOME": str(home), "FAILOVER_CONFIG": None, "TTY_COMPATIBLE": "1"}
    runner = CliRunner()

    shown = runner.invoke(cli, ["upload", *files, "--lfn-prefix", "/vo/bar", "--jobs", jobs], env=terminal)
    hidden = runner.invoke(cli, ["upload", *files, "--lfn-prefix", "/vo/bar", "--json"], env=terminal)

    assert shown.exit_code == 0 and hidden.exit_code == 0, shown.output + hidden.output
    assert "1/3 files" in shown.stderr and "3/3 files" in shown.stderr and "3.0/3.0 kB" in shown.stderr
    assert "files" not in hidden.stderr


def test_status_of_one_lfn_gives_attempts_failures_and_operations(home: Path, failed_over: list[str]) -> None:
    details = as_json(failover(home, "status", failed_over[0], "--json"))
    assert details["state"] == "FailedOver"
    assert details["uploaded_se"] == "FAILOVER-DISK"
    assert details["attempts"] == {"LOCAL-DISK": 1}
    assert [f["se"] for f in details["failures"]] == ["LOCAL-DISK"]
    assert [(op["type"], op["status"]) for op in details["operations"]] == [
        ("ReplicateAndRegister", "Queued"),
        ("RemoveReplica", "Queued"),
    ]
    table = failover(home, "status", failed_over[0])
    assert "failed attempts: LOCAL-DISK 1" in table.stdout


def test_status_of_an_upload_waiting_to_try_again_says_when(home: Path, outputs: list[Path]) -> None:
    """Stopped while it waited (retryUpload, its one SE down): status says when it tries next."""
    faults = FaultInjector()
    faults.inject("LOCAL-DISK", Fault.STORAGE_UNAVAILABLE, times=None)
    stopping = threading.Event()
    env = dataclasses.replace(faults.wrap(open_workspace(home)), sleeper=lambda seconds: stopping.set())
    item = BatchItem(outputs[0], "/vo/waiting/hits.root")
    (stopped,) = upload_many(env, [item], destinations=["LOCAL-DISK"], retry_upload=True, stopping=stopping)
    assert isinstance(stopped, UploadInterrupted)
    when = env.uploads.load(item.lfn).data["next_attempt_at"]
    env.store.close()

    details = failover(home, "status", item.lfn)

    assert f"  next try at: {when} (resume, or the same upload again, goes on)" in details.stdout.splitlines()


def test_status_of_an_ended_upload_says_what_later_requests_did_to_its_file(
    home: Path, outputs: list[Path]
) -> None:
    """A job moved its output on with a request of its own: status says so, and fsck finds nothing wrong."""
    lfn = "/vo/moved/hits.root"
    as_json(failover(home, "upload", str(outputs[0]), "--lfn", lfn, "--dest", "LOCAL-DISK", "--json"))
    client = FailoverTransfer(environment=open_workspace(home))
    assert client._setFileReplicationRequest(lfn, "FAILOVER-DISK", {})["OK"]
    assert client._setReplicaRemovalRequest(lfn, "LOCAL-DISK")["OK"]
    request = client.commitRequest()["Value"]
    client.env.store.close()
    assert failover(home, "executor", "--once").exit_code == 0

    details = as_json(failover(home, "status", lfn, "--json"))

    assert (details["state"], details["uploaded_se"]) == ("Registered", "LOCAL-DISK")
    assert [(op["request"], op["type"], op["target_se"]) for op in details["later"]] == [
        (request, "ReplicateAndRegister", ["FAILOVER-DISK"]),
        (request, "RemoveReplica", ["LOCAL-DISK"]),
    ]
    text = failover(home, "status", lfn).stdout.splitlines()
    assert (
        f"  later: operation {details['later'][1]['id']} (request {request}) RemoveReplica at LOCAL-DISK Done"
        in text
    )
    assert failover(home, "fsck").exit_code == 0


def test_history_lists_the_journal_in_order(home: Path, failed_over: list[str]) -> None:
    rows = as_json(failover(home, "history", failed_over[0], "--json"))
    assert [(r["seq"], r["trigger"], r["dst"]) for r in rows] == [
        (0, "create", "Uploading"),
        (1, "attempt_failed", "Uploading"),
        (2, "failed_over", "FailedOver"),
    ]
    assert "emits ReplicateAndRegister, RemoveReplica" in rows[2]["summary"]
    assert "attempt_failed" in failover(home, "history", failed_over[0]).stdout


def test_explain_highlights_the_path_and_lists_the_errors(
    home: Path, failed_over: list[str], tmp_path: Path
) -> None:
    """The diagram alone goes to stdout (so it can be redirected); attempts and errors go to stderr."""
    result = failover(home, "explain", failed_over[0])
    assert result.exit_code == 0
    assert result.stdout.startswith("stateDiagram-v2")
    assert "failed_over [landed_at_failover] (step 2)" in result.stdout
    assert "class Uploading,FailedOver visited" in result.stdout
    assert "failed attempts: LOCAL-DISK 1" in result.stderr
    written = tmp_path / "path.dot"
    result = failover(home, "explain", failed_over[0], "--format", "dot", "--output", str(written))
    assert written.read_text().startswith("digraph")
    report = as_json(failover(home, "explain", failed_over[0], "--json"))
    assert report["path"] == [
        ["Uploading", "attempt_failed", "Uploading"],
        ["Uploading", "failed_over", "FailedOver"],
    ]


def test_requests_export_then_import_elsewhere(home: Path, failed_over: list[str], tmp_path: Path) -> None:
    """An exported request (DIRAC JSON) imports as a committed request; importing it again stores nothing."""
    listed = as_json(failover(home, "requests", "list", "--json"))
    assert [(r["id"], r["status"], r["committed"]) for r in listed] == [(1, "Waiting", True)]
    assert "ReplicateAndRegister Queued from FAILOVER-DISK" in failover(home, "requests", "show", "1").stdout
    exported = failover(home, "requests", "export", "1")
    document = json.loads(exported.stdout)
    assert [op["Type"] for op in document["Operations"]] == ["ReplicateAndRegister", "RemoveReplica"] * 2
    path = tmp_path / "request.json"
    path.write_text(exported.stdout)
    other = tmp_path / "other"
    assert as_json(failover(other, "requests", "import", str(path), "--json")) == {
        "request": 1,
        "imported": True,
    }
    assert as_json(failover(other, "requests", "import", str(path), "--json")) == {
        "request": 1,
        "imported": False,
    }
    shown = as_json(failover(other, "requests", "show", "1", "--json"))
    assert [f["LFN"] for op in shown["Operations"] for f in op["Files"]] == [
        lfn for lfn in failed_over for _ in range(2)
    ]
    assert as_json(failover(other, "requests", "list", "--status", "Done", "--json")) == []


def test_import_refuses_an_invalid_request(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"RequestName": "r", "Owner": "alice", "Operations": [{"Type": "Teleport"}]}))
    result = failover(home, "requests", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("InvalidRequest: ")


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("TargetSE", "CERN-DST", "names the SE 'CERN-DST', which is not configured here"),
        ("SourceSE", "CERN-BUFFER", "names the SE 'CERN-BUFFER', which is not configured here"),
        ("Catalog", "DIRACFileCatalog", "names the catalog 'DIRACFileCatalog', which is not configured here"),
    ],
)
def test_import_refuses_a_request_naming_what_is_not_configured(
    home: Path, failed_over: list[str], tmp_path: Path, field: str, value: str, said: str
) -> None:
    """Stored, it could only fail in the executor: refused, said at once, nothing stored."""
    document = json.loads(failover(home, "requests", "export", "1").stdout)
    document["RequestName"] = "from-dirac"
    document["Operations"][0][field] = value
    path = tmp_path / "from-dirac.json"
    path.write_text(json.dumps(document))
    result = failover(home, "requests", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"InvalidRequest: operation 0 (ReplicateAndRegister) {said}")
    assert [r["id"] for r in as_json(failover(home, "requests", "list", "--json"))] == [1]


def test_a_stuck_upload_is_retried_or_given_up(home: Path, failed_over: list[str], blocked: Path) -> None:
    """The failover replica vanishes: the upload is Stuck; retry re-issues it, cancel ends it Failed."""
    lfn = failed_over[0]
    blocked.unlink()
    (home / "se" / "FAILOVER-DISK" / lfn.lstrip("/")).unlink()
    failover(home, "executor", "--once")
    assert as_json(failover(home, "status", lfn, "--json"))["state"] == "Stuck"
    (failed,) = as_json(failover(home, "requests", "list", "--status", "Failed", "--json"))
    assert failed["error"].startswith(f"ReplicateAndRegister: SourceMissing: no good replica of {lfn}")
    assert as_json(failover(home, "retry", lfn, "--json")) == {"lfn": lfn, "request": 2}
    again = failover(home, "retry", lfn)
    assert (again.exit_code, again.stderr) == (1, f"InvalidInput: upload {lfn} is FailedOver, not Stuck\n")
    assert failover(home, "cancel", "2").exit_code == 0
    assert as_json(failover(home, "status", lfn, "--json"))["state"] == "Stuck"
    assert failover(home, "cancel", "--upload", lfn).exit_code == 0
    assert as_json(failover(home, "status", lfn, "--json"))["state"] == "Failed"
    assert failover(home, "cancel").exit_code == 2


#: Legal in an LFN, and markup to rich: a closing tag without its opening one, and a style tag.
MARKUP_LFN = f"{BLOCKED}/run[/2024]/[bold]out.root"


def test_an_lfn_that_looks_like_markup_is_printed_as_it_is(
    home: Path, outputs: list[Path], blocked: Path, tmp_path: Path
) -> None:
    """Rich would drop the brackets, restyle what follows, or fail on the lone closing tag."""
    upload = failover(home, "upload", str(outputs[0]), "--lfn", MARKUP_LFN)
    assert upload.exit_code == 0, upload.output
    assert f"│ {MARKUP_LFN} │ FailedOver" in upload.stdout
    (home / "se" / "FAILOVER-DISK" / MARKUP_LFN.lstrip("/")).unlink()
    diagram = str(tmp_path / "path.mmd")
    for args in (["status", MARKUP_LFN], ["history", MARKUP_LFN], ["requests", "show", "1"], ["fsck"]):
        result = failover(home, *args)
        assert MARKUP_LFN in result.stdout, (args, result.output)
    explained = failover(home, "explain", MARKUP_LFN, "--output", diagram)
    assert f"{MARKUP_LFN}: Uploading → Uploading → FailedOver\n" in explained.stdout


def test_a_long_upload_report_is_aligned_plain_text_with_a_summary(home: Path, tmp_path: Path) -> None:
    """Past RICH_TABLE_ROWS rows (rich takes ~0.5 ms a row), columns padded to their display width."""
    job = tmp_path / "many"
    job.mkdir()
    files = [job / f"f{i:03d}.dat" for i in range(app.RICH_TABLE_ROWS)] + [job / "数据.dat"]
    for index, path in enumerate(files):
        path.write_bytes(b"x" * (index + 1))
    result = failover(home, "upload", *map(str, files), "--lfn-prefix", "/vo/many")
    assert result.exit_code == 0, result.output
    header, rule, *rows, summary = result.stdout.splitlines()
    assert header.split() == ["LFN", "State", "SE", "Registration"]
    assert set(rule) == {"-", " "}
    assert [row.split()[0] for row in rows] == [f"/vo/many/{path.name}" for path in files]
    columns = {cell_len(row[: row.index(" Registered ")]) for row in rows}
    assert columns == {cell_len(header[: header.index(" State ")])}, "the State column starts alike"
    assert summary == f"{len(files)} files: Registered {len(files)}"


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize(
    ("signum", "to_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"]
)
def test_a_signal_stops_the_upload_cleanly_and_the_same_command_finishes_it(
    home: Path, tmp_path: Path, jobs: str, signum: int, to_group: bool
) -> None:
    """
    Ctrl-C (SIGINT to the whole process group, workers included) or SIGTERM to the command: the files
    being uploaded are finished, the others left alone; the report says which, the exit status is
    128 + the signal, nothing is left in flight, and the same command again uploads the rest.
    """
    files = [str(item.local_path) for item in batch_files(tmp_path, 3000)]
    command = [sys.executable, "-m", "failover.cli", "upload", *files, "--lfn-prefix", "/vo/sig"]
    command += ["--home", str(home), "--jobs", jobs, "--json"]
    db = home / "failover.db"
    # The handlers are set before the first file is uploaded.
    upload = _stopped_once(command, db, "Registered", signum, to_group=to_group)
    stdout, stderr = upload.stdout, upload.stderr
    assert upload.returncode == 128 + signum, stderr
    states = [u["state"] for u in json.loads(stdout)["uploads"]]
    done = states.count("Registered")
    assert 0 < done < len(files) and states.count("Interrupted") == len(files) - done
    name = signal.Signals(signum).name
    assert stderr.splitlines()[-1] == f"stopped by {name}: {len(files) - done:,} files not uploaded; " + (
        "the same command again uploads them"
    )
    assert _count(db, "Registered") == done, "every machine is Registered: none left in flight"
    assert failover(home, "fsck").exit_code == 0
    again = subprocess.run(command, capture_output=True, text=True, env=_without_failover_env(), timeout=60)
    assert again.returncode == 0, again.stderr
    assert {u["state"] for u in json.loads(again.stdout)["uploads"]} == {"Registered"}


def test_a_signal_stops_resume_after_its_batch_and_the_next_resume_finishes(
    home: Path, tmp_path: Path
) -> None:
    """A crash left 2,000 uploads in flight; Ctrl-C to resume leaves those after its batch in flight."""
    items = batch_files(tmp_path, 2000)
    env = open_workspace(home)
    with env.store.transaction():
        for item in items:
            planned, data = plan_upload(
                env, item.local_path, item.lfn, destinations=["LOCAL-DISK"], request=JOB
            )
            assert data is not None
            env.uploads.create(planned, data)
    env.close()
    command = [sys.executable, "-m", "failover.cli", "resume", "--home", str(home), "--json"]
    resuming = _stopped_once(command, home / "failover.db", "Registered", signal.SIGINT)
    stdout, stderr = resuming.stdout, resuming.stderr
    assert resuming.returncode == 130, stderr
    report = json.loads(stdout)
    left = report["left"]
    assert 0 < left < len(items) and len(report["finished"]) + left == len(items)
    assert (
        stderr.splitlines()[-1]
        == f"stopped by SIGINT: {left:,} uploads left in flight; resume again finishes them"
    )
    assert _count(home / "failover.db", "Registered") == len(items) - left
    again = as_json(failover(home, "resume", "--json"))
    assert (len(again["finished"]), again["left"]) == (left, 0)


def test_a_signal_stops_the_executor_and_puts_its_request_back(
    home: Path, tmp_path: Path, blocked: Path
) -> None:
    """Ctrl-C to `executor --once`: the request is released, not left leased, so the next run takes it."""
    files = [str(item.local_path) for item in batch_files(tmp_path, 1500)]
    uploaded = failover(home, "upload", *files, "--lfn-prefix", BLOCKED, "--json", "--jobs", "1")
    assert {u["state"] for u in as_json(uploaded)["uploads"]} == {"FailedOver"}
    blocked.unlink()
    command = [sys.executable, "-m", "failover.cli", "executor", "--once", "--home", str(home)]
    running = _stopped_once(command, home / "failover.db", "Cleaned", signal.SIGINT)
    stderr = running.stderr
    assert running.returncode == 130, stderr
    assert (
        stderr.splitlines()[-1]
        == "stopped by SIGINT: the requests not finished are put back; run again to go on"
    )
    assert 0 < _count(home / "failover.db", "Cleaned") < len(files)
    again = as_json(failover(home, "executor", "--once", "--json"))
    assert again["requests"] == 1, "the request was put back, not left under the stopped executor's lease"
    assert _count(home / "failover.db", "Cleaned") == len(files)


def _without_failover_env() -> dict[str, str]:
    """This process's environment without the FAILOVER_ variables: the command line's flags decide."""
    return {key: value for key, value in os.environ.items() if not key.startswith("FAILOVER_")}


def _stopped_once(
    command: list[str], db: Path, state: str, signum: int, *, to_group: bool = True
) -> subprocess.CompletedProcess[str]:
    """
    Run ``command`` in a session of its own until the workspace database ``db`` holds an upload in
    ``state``, then send it ``signum`` (to its whole process group, or to it alone); return how it ended.
    """
    pipe = subprocess.PIPE
    process = subprocess.Popen(
        command, stdout=pipe, stderr=pipe, text=True, env=_without_failover_env(), start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not _count(db, state):
        assert time.monotonic() < deadline and process.poll() is None, f"no upload reached {state}"
        time.sleep(0.01)
    if to_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _count(db: Path, state: str) -> int:
    """How many uploads the workspace database holds in ``state`` (0 while it is not created yet)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM machines WHERE state = ?", (state,)).fetchone()[0])
        except sqlite3.OperationalError:  # its tables are not created yet
            return 0


def test_retry_all_retries_every_stuck_upload_each_in_a_request_of_its_own(
    home: Path, failed_over: list[str], blocked: Path
) -> None:
    assert failover(home, "cancel", "1").exit_code == 0
    assert failover(home, "retry").exit_code == 2, "the LFNs, or --all"
    assert as_json(failover(home, "retry", "--all", "--json")) == {"uploads": 2, "requests": [2, 3]}
    refused = failover(home, "retry", *failed_over)
    assert refused.exit_code == 1 and "not Stuck" in refused.stderr, "all or nothing"
    blocked.unlink()
    assert as_json(failover(home, "executor", "--once", "--json"))["requests"] == 2
    assert {as_json(failover(home, "status", lfn, "--json"))["state"] for lfn in failed_over} == {"Cleaned"}


def test_resume_with_nothing_to_do(home: Path) -> None:
    report = as_json(failover(home, "resume", "--json"))
    assert report == {
        "finished": [],
        "failed": {},
        "left": 0,
        "committed": [],
        "temporary_removed": 0,
        "temporary_not_removed": {},
    }


def _killed_before_publishing(home: Path, output: Path) -> None:
    """Upload ``output`` as /vo/k/hits.root in a process killed just before its put publishes the file."""
    killed = run_process(
        home, "upload", str(output), "--lfn", "/vo/k/hits.root", env_extra={CRASH_AT: "before-publish"}
    )
    assert killed.returncode == CRASH_EXIT_CODE


def test_resume_after_a_put_killed_before_publishing_can_remove_what_it_left(
    home: Path, outputs: list[Path]
) -> None:
    """The kill leaves a temporary file (fsck says so); resume --remove-temporary deletes it and ends it."""
    _killed_before_publishing(home, outputs[0])
    assert "temporary-file" in failover(home, "fsck", "--json").stdout
    report = as_json(failover(home, "resume", "--remove-temporary", "--json"))
    assert (report["temporary_removed"], [u["state"] for u in report["finished"]]) == (1, ["Registered"])
    assert failover(home, "fsck").exit_code == 0


def test_resume_reports_an_upload_that_failed_on_stderr_with_status_1(
    home: Path, outputs: list[Path]
) -> None:
    """A job wrapper runs `failover resume || alert`: the upload whose file is gone ends Failed, says so."""
    _killed_before_publishing(home, outputs[0])
    outputs[0].unlink()  # the job's scratch directory was cleaned before the resume
    resumed = failover(home, "resume")
    assert resumed.exit_code == 1
    assert resumed.stdout.splitlines() == ["resumed 1 uploads; committed requests: none"]
    (line,) = resumed.stderr.splitlines()
    assert line.startswith("/vo/k/hits.root: UploadFailed: ") and "does not exist" in line
    assert as_json(failover(home, "resume", "--json"))["failed"] == {}  # nothing left in flight


def test_output_read_by_a_reader_that_stops_early_ends_quietly_with_every_file_uploaded(
    home: Path, tmp_path: Path
) -> None:
    """`failover upload *.root | head -1`: no BrokenPipeError line, status 1, and all the work is done."""
    job = tmp_path / "many"
    job.mkdir()
    files = []
    for index in range(600):
        (job / f"f{index:03d}").write_bytes(b"%d\n" % index)
        files.append(str(job / f"f{index:03d}"))
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    # Long LFNs: past the pipe's 64 KiB, the command must write after the reader has gone.
    prefix = "/vo/" + "pipe" * 25
    command = [sys.executable, "-m", "failover.cli", "upload", *files, "--lfn-prefix", prefix]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().split() == [b"LFN", b"State", b"SE", b"Registration"]
        process.stdout.close()
        errors = process.stderr.read()
    assert (process.returncode, errors) == (1, b"")
    assert as_json(failover(home, "status", "--json"))["uploads"]["Registered"] == 600


def test_an_upload_the_catalog_refuses_says_why_in_status_and_explain(
    home: Path, outputs: list[Path]
) -> None:
    """/vo/ns/out is a file: /vo/ns/out/part1 cannot be one. Refused before any put, and the reason stays."""
    assert failover(home, "upload", str(outputs[0]), "--lfn", "/vo/ns/out").exit_code == 0
    refused = failover(home, "upload", str(outputs[1]), "--lfn", "/vo/ns/out/part1")
    reason = "catalog 'LocalCatalog' refuses /vo/ns/out/part1: /vo/ns/out is a file, not a directory"
    assert (refused.exit_code, refused.stderr.strip()) == (1, f"{outputs[1]}: RegistrationRefused: {reason}")
    assert not (home / "se" / "LOCAL-DISK" / "vo" / "ns" / "out").is_dir()
    assert as_json(failover(home, "status", "/vo/ns/out/part1", "--json"))["refused"] == reason
    assert f"  refused: {reason}" in failover(home, "status", "/vo/ns/out/part1").stdout.splitlines()
    assert as_json(failover(home, "explain", "/vo/ns/out/part1", "--json"))["refused"] == reason


def test_prune_counts_then_forgets_what_ended_before_the_age_given(home: Path, outputs: list[Path]) -> None:
    assert failover(home, "upload", str(outputs[0]), "--lfn", "/vo/old/hits.root").exit_code == 0
    counted = failover(home, "prune", "--older-than", "0s", "--dry-run")
    assert counted.stdout.startswith("would delete 1 uploads and 0 requests that ended before 20")
    assert as_json(failover(home, "prune", "--older-than", "30d", "--json"))["uploads"] == 0
    assert as_json(failover(home, "prune", "--older-than", "0s", "--json"))["uploads"] == 1
    assert as_json(failover(home, "status", "--json"))["total"] == 0
    wrong = failover(home, "prune", "--older-than", "3 weeks")
    assert wrong.exit_code == 2 and "'3 weeks' is not an age such as 30d, 12h, 90m or 3600s" in wrong.stderr


def test_diagram_check_passes_on_the_committed_diagrams(home: Path) -> None:
    result = failover(home, "diagram", "--check", "--dir", str(REPOSITORY / "diagrams"))
    assert result.exit_code == 0, result.output


def test_diagram_writes_and_check_finds_stale(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "diagrams"
    stale = failover(home, "diagram", "--check", "--dir", str(target))
    assert stale.exit_code == 1
    assert "stale:" in stale.stderr
    assert failover(home, "diagram", "--dir", str(target)).exit_code == 0
    assert (target / "upload.mmd").is_file()
    assert failover(home, "diagram", "--check", "--dir", str(target)).exit_code == 0


def test_an_error_is_one_line_and_verbose_adds_the_traceback(home: Path) -> None:
    result = failover(home, "history", "/vo/never/uploaded")
    assert result.exit_code == 1
    assert result.stderr == f"InvalidInput: no upload of /vo/never/uploaded in {home / 'failover.db'}\n"
    verbose = failover(home, "history", "/vo/never/uploaded", "--verbose")
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith("InvalidInput: ")


def test_a_configuration_file_replaces_the_embedded_default(tmp_path: Path, outputs: list[Path]) -> None:
    config = tmp_path / "failover.toml"
    config.write_text(
        '[storage.SE-A]\nurl = "se-a"\n[storage.SE-B]\nurl = "se-b"\ncreate_root = true\n'
        '[catalogs.Main]\nmaster = true\n[upload]\ndestinations = ["SE-B"]\n'
    )
    result = failover(
        tmp_path / "unused", "upload", str(outputs[0]), "--lfn", "/vo/a", "--config", str(config), "--json"
    )
    assert as_json(result)["uploads"][0]["se"] == "SE-B"
    assert (tmp_path / "se-b" / "vo" / "a").is_file()
    assert (tmp_path / "failover.db").is_file() and not (tmp_path / "unused").exists()
    unknown = failover(
        tmp_path, "upload", str(outputs[0]), "--lfn", "/vo/b", "--dest", "LOCAL-DISK", "--config", str(config)
    )
    assert unknown.exit_code == 1
    assert "UnknownStorageElement: " in unknown.stderr


def test_an_se_not_mounted_is_failed_over_named_by_fsck_and_passed_over_by_resume(
    tmp_path: Path, outputs: list[Path]
) -> None:
    """SE-A's root is its mount point, empty because its storage is not mounted: nothing lands there."""
    config = tmp_path / "failover.toml"
    config.write_text(
        '[storage.SE-A]\nurl = "mnt/se-a"\nmount = "mnt/se-a"\n[storage.FAIL]\nurl = "fail"\n'
        'create_root = true\n[catalogs.Main]\nmaster = true\n[upload]\ndestinations = ["SE-A"]\n'
        'failovers = ["FAIL"]\n'
    )
    (tmp_path / "mnt" / "se-a").mkdir(parents=True)
    run = functools.partial(failover, tmp_path / "unused")
    uploaded = as_json(run("upload", str(outputs[0]), "--lfn", "/vo/a", "--config", str(config), "--json"))
    assert [(u["se"], u["state"]) for u in uploaded["uploads"]] == [("FAIL", "FailedOver")]
    assert list((tmp_path / "mnt" / "se-a").iterdir()) == []
    checked = run("fsck", "--config", str(config), "--json")
    assert checked.exit_code == 1
    not_mounted = f"SE-A: {tmp_path / 'mnt' / 'se-a'}, its configured mount, is not mounted"
    assert [(p["code"], p["subject"]) for p in json.loads(checked.stdout)["problems"]] == [
        ("storage-unavailable", "SE-A")
    ]
    # In a process of its own, as a user runs it: the warning is the CLI's log line.
    resumed = run_process(tmp_path / "unused", "resume", "--remove-temporary", "--config", str(config))
    assert resumed.returncode == 0
    assert f"failover: temporary files at SE-A not removed: {not_mounted}" in resumed.stderr
    assert resumed.stdout.endswith("temporary files removed: 0\n")


def test_workers_open_the_configuration_given(
    tmp_path: Path, outputs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "BATCH_FILES", 1)
    config = tmp_path / "failover.toml"
    config.write_text('[storage.SE-A]\nurl = "se-a"\n[catalogs.Main]\nmaster = true\n')
    (tmp_path / "se-a").mkdir()
    args = ["upload", *map(str, outputs), "--lfn-prefix", "/vo/c", "--dest", "SE-A", "--jobs", "2"]
    result = failover(tmp_path / "unused", *args, "--config", str(config), "--json")
    assert [u["se"] for u in as_json(result)["uploads"]] == ["SE-A", "SE-A"]
    stored = sorted(path.name for path in (tmp_path / "se-a" / "vo" / "c").iterdir())
    assert stored == sorted(output.name for output in outputs)
    assert not (tmp_path / "unused").exists()


def test_demo_ends_with_every_upload_cleaned(home: Path, tmp_path: Path) -> None:
    result = failover(home, "demo", "--dir", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    assert "FailedOver at FAILOVER-DISK" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("All 4 uploads Cleaned")
    assert (tmp_path / "demo" / "upload-path.mmd").is_file()
    again = failover(home, "demo", "--dir", str(tmp_path / "demo"))
    assert (again.exit_code, again.stderr.count("\n")) == (1, 1)


@pytest.mark.parametrize(
    ("case", "args"),
    [
        ("missing file", ["upload", "missing.root", "--lfn", "/vo/a"]),
        ("unknown SE", ["upload", "job/hits.root", "--lfn", "/vo/a", "--dest", "NO-SUCH-SE"]),
        ("bad LFN", ["upload", "job/hits.root", "--lfn", "vo/relative"]),
        ("bad config", ["status", "--config", "bad.toml"]),
        ("unreadable database", ["status", "--home", "garbage"]),
    ],
)
def test_bad_input_gives_one_line_and_status_1(
    home: Path, outputs: list[Path], tmp_path: Path, case: str, args: list[str]
) -> None:
    (tmp_path / "bad.toml").write_text('[storage.SE-A]\nurl = "nope://x"\n')
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "failover.db").write_bytes(b"\x00garbage, not a database" * 400)
    result = run_process(home, *args)
    assert result.returncode == 1, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_the_console_script_freezes_what_it_loaded_before_running_the_command(home: Path) -> None:
    """Loaded modules are kept out of every later collection, the one at exit included (~0.1 s a run)."""
    script = "import gc, failover.cli\ntry:\n    failover.cli.main(['status', '--json'])\nfinally:\n"
    script += "    print(gc.get_freeze_count())"
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert int(done.stdout.strip().splitlines()[-1]) > 10_000, done.stderr


def _run_and_list_modules(home: Path, *args: str) -> tuple[str, list[str]]:
    """Run ``failover ARGS`` in a fresh interpreter; its stdout, and the fsspec, networkx, sqlite-utils,
    graph, diagram and CLI modules it loaded."""
    script = "import sys, failover.cli\ntry:\n    failover.cli.main(sys.argv[1:])\nfinally:\n"
    script += "    print(sorted(m for m in sys.modules"
    script += " if m.split('.')[0] in ('fsspec', 'networkx', 'sqlite_utils')"
    script += " or m.startswith(('fsm.graph', 'fsm.diagram', 'failover.cli.'))))"
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    *output, loaded = done.stdout.splitlines()
    return "\n".join(output), ast.literal_eval(loaded)


def test_upload_and_status_load_neither_the_other_commands_nor_networkx_nor_fsspec(
    home: Path, outputs: list[Path]
) -> None:
    """
    Commands are imported when run, and the shipped machines' stamps spare their graph checks: an upload
    or a status never loads networkx (a tenth of a second of each start) nor the diagram renderer. Local
    SEs need no fsspec (a twentieth of a second). sqlite-utils (a twenty-fifth) runs the migrations that
    create the workspace, and is not loaded again once its schema is current.
    """
    report, loaded = _run_and_list_modules(
        home, "upload", str(outputs[0]), "--lfn", "/vo/a/hits.root", "--json"
    )
    assert json.loads(report)["uploads"][0]["state"] == "Registered"
    ours = [module for module in loaded if not module.startswith("sqlite_utils")]
    assert ours == ["failover.cli.app", "failover.cli.bar", "failover.cli.upload"]
    assert "sqlite_utils" in loaded  # the new workspace's schema was made
    report, loaded = _run_and_list_modules(
        home, "upload", str(outputs[1]), "--lfn", "/vo/a/tracks.root", "--json"
    )
    assert json.loads(report)["uploads"][0]["state"] == "Registered"
    assert loaded == ["failover.cli.app", "failover.cli.bar", "failover.cli.upload"]
    counts, loaded = _run_and_list_modules(home, "status", "--json")
    assert json.loads(counts)["uploads"]["Registered"] == 2
    assert loaded == ["failover.cli.app", "failover.cli.status"]
    diagram, loaded = _run_and_list_modules(home, "explain", "/vo/a/hits.root")
    assert "Uploading --> Registered" in diagram and "networkx" in loaded and "fsm.diagram" in loaded
    checked, loaded = _run_and_list_modules(home, "fsck")
    assert "ok" in checked and "fsspec" in loaded  # listing a local SE goes through fsspec's find


def test_every_command_is_listed_in_order_and_an_unknown_one_is_refused(home: Path) -> None:
    commands = failover(home, "--help").output.split("Commands:")[1].splitlines()
    listed = [line.split()[0] for line in commands if line]
    assert listed[:3] == ["upload", "status", "history"] and listed[-2:] == ["diagram", "demo"]
    assert len(listed) == len(cli.lazy_commands)
    result = failover(home, "uplaod")
    assert result.exit_code == 2 and "No such command 'uplaod'" in result.output


def test_a_lazy_command_needs_a_module_and_a_command() -> None:
    group = app.FailoverGroup()
    with pytest.raises(ValueError, match=re.escape("'failover.cli.upload' is not 'module:attribute'")):
        group.add_lazy_command("upload", "failover.cli.upload")
    group.add_lazy_command("oops", "failover.cli.app:error_line")
    not_a_command = re.escape("lazy command 'oops': failover.cli.app:error_line is not a command")
    with pytest.raises(TypeError, match=not_a_command):
        group.get_command(click.Context(group), "oops")


def test_usage_errors_exit_2_in_a_real_process(home: Path) -> None:
    result = run_process(home, "upload")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_the_console_script_runs_the_demo_in_under_30_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    script = Path(sys.executable).parent / "failover"
    result = subprocess.run(
        [str(script), "demo", "--dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Cleaned" in result.stdout.splitlines()[-1]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_looping_executor_logs_each_pass_with_the_time(
    home: Path, failed_over: list[str], blocked: Path, jobs: str
) -> None:
    """Run as a service, it says what it did: the pass that took request 1, with the time, on stderr."""
    blocked.unlink()
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    command = [sys.executable, "-m", "failover.cli", "executor", "--loop", "--poll", "0.1", "--jobs", jobs]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        deadline = time.monotonic() + 30
        while _request_status(home, 1) != "Done" and time.monotonic() < deadline:
            time.sleep(0.05)
        # A stop ends the pass at hand, whose line is written all the same.
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
    passes = [line for line in stderr.splitlines() if "taken" in line]
    assert len(passes) == 1, stderr
    assert re.fullmatch(rf"{stamp} failover\.executor: executor-\S+: 1 request taken, left Done 1", passes[0])


def _request_status(home: Path, request_id: int) -> str | None:
    with contextlib.closing(sqlite3.connect(home / "failover.db")) as conn:
        row = conn.execute("SELECT status FROM requests WHERE id = ?", (request_id,)).fetchone()
    return None if row is None else str(row[0])


@pytest.mark.parametrize(
    ("jobs", "banner"), [("1", "polling every 0.1 s"), ("2", "2 executors polling every 0.1 s")]
)
def test_a_looping_executor_stops_on_sigterm(home: Path, jobs: str, banner: str) -> None:
    env = {**os.environ, "FAILOVER_HOME": str(home)}
    command = [sys.executable, "-m", "failover.cli", "executor", "--loop", "--poll", "0.1", "--jobs", jobs]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert banner in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
