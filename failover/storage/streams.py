"""
Read streams over storage objects whose failures arrive as failover errors.

A read can fail long after the object was opened (a dropped connection halfway through a file). Wrapping
each read, rather than the caller's whole ``with`` block, maps the storage's exceptions and leaves the
caller's own exceptions untouched.
"""

from __future__ import annotations

import io
from typing import IO, TYPE_CHECKING

from failover.storage.errors import map_storage_errors

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["MappedReader", "mapped_reader"]


class MappedReader(io.RawIOBase):
    """
    A raw binary reader over a storage stream that maps every failure with :func:`map_storage_errors`.

    Args:
        stream: the stream the storage opened for reading.
        se: the storage element's name, recorded on errors.
        lfn: the object's LFN, recorded on errors.
    """

    def __init__(self, stream: IO[bytes], se: str, lfn: str) -> None:
        super().__init__()
        self._stream = stream
        self._se = se
        self._lfn = lfn

    def readable(self) -> bool:
        """
        Tell that this stream can be read.

        Returns:
            True.
        """
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """
        Read up to ``len(buffer)`` bytes into ``buffer``.

        Args:
            buffer: where to put the bytes.

        Returns:
            The number of bytes read; 0 at the end of the object.

        Raises:
            StorageUnavailable: the storage failed during the read (or another mapped error).
        """
        view = memoryview(buffer).cast("B")
        with map_storage_errors(self._se, self._lfn):
            data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """
        Close the underlying stream.

        Raises:
            StorageUnavailable: the storage failed while closing (or another mapped error).
        """
        if not self.closed:
            try:
                with map_storage_errors(self._se, self._lfn):
                    self._stream.close()
            finally:
                super().close()


def mapped_reader(stream: IO[bytes], se: str, lfn: str) -> io.BufferedReader:
    """
    Wrap a storage stream in a buffered reader whose failures are failover errors.

    Args:
        stream: the stream the storage opened for reading.
        se: the storage element's name.
        lfn: the object's LFN.

    Returns:
        A buffered binary reader; large reads (such as :data:`~failover.checksum.CHUNK_SIZE`) bypass its
        small buffer, so memory stays flat.
    """
    return io.BufferedReader(MappedReader(stream, se, lfn))
