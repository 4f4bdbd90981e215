"""
A local file as the source of a put, and the check that what was read is the file the upload checked.

An upload checks its file first (size, and the caller's checksum when one is given), and the put reads it
later, perhaps after a crash and a resume, or while the job that wrote it is still writing. Streaming
until the end of the file would then store, and register, whatever the file held at that moment: a
partial output under a name the catalog calls good. So the put refuses, before writing anything, a file
whose size is not the one checked, and, once every byte is read and before anything is published, a file
that changed while it was read (its size, inode or modification time moved, or the bytes read are not
as many as the file held) or whose checksum is not the caller's.

A rewrite of the same size within the filesystem's timestamp granularity (a few milliseconds) of the
first ``stat`` is not seen, unless the caller gave the file's checksum.
"""

from __future__ import annotations

import os

from failover.checksum import ChecksumType, MultiChecksum, same_checksum
from failover.errors import SourceChanged, SourceMissing
from failover.storage.errors import map_storage_errors
from failover.storage.transfer import Source

__all__ = ["local_file_source"]


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def local_file_source(
    local_path: str | os.PathLike[str],
    *,
    se: str,
    lfn: str,
    kind: ChecksumType,
    expected_size: int | None = None,
    expected_checksum: str | None = None,
) -> Source:
    """
    The bytes of ``local_path``, checked against what the upload checked.

    Args:
        local_path: the file (only ever read).
        se: the storage element it is put to, for errors.
        lfn: the logical file name, for errors.
        kind: the checksum type of ``expected_checksum`` (computed by the put).
        expected_size: the size the upload checked, if any.
        expected_checksum: the caller's checksum, verified against the file when the upload checked it.

    Raises:
        SourceMissing: there is no such file.
        SourceChanged: the file's size is not ``expected_size`` (the returned source's ``verify`` raises
            it too, for a file that changed while it was read or has another checksum than expected).
    """
    with map_storage_errors(se, lfn):
        try:
            before = os.stat(local_path)
        except FileNotFoundError:
            gone = f"{os.fspath(local_path)} does not exist (removed since the upload checked it?)"
            raise SourceMissing(gone, se=se, lfn=lfn) from None
    if expected_size is not None and before.st_size != expected_size:
        raise SourceChanged(
            f"{os.fspath(local_path)} holds {before.st_size:,} bytes, {expected_size:,} when the upload "
            f"checked it: it changed since (is it still being written?); nothing stored",
            se=se,
            lfn=lfn,
        )

    def verify(summer: MultiChecksum) -> None:
        try:
            after: os.stat_result | None = os.stat(local_path)
        except OSError:
            after = None
        if summer.size != before.st_size or after is None or _identity(after) != _identity(before):
            if after is None:
                what = "was removed or became unreadable"
            elif summer.size != before.st_size:
                what = f"held {before.st_size:,} bytes when the read began, {summer.size:,} were read"
            else:
                what = "was modified (its modification time or inode moved)"
            raise SourceChanged(
                f"{os.fspath(local_path)} changed while it was read: it {what} (is it still being written?); "
                f"nothing stored",
                se=se,
                lfn=lfn,
            )
        read = summer.hexdigest(kind)
        if expected_checksum is not None and not same_checksum(expected_checksum, read, kind):
            raise SourceChanged(
                f"{os.fspath(local_path)} has {kind.value} {read}, {expected_checksum} when the upload "
                f"checked it: it changed since; nothing stored",
                se=se,
                lfn=lfn,
            )

    return Source(before.st_size, lambda: open(local_path, "rb"), verify)
