"""
A big file copied to a local disk by the kernel, its checksums computed over what was written.

Through Python, every byte of a put crosses user memory twice (read from the source, written to the
temporary). :func:`os.copy_file_range` copies between two files inside the kernel instead (a server-side
copy on NFS, shared extents on filesystems that clone), and the checksums are then computed by reading
the written range back from the page cache, in a second thread while the kernel copies the next range.
The checksums are thus those of the bytes stored, which is what the catalog is told. That the source did
not change meanwhile is checked as for a read copy (:mod:`failover.storage.local_source`: its size, inode
and modification time, and the caller's checksum when one was given). A copy from one storage element to
another is still read through Python: a read error there must name the source, and a failed kernel copy
cannot tell which side failed.

On the 2-CPU virtual machine of ``bench/README.md``, a 1 GiB put took 0.5 to 1.0 s this way against 0.9
to 2.7 s through Python, whose writes into freshly allocated page cache are slow there.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, BinaryIO

from failover.checksum import CHUNK_SIZE, MultiChecksum
from failover.storage.progress import bytes_copied

__all__ = ["KERNEL_STEP", "copy_in_kernel"]

#: Bytes asked of each ``copy_file_range`` call (the read-back goes in ``CHUNK_SIZE`` pieces: the memory
#: used stays one chunk).
KERNEL_STEP = 4 * CHUNK_SIZE

# What copy_file_range answers when it cannot copy between these two files at all: another filesystem
# (kernels before 5.3, or 5.19 and later between filesystems of different types), a file that is not
# regular, a filesystem or sandbox without the call. Read and written through Python, they copy.
_CANNOT_COPY = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EPERM}
)

#: Told of each range once it is read back: offset in the sink, length.
Written = Callable[[int, int], None]


def copy_in_kernel(reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum, written: Written) -> bool:
    """
    Copy the rest of ``reader``'s file to ``sink``'s file in the kernel, feeding ``summer`` what was written.

    The copy goes to the end of the source, as a read copy does (a source that grew or shrank is caught
    by the size the caller compares). Both streams are left positioned after the bytes copied.

    Args:
        reader: the source, a file with a descriptor.
        sink: the temporary, a file opened for reading and writing.
        summer: fed every byte written, read back in order.
        written: told of each range once it is read back (a local disk starts its writeback).

    Returns:
        True once the copy is done; False, with nothing copied, when the kernel cannot copy between these
        two streams (copy them through Python instead).

    Raises:
        OSError: a copy or a read-back failed once bytes were copied.
    """
    descriptors = _descriptors(reader, sink)
    if descriptors is None:
        return False
    source, target = descriptors
    sink.flush()
    source_start, sink_start = reader.tell(), sink.tell()
    buffer = bytearray(CHUNK_SIZE)
    copied = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        summing: Future[None] | None = None
        while True:
            try:
                at = (source_start + copied, sink_start + copied)
                count = os.copy_file_range(source, target, KERNEL_STEP, *at)
            except OSError as error:
                if copied == 0 and error.errno in _CANNOT_COPY:
                    return False
                raise
            if count == 0:
                # Nothing at the very start: a file whose content the kernel will not copy (procfs and the
                # like report a size they do not hold), or one emptied since; a read copy tells which.
                if copied == 0:
                    return False
                break
            if summing is not None:
                summing.result()
            summing = pool.submit(_sum_written, target, sink_start + copied, count, buffer, summer, written)
            copied += count
            bytes_copied(count)
        if summing is not None:
            summing.result()
    reader.seek(source_start + copied)
    sink.seek(sink_start + copied)
    return True


def _descriptors(reader: BinaryIO, sink: IO[bytes]) -> tuple[int, int] | None:
    if not hasattr(os, "copy_file_range"):
        return None
    try:
        if not sink.readable():
            return None
        return reader.fileno(), sink.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _sum_written(
    descriptor: int, offset: int, length: int, buffer: bytearray, summer: MultiChecksum, written: Written
) -> None:
    """Read ``length`` bytes back from ``offset`` in pieces into ``buffer``, feeding them to ``summer``."""
    view = memoryview(buffer)
    done = 0
    while done < length:
        piece = view[: min(len(buffer), length - done)]
        got = os.preadv(descriptor, [piece], offset + done)
        if got == 0:
            # Shorter than copied: the size check after the copy reports it.
            break
        summer.update(piece[:got])
        done += got
    written(offset, done)
