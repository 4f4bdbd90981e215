"""
``failover upload``'s progress bar: bytes over all files, on stderr, on a terminal only.

The bar stands at the bytes of the files that have a result, plus the bytes the puts under way have
written (heard through :mod:`failover.storage.progress`, in this process only: worker processes report
per batch), never past the total. It is redrawn by the thread that moves it, when its whole percent
changes or a file gets its result: no refresh thread runs while upload workers are forked (a child could
inherit the console's lock held).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from failover.cli.app import stderr

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["BIG_FILE", "UploadBar", "file_size", "upload_bar"]

#: A single file at least this big gets a progress bar too.
BIG_FILE = 64 * 1024**2


def file_size(file: Path) -> int:
    """The size of ``file``, 0 when it is not a readable regular file (its upload reports why)."""
    try:
        return file.stat().st_size if file.is_file() else 0
    except OSError:
        return 0


class UploadBar:
    """
    The bar of one ``failover upload``: told of the bytes written and of each file's result.

    Args:
        progress: the rich progress display.
        sizes: each file's size, by LFN.
    """

    def __init__(self, progress: Progress, sizes: dict[str, int]) -> None:
        self._progress = progress
        self._sizes = sizes
        self._total = sum(sizes.values())
        self._task: TaskID = progress.add_task("uploading", total=self._total or None)
        self._finished = 0
        self._files_done = 0
        self._moving = 0
        self._percent = -1

    def wrote(self, count: int) -> None:
        """A put wrote ``count`` more bytes (of a file still without a result)."""
        self._moving += count
        self._show(force=False)

    def finished(self, lfn: str) -> None:
        """The file uploaded as ``lfn`` has its result (stored or not)."""
        size = self._sizes.get(lfn, 0)
        self._files_done += 1
        self._finished += size
        # Its bytes were heard while written (more than once if a put was retried elsewhere).
        self._moving = max(0, self._moving - size)
        self._show(force=True)

    @property
    def completed(self) -> int:
        """Where the bar stands, in bytes."""
        return min(self._finished + self._moving, self._total)

    def _show(self, *, force: bool) -> None:
        completed = self.completed
        percent = completed * 100 // self._total if self._total else 0
        if not force and percent == self._percent:
            return
        self._percent = percent
        description = f"{self._files_done}/{len(self._sizes)} files"
        self._progress.update(self._task, completed=completed, description=description)
        self._progress.refresh()


@contextmanager
def upload_bar(files: Sequence[Path], quiet: bool) -> Iterator[Progress | None]:
    """
    The progress display for ``files``, shown for many files or a big one, on a terminal only (None
    otherwise: rich is then not even loaded).

    Args:
        files: the files to upload.
        quiet: no bar at all (``--json``).
    """
    console = None if quiet else stderr()
    if console is None or not console.is_terminal or (len(files) == 1 and file_size(files[0]) < BIG_FILE):
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as progress:
        yield progress
