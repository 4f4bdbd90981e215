"""
An output file that changes after the upload checked it (a job still writing it, a file rewritten before a
resume) is never stored nor registered as if it were the file checked: each SE refuses it with
``SourceChanged``, the upload ends Failed with the reasons, and the same call once the file is complete
uploads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_support import change_while_read

from failover import Environment, UploadFailed, fsck, open_workspace, resume, upload
from failover.batch import BatchItem, upload_many
from failover.checksum import ChecksumType, checksum_file
from failover.dirac import FailoverTransfer
from failover.errors import SourceChanged
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE
from states import UploadState

SES = ("DEST", "FAIL")
LFN = "/vo/run42/out.root"


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """A workspace with a destination and a failover SE."""
    return open_workspace(tmp_path / "ws", ses=SES)


def _output(tmp_path: Path, name: str = "out.root", size: int = 3 * 1024 * 1024) -> Path:
    path = tmp_path / "job" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def _append(path: Path) -> None:
    with path.open("ab") as writer:
        writer.write(b"the last events")


def _nothing_stored(env: Environment, lfn: str = LFN) -> None:
    for name in SES:
        se = env.se(name)
        assert not se.exists(lfn)
        assert list(se.list_temporary()) == []
    assert all(catalog.get_file(lfn) is None for catalog in env.catalogs)


def test_a_file_still_being_written_is_refused_everywhere_then_uploaded_once_complete(
    env: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _output(tmp_path)
    checked = local.stat().st_size
    with monkeypatch.context() as patch:
        change_while_read(patch, local, lambda: _append(local))
        with pytest.raises(UploadFailed) as caught:
            upload(env, local, LFN, destinations="DEST", failovers="FAIL")
    grown = local.stat().st_size
    assert grown == checked + len(b"the last events")
    errors = caught.value.errors
    assert set(errors) == {"DEST", "FAIL"}
    assert "changed while it was read" in errors["DEST"]
    assert f"holds {grown:,} bytes, {checked:,} when the upload checked it" in errors["FAIL"]
    row = env.uploads.load(LFN)
    assert row.state == UploadState.FAILED
    assert [failure["error"]["code"] for failure in row.data["failures"]] == ["source_changed"] * 2
    _nothing_stored(env)

    result = upload(env, local, LFN, destinations="DEST", failovers="FAIL")

    assert result.state is UploadState.REGISTERED and result.se == "DEST"
    assert result.size == grown
    assert result.checksum == checksum_file(local, [ChecksumType.ADLER32]).hexdigest(ChecksumType.ADLER32)
    assert fsck(env).ok


def test_a_batch_refuses_the_file_that_changed_and_uploads_the_others(
    env: Environment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [_output(tmp_path, f"f{n}.root", size=4096) for n in range(3)]
    items = [BatchItem(path, f"/vo/run42/f{n}.root") for n, path in enumerate(files)]
    change_while_read(monkeypatch, files[1], lambda: _append(files[1]))

    outcomes = upload_many(env, items, destinations=["DEST"], failovers=["FAIL"])

    assert isinstance(outcomes[1], UploadFailed)
    assert set(outcomes[1].errors) == {"DEST", "FAIL"}
    steady = [outcomes[0], outcomes[2]]
    assert [getattr(o, "state", o) for o in steady] == [UploadState.REGISTERED] * 2
    _nothing_stored(env, "/vo/run42/f1.root")
    assert env.uploads.load("/vo/run42/f1.root").state == UploadState.FAILED


def _rewrite_same_size_and_time(path: Path) -> None:
    """Other bytes, same size, the old modification time put back: only a checksum can tell."""
    status = path.stat()
    with path.open("r+b") as writer:
        writer.write(b"rewritten")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_append, "bytes, {size:,} when the upload checked it"),
        (_rewrite_same_size_and_time, "has ADLER32 {now}, {then} when the upload checked it"),
    ],
    ids=["grown", "rewritten-same-size-and-time"],
)
def test_resume_refuses_a_file_that_changed_after_the_crash(
    tmp_path: Path, change: object, reason: str
) -> None:
    """The DIRAC client gives the file's checksum; the job is killed before the put; the file changes."""
    local = _output(tmp_path)
    size = local.stat().st_size
    then = checksum_file(local, [ChecksumType.ADLER32]).hexdigest(ChecksumType.ADLER32)
    home = tmp_path / "ws"
    pid = os.fork()
    if pid == 0:
        os.environ[CRASH_AT] = "before-put"
        client = FailoverTransfer(environment=open_workspace(home, ses=SES))
        client.transferAndRegisterFile(
            "out.root", str(local), LFN, ["DEST", "FAIL"], {"Checksum": then, "ChecksumType": "ADLER32"}
        )
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == CRASH_EXIT_CODE
    change(local)  # type: ignore[operator]
    now = checksum_file(local, [ChecksumType.ADLER32]).hexdigest(ChecksumType.ADLER32)
    env = open_workspace(home, ses=SES)

    report = resume(env, commit_drafts=False)

    assert isinstance(report.failed[LFN], UploadFailed)
    expected = reason.format(size=size, now=now, then=then)
    assert all(expected in message for message in report.failed[LFN].errors.values())
    assert set(report.failed[LFN].errors) == {"DEST", "FAIL"}
    assert env.uploads.load(LFN).state == UploadState.FAILED
    _nothing_stored(env)
    assert fsck(env).ok


def test_source_changed_is_permanent_and_survives_the_journal() -> None:
    err = SourceChanged("out.root changed while it was read", se="DEST", lfn=LFN)
    assert not err.retryable
    rebuilt = SourceChanged.from_record(err.to_record())
    assert type(rebuilt) is SourceChanged and rebuilt.se == "DEST" and str(rebuilt) == str(err)
