"""
The verified write at the heart of every put and copy (SPEC.md §2).

The bytes are streamed once into a temporary name in the final directory while their checksums are
computed (on a local disk, a big file is copied by the kernel, then read back and compared with the source,
:mod:`failover.storage.kernel_copy`); the size the storage then reports (and its checksum, where
it reports one) must match what was sent; only then does the backend publish the object under its final
name. Whatever fails, the temporary is removed (best effort), so the final name never shows a partial
object. These functions raise foreign exceptions; the storage element maps them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import IO, BinaryIO

from failover.checksum import (
    CHUNK_SIZE,
    ChecksumType,
    MultiChecksum,
    parse_checksum_type,
    read_size,
    same_checksum,
)
from failover.errors import InvalidInput, TransferCorrupted
from failover.storage.backends import FsspecBackend
from failover.storage.errors import CopyDiffers
from failover.storage.paths import temporary_path
from failover.storage.progress import bytes_copied
from failover.storage.results import ObjectInfo
from fsm.crashpoints import crash_point

__all__ = [
    "Source",
    "checksum_kinds",
    "copy_source",
    "digest",
    "same_content",
    "verify_written",
    "write_verified",
]

#: Sources of at least this size are checksummed by a second thread while they are written.
PIPELINE_MIN_SIZE = 2 * CHUNK_SIZE
#: The read size when checksumming aside: two chunks are alive at once.
PIPELINE_CHUNK_SIZE = CHUNK_SIZE // 2


@dataclass(frozen=True)
class Source:
    """
    The bytes to store.

    Args:
        size: their size, known before streaming (to compare with an existing object cheaply).
        open: opens a fresh stream over them, from the start.
        verify: called with the checksums and size of what was read, once every byte is read and
            before anything is published; raises when that is not what the source stands for (a file
            that changed while it was read).
    """

    size: int
    open: Callable[[], AbstractContextManager[BinaryIO]]
    verify: Callable[[MultiChecksum], None] | None = None

    def check_read(self, summer: MultiChecksum) -> None:
        """Raise unless ``summer`` (all that was read) is what the source stands for (see ``verify``)."""
        if self.verify is not None:
            self.verify(summer)


def checksum_kinds(types: Iterable[ChecksumType]) -> tuple[ChecksumType, ...]:
    """
    Parse and de-duplicate checksum types, keeping their order.

    Args:
        types: checksum types (DIRAC aliases such as ``"AD"`` are accepted).

    Returns:
        The distinct types, first appearance first.

    Raises:
        InvalidInput: a type is unknown, or none is given.
    """
    kinds = tuple(dict.fromkeys(parse_checksum_type(kind) for kind in types))
    if not kinds:
        raise InvalidInput("At least one checksum type is needed to verify a transfer")
    return kinds


def digest(stream: BinaryIO, kinds: Iterable[ChecksumType], size: int | None = None) -> MultiChecksum:
    """
    Read ``stream`` to its end in chunks and return its checksums.

    Args:
        stream: a binary stream.
        kinds: the checksum types to compute.
        size: how many bytes the stream should hold, if known (small streams are read in small chunks).

    Returns:
        The checksums and size of what was read.
    """
    summer = MultiChecksum(kinds)
    chunk_size = read_size(size)
    while chunk := stream.read(chunk_size):
        summer.update(chunk)
    return summer


def same_content(
    existing: ObjectInfo,
    source: Source,
    kinds: tuple[ChecksumType, ...],
    read_back: Callable[[ChecksumType], str],
) -> MultiChecksum | None:
    """
    Tell whether an existing object already holds the bytes of ``source``.

    The sizes are compared first, so different content is usually told apart without reading anything.

    Args:
        existing: what the storage reports about the object.
        source: the bytes to store.
        kinds: the checksums to compute over ``source``; the first the storage reports is compared, else
            the first one.
        read_back: returns the object's checksum of a given type (reading it back if need be).

    Returns:
        The checksums of ``source`` when the object holds the same bytes, else None.

    Raises:
        FailoverError: what ``source.verify`` raises about what was read.
    """
    if existing.size != source.size:
        return None
    with source.open() as stream:
        summer = digest(stream, kinds, source.size)
    source.check_read(summer)
    # Prefer a checksum the storage reports, which costs no read-back.
    kind = next((kind for kind in kinds if kind in existing.checksums), kinds[0])
    theirs = existing.checksums.get(kind) or read_back(kind)
    if summer.size != existing.size or not same_checksum(theirs, summer.hexdigest(kind), kind):
        return None
    return summer


def write_verified(
    backend: FsspecBackend, source: Source, final: str, kinds: tuple[ChecksumType, ...], *, se: str, lfn: str
) -> MultiChecksum:
    """
    Stream ``source`` into a temporary name, verify it, then publish it under ``final``.

    Args:
        backend: the storage element's backend.
        source: the bytes to store.
        final: the object's final path.
        kinds: the checksums to compute on the way.
        se: the storage element's name, for errors.
        lfn: the logical file name, for errors.

    Returns:
        The checksums and size of what was sent (and is now stored).

    Raises:
        TransferCorrupted: the storage reports another size or checksum than what was sent.
        FailoverError: what ``source.verify`` raises about what was read (nothing is published).
    """
    temporary = temporary_path(final)
    backend.make_dirs(posixpath.dirname(final))
    try:
        summer = _write(backend, source, temporary, kinds)
        verify_written(backend, temporary, summer, kinds, se=se, lfn=lfn)
        crash_point("before-publish")
        backend.publish(temporary, final)
        crash_point("after-publish")
    except BaseException:
        # Best effort: the original error matters more, and list_temporary() finds any leftover.
        with suppress(Exception):
            backend.remove_file(temporary)
        raise
    return summer


def _write(
    backend: FsspecBackend, source: Source, temporary: str, kinds: tuple[ChecksumType, ...]
) -> MultiChecksum:
    summer = MultiChecksum(kinds)
    with source.open() as reader, backend.open_temporary(temporary) as sink:
        copy_source(backend, source, reader, sink, summer)
        backend.seal(sink)
    return summer


def copy_source(
    backend: FsspecBackend, source: Source, reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum
) -> None:
    """
    Copy ``source`` (open as ``reader``) to ``sink`` with :func:`_copy_summing`, then check that what was
    read is what the source stands for (:meth:`Source.check_read`).

    Raises:
        FailoverError: what ``source.verify`` raises: the source changed while it was read. Checked
            first also when the copy, read back, differs from the source, since a change makes it differ.
        CopyDiffers: the copy read back differs from a source that did not change.
    """
    try:
        _copy_summing(backend, source.size, reader, sink, summer)
    except CopyDiffers:
        source.check_read(summer)
        raise
    source.check_read(summer)


def _copy_summing(
    backend: FsspecBackend, size: int, reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum
) -> None:
    """
    Copy ``reader`` (expected to hold ``size`` bytes) to ``sink``, feeding every byte to ``summer``.

    A big source is copied by the backend itself when it can (on a local disk, by the kernel, the copy
    compared with the source: :class:`~failover.storage.errors.CopyDiffers` when it differs), else
    checksummed by a second thread while it is written (:func:`_copy_summing_aside`). Each chunk written
    is told to :mod:`failover.storage.progress`.
    """
    if size >= PIPELINE_MIN_SIZE:
        if not backend.copy_in(reader, sink, summer):
            _copy_summing_aside(backend, reader, sink, summer)
        return
    chunk_size = read_size(size)
    while chunk := reader.read(chunk_size):
        summer.update(chunk)
        sink.write(chunk)
        bytes_copied(len(chunk))


def _copy_summing_aside(
    backend: FsspecBackend, reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum
) -> None:
    """
    Copy ``reader`` to ``sink`` while a second thread computes the checksums of each chunk written.

    zlib-ng and hashlib release the GIL on large buffers, so on two cores the checksums cost no time next to
    the copy. The chunk being checksummed and the next one read are alive at once, so the chunks are half
    the usual size: the memory stays that of the one-thread copy. The updates stay in order (each waits
    for the one before). The thread lives for this call only.
    """
    offset = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        summing: Future[None] | None = None
        while chunk := reader.read(PIPELINE_CHUNK_SIZE):
            if summing is not None:
                summing.result()
            summing = pool.submit(summer.update, chunk)
            sink.write(chunk)
            backend.written(sink, offset, len(chunk))
            bytes_copied(len(chunk))
            if offset == 0:
                crash_point("mid-write")
            offset += len(chunk)
        if summing is not None:
            summing.result()


def verify_written(
    backend: FsspecBackend,
    temporary: str,
    summer: MultiChecksum,
    kinds: tuple[ChecksumType, ...],
    *,
    se: str,
    lfn: str,
) -> None:
    """
    Check that the written temporary holds what was sent: its size, and any checksum the storage reports.

    Raises:
        TransferCorrupted: the storage reports another size or checksum.
    """
    info = backend.info(temporary)
    if int(info["size"]) != summer.size:
        message = f"{se}: {lfn}: the storage holds {info['size']} bytes after {summer.size} were sent"
        raise TransferCorrupted(message, se=se, lfn=lfn)
    for kind, theirs in backend.reported_checksums(info).items():
        sent = summer.hexdigest(kind) if kind in kinds else None
        if sent is not None and not same_checksum(theirs, sent, kind):
            message = f"{se}: {lfn}: the storage reports {kind} {theirs} after {sent} was sent"
            raise TransferCorrupted(message, se=se, lfn=lfn)
