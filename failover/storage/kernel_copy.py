"""
A big file copied to a local disk by the kernel, then read back and compared with the source.

Through Python, every byte of a put crosses user memory twice (read from the source, written to the
temporary). :func:`os.copy_file_range` copies between two files inside the kernel instead (a server-side
copy on NFS, shared extents on filesystems that clone). A copy made out of sight is checked: a second
thread reads each range back from the temporary and from the source while the kernel copies the next one,
compares them (copies made by the filesystem have gone wrong before: in 2023, ``cp`` on OpenZFS 2.2 could
leave zeros where the source held data), and computes the checksums over the source's bytes, as a read
copy does. The file is still read in one pass (SPEC.md §2): each range again from the page cache, right
after the kernel copied it. A copy that differs is reported once the whole file is read
(:class:`~failover.storage.errors.CopyDiffers`, a ``TransferCorrupted``), after the caller has checked
whether the source changed meanwhile (its size, inode and modification time,
:mod:`failover.storage.local_source`), which makes it differ too. A copy from one storage element to
another is still read through Python: a read error there must name the source, and a failed kernel copy
cannot tell which side failed.

On the 2-CPU virtual machine of ``bench/README.md``, a 1 GiB put took 0.37 to 0.55 s this way (median
0.44 s over 16 rounds), where ``cp`` and an ``fsync`` take 0.60 s; through Python 0.41 s when the page
cache it writes into was just freed, and 1.2 to 2.7 s when the host had taken those pages back (the VM's
balloon reports free pages). With zlib-ng's adler32 the check costs no time on two CPUs: on warm memory,
as on a machine of its own, the two copies are alike (0.95x to 1.01x).
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, BinaryIO

from failover.checksum import CHUNK_SIZE, MultiChecksum
from failover.storage.errors import CopyDiffers
from failover.storage.progress import bytes_copied
from fsm.crashpoints import crash_point

__all__ = ["KERNEL_STEP", "copy_in_kernel"]

#: Bytes asked of each ``copy_file_range`` call (the check reads them back in pieces of half a chunk, from
#: the copy and from the source: the memory stays that of a read copy).
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
    Copy the rest of ``reader``'s file to ``sink``'s file in the kernel, compare the copy with the source,
    and feed ``summer`` the source's bytes.

    The copy goes to the end of the source, as a read copy does (a source that grew or shrank is caught
    by the size the caller compares). Both streams are left positioned after the bytes copied.

    Args:
        reader: the source, a file with a descriptor.
        sink: the temporary, a file opened for reading and writing.
        summer: fed every byte of the source, in order.
        written: told of each range once it is read back (a local disk starts its writeback).

    Returns:
        True once the copy is done; False, with nothing copied, when the kernel cannot copy between these
        two streams (copy them through Python instead).

    Raises:
        CopyDiffers: the copy read back is not the source (the caller tells whether the source changed).
        OSError: a copy or a read-back failed once bytes were copied.
    """
    descriptors = _descriptors(reader, sink)
    if descriptors is None:
        return False
    source, target = descriptors
    sink.flush()
    source_start, sink_start = reader.tell(), sink.tell()
    # The copy's piece and the source's.
    buffers = (bytearray(CHUNK_SIZE // 2), bytearray(CHUNK_SIZE // 2))
    copied = 0
    differs: str | None = None  # where the first range that differs does
    with ThreadPoolExecutor(max_workers=1) as pool:
        checking: Future[str | None] | None = None
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
            if checking is not None:
                differs = differs or checking.result()
            checking = pool.submit(_check_written, (source, target), at, count, buffers, summer, written)
            copied += count
            bytes_copied(count)
            if copied == count:
                crash_point("mid-write")
        if checking is not None:
            differs = differs or checking.result()
    if differs is not None:
        # Raised once the whole file is read, so that the caller can first tell whether the source
        # changed meanwhile (which makes the copy differ too) from its checksums and size.
        raise CopyDiffers(f"the copy differs from the source in {differs}")
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


def _check_written(
    descriptors: tuple[int, int],
    offsets: tuple[int, int],
    length: int,
    buffers: tuple[bytearray, bytearray],
    summer: MultiChecksum,
    written: Written,
) -> str | None:
    """
    Read ``length`` bytes back from the copy and from the source, in pieces, feeding the source's to
    ``summer``; return how the first piece that differs differs (None: the copy is the source).
    """
    (source, target), (source_offset, target_offset) = descriptors, offsets
    ours, theirs = buffers
    differs = None
    done = 0
    while done < length:
        size = min(len(ours), length - done)
        got = _read_into(target, ours, size, target_offset + done)
        read = _read_into(source, theirs, size, source_offset + done)
        # bytearrays compare with memcmp; memoryviews item by item, a hundred times slower.
        same = ours == theirs if size == len(ours) else ours[:size] == theirs[:size]
        if differs is None and (got != read or not same):
            where = f"the {size:,} bytes from offset {target_offset + done:,}"
            differs = f"{where} (read back {got:,}, source {read:,})"
        summer.update(memoryview(theirs)[:read])
        done += size
    written(target_offset, done)
    return differs


def _read_into(descriptor: int, buffer: bytearray, size: int, offset: int) -> int:
    """Read up to ``size`` bytes at ``offset`` into ``buffer``; fewer only at the end of the file."""
    view = memoryview(buffer)[:size]
    done = 0
    while done < size:
        got = os.preadv(descriptor, [view[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done
