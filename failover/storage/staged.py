"""
A group of puts to one local storage element, written in passes so their flushes are grouped.

:func:`~failover.storage.transfer.write_verified` makes one object durable at a time: write, ``fsync``,
rename, ``fsync`` of the directory. For many small files on a journaling filesystem that order is slow:
each directory ``fsync`` commits the journal, and the next file's create waits for it. A
:class:`StagedGroup` gives every object the same guarantees in passes instead:

1. :meth:`StagedGroup.write`: stream each source into a fresh temporary name, computing its checksums;
2. :meth:`StagedGroup.publish`: ``fsync`` the temporary files (several at once), then verify each one's
   size and rename it to its final name; then ``fsync`` each directory that received an object, once.

An object's bytes are on disk before its name appears, and the call returns only once every directory
entry is on disk, so a caller records nothing about an object that a power cut could still take away. A
crash in between leaves temporary names (found by ``list_temporary``) or final names holding complete,
verified bytes (found identical by the next put). One object's failure does not stop the others.
"""

from __future__ import annotations

import os
import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO

from failover.checksum import ChecksumType, MultiChecksum
from failover.errors import FailoverError
from failover.storage.backends import LocalBackend
from failover.storage.errors import map_storage_errors
from failover.storage.paths import temporary_path
from failover.storage.transfer import Source, copy_source, verify_written
from fsm.crashpoints import crash_point

__all__ = ["FLUSH_THREADS", "PutItem", "StagedGroup", "StagedWrite"]

#: How many of a group's files are ``fsync``ed at once.
FLUSH_THREADS = 8

_flush_pool: ThreadPoolExecutor | None = None
_flush_pool_lock = threading.Lock()


def _flush_threads() -> ThreadPoolExecutor:
    """
    The threads that ``fsync`` groups' files: started on first use and kept, since a group of small
    files costs less to flush than to start threads for.
    """
    global _flush_pool
    with _flush_pool_lock:
        if _flush_pool is None:
            _flush_pool = ThreadPoolExecutor(max_workers=FLUSH_THREADS, thread_name_prefix="failover-flush")
        return _flush_pool


def _forget_flush_threads() -> None:
    # A forked child has none of its parent's threads: it starts its own pool on first use.
    global _flush_pool, _flush_pool_lock
    _flush_pool = None
    _flush_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_flush_threads)


@dataclass(frozen=True)
class PutItem:
    """
    One local file to put, with the options of :meth:`~failover.storage.StorageElement.put`.

    Args:
        local_path: the file to upload (only ever read).
        lfn: the logical file name.
        checksum_types: the checksums to compute on the way.
        overwrite: replace an existing object with different content instead of refusing.
        expected_size: the size the caller checked the file had.
        expected_checksum: the file's checksum of the first checksum type, as the caller checked it.
    """

    local_path: str | os.PathLike[str]
    lfn: str
    checksum_types: tuple[ChecksumType, ...] = (ChecksumType.ADLER32,)
    overwrite: bool = False
    expected_size: int | None = None
    expected_checksum: str | None = None


@dataclass
class StagedWrite:
    """An object written under its temporary name, not yet flushed nor published."""

    lfn: str
    final: str
    temporary: str
    kinds: tuple[ChecksumType, ...]
    summer: MultiChecksum
    stream: IO[bytes] | None = field(repr=False)


class StagedGroup(AbstractContextManager["StagedGroup"]):
    """
    Puts to one local storage element, written first and made durable together.

    Use as a context manager: leaving it removes every temporary that was not published (best effort),
    whatever happened.

    Args:
        backend: the storage element's local backend.
        se: the storage element's name, for errors.
    """

    def __init__(self, backend: LocalBackend, se: str) -> None:
        self.backend = backend
        self.se = se
        self.pending: dict[int, StagedWrite] = {}

    def write(self, key: int, source: Source, final: str, kinds: tuple[ChecksumType, ...], lfn: str) -> None:
        """
        Stream ``source`` into a fresh temporary name next to ``final`` (flushed to the kernel, not to disk).

        Args:
            key: the caller's key for this object, used again by :meth:`publish`.
            source: the bytes to store.
            final: the object's confined final path.
            kinds: the checksums to compute on the way.
            lfn: the logical file name, for errors.

        Raises:
            FailoverError: the write failed (nothing of this object is left behind).
        """
        temporary = temporary_path(final)
        try:
            with map_storage_errors(self.se, lfn):
                self.backend.make_dirs(posixpath.dirname(final))
                stream = self.backend.create_temporary(temporary)
                staged = StagedWrite(lfn, final, temporary, kinds, MultiChecksum(kinds), stream)
                self.pending[key] = staged
                with source.open() as reader:
                    copy_source(self.backend, source, reader, stream, staged.summer)
                stream.flush()
        except BaseException:
            self.discard(key)
            raise

    def publish(self) -> dict[int, StagedWrite | FailoverError]:
        """
        Flush, verify and rename every written object, then flush each directory once.

        Returns:
            By key: the published write, or the error that stopped that object (its temporary removed).
        """
        published: dict[int, StagedWrite | FailoverError] = {}
        by_directory: dict[str, list[int]] = {}
        flush_errors = self._flush_files()
        for key in list(self.pending):
            staged = self.pending[key]
            try:
                with map_storage_errors(self.se, staged.lfn):
                    if key in flush_errors:
                        raise flush_errors[key]
                    self._verify_and_rename(staged)
            except FailoverError as err:
                self.discard(key)
                published[key] = err
                continue
            del self.pending[key]
            published[key] = staged
            by_directory.setdefault(posixpath.dirname(staged.final), []).append(key)
        for directory, keys in by_directory.items():
            try:
                with map_storage_errors(self.se, self._lfn(published[keys[0]])):
                    self.backend.flush_directory(directory)
            except FailoverError as err:
                for key in keys:
                    published[key] = err
        return published

    @staticmethod
    def _lfn(outcome: StagedWrite | FailoverError) -> str | None:
        return outcome.lfn if isinstance(outcome, StagedWrite) else None

    def _flush_files(self) -> dict[int, Exception]:
        """
        ``fsync`` every written file, several at once (the disk can merge concurrent flushes into fewer
        journal commits; threads blocked in ``fsync`` use no CPU); return the failures by key.

        Each thread takes an equal share of the files: one task per thread, not per file, since handing
        a 4 KiB file's ``fsync`` to a thread cost as much as the ``fsync``.
        """
        streams = [(key, s.stream) for key, s in self.pending.items() if s.stream is not None]
        shares = [streams[start::FLUSH_THREADS] for start in range(min(FLUSH_THREADS, len(streams)))]
        if len(shares) <= 1:
            failures = [self._flush_share(share) for share in shares]
        else:
            failures = list(_flush_threads().map(self._flush_share, shares))
        return {key: exc for found in failures for key, exc in found.items()}

    def _flush_share(self, share: list[tuple[int, IO[bytes]]]) -> dict[int, Exception]:
        failures: dict[int, Exception] = {}
        for key, stream in share:
            try:
                self.backend.flush_file(stream)
            except Exception as exc:
                failures[key] = exc
        return failures

    def _verify_and_rename(self, staged: StagedWrite) -> None:
        stream, staged.stream = staged.stream, None
        if stream is not None:
            stream.close()
        verify_written(
            self.backend, staged.temporary, staged.summer, staged.kinds, se=self.se, lfn=staged.lfn
        )
        crash_point("before-publish")
        self.backend.rename(staged.temporary, staged.final)
        crash_point("after-publish")

    def discard(self, key: int) -> None:
        """Drop one object that is not published: close and remove its temporary (best effort)."""
        staged = self.pending.pop(key, None)
        if staged is None:
            return
        if staged.stream is not None:
            with suppress(Exception):
                staged.stream.close()
            staged.stream = None
        with suppress(Exception):
            self.backend.remove_file(staged.temporary)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for key in list(self.pending):
            self.discard(key)
