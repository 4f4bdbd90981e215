"""
A big put to a local disk is copied by the kernel (``os.copy_file_range``), then read back and compared
with the source; when the kernel cannot copy, the bytes go through Python as before.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from storage_support import assert_clean, digests, local_file, make_local_se, read

from failover.checksum import CHUNK_SIZE, ChecksumType
from failover.errors import SourceChanged, StorageUnavailable, TransferCorrupted
from failover.storage.backends import LocalBackend
from failover.storage.kernel_copy import KERNEL_STEP
from failover.storage.transfer import PIPELINE_CHUNK_SIZE
from fsm.crashpoints import CRASH_AT, CRASH_EXIT_CODE

ADLER32, MD5 = ChecksumType.ADLER32, ChecksumType.MD5
LFN = "/vo/data/run1/big.root"
REAL_COPY = os.copy_file_range
CopyFileRange = Callable[..., int]


@pytest.fixture(scope="module")
def content() -> bytes:
    """Two kernel steps and a bit: three copy_file_range calls, the last one short."""
    return random.Random(11).randbytes(2 * KERNEL_STEP + 12_345)


def spy_copies(monkeypatch: pytest.MonkeyPatch, copy: CopyFileRange = REAL_COPY) -> list[int]:
    """Route ``os.copy_file_range`` through ``copy``; return the list of counts it returned."""
    counts: list[int] = []

    def spying(*args: int) -> int:
        count = copy(*args)
        counts.append(count)
        return count

    monkeypatch.setattr(os, "copy_file_range", spying)
    return counts


def spy_written(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the ranges the local backend is told were written (it starts their writeback)."""
    ranges: list[tuple[int, int]] = []
    real = LocalBackend.written

    def written(self: LocalBackend, stream: IO[bytes], offset: int, length: int) -> None:
        ranges.append((offset, length))
        real(self, stream, offset, length)

    monkeypatch.setattr(LocalBackend, "written", written)
    return ranges


def test_a_big_put_to_a_local_disk_is_copied_by_the_kernel(
    tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts, ranges = spy_copies(monkeypatch), spy_written(monkeypatch)
    se = make_local_se("file", tmp_path)

    result = se.put(local_file(tmp_path, content), LFN, checksum_types=[ADLER32, MD5])

    assert counts == [KERNEL_STEP, KERNEL_STEP, 12_345, 0]
    assert read(se, LFN) == content
    assert (result.size, dict(result.checksums)) == (len(content), digests(content, ADLER32, MD5))
    # Each range is read back, then handed to the disk, in order.
    assert ranges == [(0, KERNEL_STEP), (KERNEL_STEP, KERNEL_STEP), (2 * KERNEL_STEP, 12_345)]


def _refusing(answer: int | None) -> CopyFileRange:
    def refuse(*args: int) -> int:
        if answer is None:
            return 0
        raise OSError(answer, os.strerror(answer))

    return refuse


@pytest.mark.parametrize(
    "answer",
    [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, None],
    ids=["other-filesystem", "no-such-call", "not-supported", "not-a-regular-file", "copies-nothing"],
)
def test_a_source_the_kernel_will_not_copy_goes_through_python(
    tmp_path: Path, content: bytes, answer: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts, ranges = spy_copies(monkeypatch, _refusing(answer)), spy_written(monkeypatch)
    se = make_local_se("file", tmp_path)

    result = se.put(local_file(tmp_path, content), LFN)

    assert counts in ([], [0])  # asked once, then never again
    assert read(se, LFN) == content
    assert result.checksums[ADLER32] == digests(content, ADLER32)[ADLER32]
    assert [offset for offset, _ in ranges] == list(range(0, len(content), PIPELINE_CHUNK_SIZE))


def test_a_kernel_copy_failing_midway_leaves_nothing(
    tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once bytes are copied, an error is the put's: no fall-back that would mix two copies."""
    calls = 0

    def failing_second(*args: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.EIO, "Input/output error")
        return REAL_COPY(*args)

    spy_copies(monkeypatch, failing_second)
    se = make_local_se("file", tmp_path)

    with pytest.raises(StorageUnavailable) as caught:
        se.put(local_file(tmp_path, content), LFN)

    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.EIO
    assert_clean(se, LFN)


def spoiling(at: int) -> CopyFileRange:
    """A kernel copy that spoils the byte at ``at`` of the copy: what it stored is not the source."""

    def copy(*args: int) -> int:
        source, target, _count, source_offset, target_offset = args
        copied = REAL_COPY(*args)
        if target_offset <= at < target_offset + copied:
            right = os.pread(source, 1, source_offset + at - target_offset)
            os.pwrite(target, bytes([right[0] ^ 0xFF]), at)
        return copied

    return copy


@pytest.mark.parametrize("at", [0, 2 * KERNEL_STEP + 12_344], ids=["first-byte", "last-byte"])
def test_a_kernel_copy_that_differs_from_the_source_is_not_stored(
    tmp_path: Path, content: bytes, at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each range is read back and compared with the source: a wrong copy is TransferCorrupted (retried)."""
    spy_copies(monkeypatch, spoiling(at))
    se = make_local_se("file", tmp_path)
    local = local_file(tmp_path, content)
    piece = CHUNK_SIZE // 2

    with pytest.raises(
        TransferCorrupted,
        match=f"differs from the source in the [0-9,]+ bytes from offset {at // piece * piece:,}",
    ):
        se.put(local, LFN)

    assert_clean(se, LFN)
    monkeypatch.setattr(os, "copy_file_range", REAL_COPY)
    assert se.put(local, LFN).checksums[ADLER32] == digests(content, ADLER32)[ADLER32]


def _rewrite_header(local: Path) -> None:
    with open(local, "r+b") as stream:
        stream.write(b"new header")
    status = os.stat(local)
    os.utime(local, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


def _append(local: Path) -> None:
    with open(local, "ab") as stream:
        stream.write(b"more")


@pytest.mark.parametrize(
    ("change", "said", "after"),
    [
        (_rewrite_header, "was modified", lambda before: b"new header" + before[10:]),
        (_append, "bytes when the read began", lambda before: before + b"more"),
    ],
    ids=["rewritten", "grown"],
)
def test_a_source_changed_during_a_kernel_copy_is_refused(
    tmp_path: Path,
    content: bytes,
    change: Callable[[Path], None],
    said: str,
    after: Callable[[bytes], bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A job still writing its output while the kernel copies it: SourceChanged, although the copy also
    differs from the source (the source is checked first).
    """
    local = local_file(tmp_path, content)

    def changing_after_first(*args: int) -> int:
        copied = REAL_COPY(*args)
        if args[3] == 0:
            change(local)
        return copied

    spy_copies(monkeypatch, changing_after_first)
    se = make_local_se("file", tmp_path)

    with pytest.raises(SourceChanged, match=f"changed while it was read.*{said}"):
        se.put(local, LFN)

    assert_clean(se, LFN)
    assert local.read_bytes() == after(
        content
    )  # the user's file is only ever read: the change is all there is


def test_an_upload_killed_half_way_through_a_kernel_copy_leaves_a_partial_temporary_that_resume_replaces(
    tmp_path: Path, content: bytes
) -> None:
    """
    ``failover upload`` of a big file, killed (``os._exit``) once the kernel copied its first range: the
    SE shows no final name, only a partial temporary; ``resume --remove-temporary`` deletes it and puts the
    file again, whole.
    """
    local = local_file(tmp_path, content)
    home = tmp_path / "ws"
    environment = {**os.environ, CRASH_AT: "mid-write"}
    environment.pop("FAILOVER_CONFIG", None)
    command = [sys.executable, "-m", "failover.cli", "upload", str(local), "--lfn", LFN, "--home", str(home)]

    killed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)

    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    left = [path for path in home.rglob("*") if path.is_file() and path.name.startswith(".big.root")]
    assert [path.stat().st_size for path in left] == [KERNEL_STEP]  # one range of three, under a hidden name
    assert not [path for path in home.rglob("big.root")]
    del environment[CRASH_AT]
    resumed = subprocess.run(
        [sys.executable, "-m", "failover.cli", "resume", "--remove-temporary", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    report = json.loads(resumed.stdout)
    assert (report["temporary_removed"], [u["state"] for u in report["finished"]]) == (1, ["Registered"])
    (stored,) = home.rglob("big.root")
    assert stored.read_bytes() == content
    assert not [path for path in home.rglob("*") if path.name.startswith(".big.root")]
