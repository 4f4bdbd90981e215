"""
The bytes a put writes reach whoever shows progress, and ``failover upload``'s bar moves with them: a
big file's bar moves while it is written, not only once it is stored.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from storage_support import local_file, make_local_se

from failover.checksum import CHUNK_SIZE
from failover.cli.bar import BIG_FILE, UploadBar
from failover.storage.kernel_copy import KERNEL_STEP
from failover.storage.progress import bytes_copied, reporting_bytes
from failover.storage.transfer import PIPELINE_MIN_SIZE

LFN = "/vo/data/run1/out.root"


@pytest.mark.parametrize(
    ("kind", "size", "kernel"),
    [
        ("file", 10_000, True),
        ("file", 2 * KERNEL_STEP + 5, True),
        ("file", PIPELINE_MIN_SIZE + 5, False),
        ("memory", PIPELINE_MIN_SIZE + 5, True),
        ("memory", CHUNK_SIZE + 5, True),
    ],
    ids=["small", "big-kernel-copy", "big-through-python", "big-remote", "chunked-remote"],
)
def test_a_put_tells_the_listener_every_byte_it_writes(
    tmp_path: Path, kind: str, size: int, kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernel:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    heard: list[int] = []
    se = make_local_se(kind, tmp_path)
    local = local_file(tmp_path, random.Random(3).randbytes(size))

    with reporting_bytes(heard.append):
        se.put(local, LFN)
    se.remove(LFN)
    se.put(local, LFN)  # outside the block: not heard

    assert sum(heard) == size
    assert len(heard) > 1 or size < CHUNK_SIZE  # a big put is heard chunk by chunk, as it goes
    assert all(count > 0 for count in heard)


def test_nothing_is_heard_without_a_listener_and_blocks_nest() -> None:
    outer: list[int] = []
    inner: list[int] = []
    bytes_copied(5)  # no listener: nothing happens
    with reporting_bytes(outer.append):
        bytes_copied(1)
        with reporting_bytes(inner.append):
            bytes_copied(2)
        bytes_copied(3)
    assert (outer, inner) == ([1, 3], [2])


class RecordingProgress:
    """Stands for rich's Progress: records where the bar was each time it was redrawn."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.frames: list[tuple[int, str]] = []

    def add_task(self, description: str, total: float | None = None) -> int:
        self.fields = {"description": description, "total": total, "completed": 0}
        return 0

    def update(self, task: int, **fields: Any) -> None:
        self.fields.update(fields)

    def refresh(self) -> None:
        self.frames.append((self.fields["completed"], self.fields["description"]))


def make_bar(sizes: dict[str, int]) -> tuple[UploadBar, RecordingProgress]:
    progress = RecordingProgress()
    return UploadBar(progress, sizes), progress  # type: ignore[arg-type]


def test_the_bar_moves_with_the_bytes_written_and_settles_on_the_files_done() -> None:
    bar, progress = make_bar({"/a": 1000, "/b": 3000})

    bar.wrote(400)
    bar.wrote(600)
    assert progress.frames[-1] == (1000, "0/2 files")  # /a written, no result yet
    bar.finished("/a")
    assert progress.frames[-1] == (1000, "1/2 files")
    bar.wrote(1500)
    assert progress.frames[-1] == (2500, "1/2 files")
    bar.finished("/b")
    assert progress.frames[-1] == (4000, "2/2 files")


def test_a_put_heard_twice_never_takes_the_bar_past_the_total_or_the_next_files() -> None:
    """A put that failed half-way and was made again at the failover SE is heard twice."""
    bar, progress = make_bar({"/a": 1000, "/b": 1000})

    bar.wrote(700)  # the destination failed after 700 bytes
    bar.wrote(1000)  # the failover SE took all of it
    bar.finished("/a")
    assert bar.completed == 1700  # the extra 700 are what /b shows early, at most
    bar.wrote(1000)
    assert bar.completed == 2000  # never past the total
    bar.finished("/b")
    assert progress.frames[-1] == (2000, "2/2 files")


def test_the_bar_is_redrawn_when_its_percent_changes_not_for_every_chunk() -> None:
    bar, progress = make_bar({f"/f{i}": 1000 for i in range(1000)})  # 1 MB in 1,000 files

    for _ in range(10_000):
        bar.wrote(100)

    percents = [completed * 100 // 1_000_000 for completed, _ in progress.frames]
    assert percents == list(range(101))  # 101 redraws for 10,000 chunks


def _frames(stderr: str) -> list[tuple[float, float, str]]:
    """The bar's frames in a terminal's output: (written MB, total MB, files done)."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stderr)
    found = re.findall(r"(\d+/\d+) files\D*?(\d+\.\d+)/(\d+\.\d+) MB", plain)
    return [(float(done), float(total), files) for files, done, total in found]


def test_a_big_files_bar_moves_while_it_is_written(tmp_path: Path) -> None:
    """``failover upload`` of one big file on a terminal: frames between 0 and the total, before 1/1."""
    big = tmp_path / "big.root"
    big.write_bytes(random.Random(5).randbytes(BIG_FILE + KERNEL_STEP))
    environment = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"}
    environment.pop("FAILOVER_CONFIG", None)
    command = [sys.executable, "-m", "failover.cli", "upload", str(big), "--lfn", LFN, "--dest", "LOCAL-DISK"]
    command += ["--home", str(tmp_path / "ws")]

    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60, check=True)

    frames = _frames(done.stderr)
    total = frames[-1][1]
    during = [written for written, _, files in frames if files == "0/1" and 0 < written < total]
    assert len(during) >= 3, frames
    assert during == sorted(during)
    assert frames[-1] == (total, total, "1/1")
