"""
How a storage element writes, seals and publishes an object on one kind of fsspec filesystem.

:class:`FsspecBackend` uses only the portable :class:`fsspec.AbstractFileSystem` API and serves every
filesystem. :class:`LocalBackend` adds what durability needs on a local disk: ``fsync`` of the data and of
the directories, an atomic ``os.replace``, and the symbolic-link check that keeps objects inside the root.
On a local disk a big source is copied by the kernel (:mod:`failover.storage.kernel_copy`).
A backend for a store that reports checksums (XRootD, some S3 servers) overrides
:meth:`FsspecBackend.reported_checksums`. Backends raise foreign exceptions; the storage element maps them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import IO, Any, BinaryIO

from failover.checksum import ChecksumType, MultiChecksum
from failover.storage.kernel_copy import copy_in_kernel
from failover.storage.paths import inside_real_root

__all__ = ["FsspecBackend", "LocalBackend", "backend_for"]


class FsspecBackend:
    """
    The portable way to store objects on any fsspec filesystem.

    Args:
        fs: the filesystem holding the storage element's root.
    """

    #: Whether a group of puts can defer its flushes to one pass at the end (see :class:`LocalBackend`).
    stages_puts = False

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def make_dirs(self, directory: str) -> None:
        """
        Create ``directory`` and its missing parents (a no-op on stores without directories).

        Args:
            directory: the directory path.
        """
        self.fs.makedirs(directory, exist_ok=True)

    def info(self, path: str) -> Mapping[str, Any]:
        """
        Return what the store says of ``path``: at least ``size`` and ``type`` (``"file"`` for an object).

        Raises:
            FileNotFoundError: nothing is there.
        """
        info: Mapping[str, Any] = self.fs.info(path)
        return info

    def remove_file(self, path: str) -> None:
        """
        Remove the object at ``path``.

        Raises:
            FileNotFoundError: nothing is there.
        """
        self.fs.rm_file(path)

    def open_read(self, path: str) -> IO[bytes]:
        """
        Open an object for reading (the caller closes it).

        Args:
            path: the object's confined path.

        Returns:
            A readable binary stream.
        """
        stream: IO[bytes] = self.fs.open(path, "rb")
        return stream

    def open_temporary(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """
        Open a new temporary object for writing.

        Args:
            path: the temporary path, fresh from :func:`~failover.storage.paths.temporary_path`.

        Returns:
            A writable binary stream, to be used as a context manager.
        """
        stream: AbstractContextManager[IO[bytes]] = self.fs.open(path, "wb")
        return stream

    def copy_in(self, reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum) -> bool:
        """
        Copy a big source into a temporary object without passing its bytes through Python, if the store
        can, and check the copy; the source's bytes are fed to ``summer``. A generic store cannot.

        Args:
            reader: the source, from its start.
            sink: the open temporary object.
            summer: fed every byte of the source.

        Returns:
            True when copied; False, with nothing copied, when the caller must copy through Python.
        """
        return False

    def written(self, stream: IO[bytes], offset: int, length: int) -> None:
        """
        Hear that a chunk of a big temporary object was written (nothing to do on a generic store).

        Args:
            stream: the open temporary object.
            offset: where the chunk starts.
            length: the chunk's size.
        """

    def seal(self, stream: IO[bytes]) -> None:
        """
        Make the bytes written to ``stream`` durable before it is closed.

        Generic stores commit on close, so there is nothing more to do.

        Args:
            stream: the open temporary stream.
        """

    def publish(self, temporary: str, final: str) -> None:
        """
        Make the verified temporary object visible under its final name.

        ``fs.mv`` would treat ``*``, ``?`` and ``[`` in a name as a glob pattern, so the object is copied
        with ``cp_file`` (a server-side copy on object stores) and the temporary removed.

        Args:
            temporary: the verified temporary path.
            final: the object's final path.
        """
        self.fs.cp_file(temporary, final)
        self.fs.rm_file(temporary)

    def confined(self, root: str, path: str) -> bool:
        """
        Tell whether ``path`` really lies inside ``root``.

        Without symbolic links, a path built by :func:`~failover.storage.paths.object_path` always does.

        Args:
            root: the SE's root path.
            path: an object path below ``root``.

        Returns:
            True.
        """
        return True

    def url_of(self, path: str) -> str:
        """
        Return the full URL of ``path`` on this store (the physical file name of a replica).

        Args:
            path: an object's path.
        """
        return str(self.fs.unstrip_protocol(path))

    def reported_checksums(self, info: Mapping[str, Any]) -> dict[ChecksumType, str]:
        """
        Return the checksums the store itself reports in an ``fs.info()`` result.

        Args:
            info: the result of ``fs.info(path)``.

        Returns:
            Checksums by type, in canonical form (see :func:`~failover.checksum.normalize_checksum`);
            empty when the store reports none (the generic case).
        """
        return {}


#: posix_fadvise exists on Linux, not on every system.
_FADVISE = hasattr(os, "posix_fadvise")


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalBackend(FsspecBackend):
    """
    A local disk: data and directory entries are flushed to disk before a put reports success.

    Every call goes to ``os`` directly, so the backend needs no fsspec filesystem.

    Args:
        fs: the local filesystem, if one was made (unused).
    """

    def __init__(self, fs: Any = None) -> None:
        super().__init__(fs)

    def url_of(self, path: str) -> str:
        """
        Return ``file://`` and ``path``, as fsspec's local filesystem gives it (without importing fsspec).

        Args:
            path: an absolute path.
        """
        return "file://" + (path.rstrip("/") or "/")

    def make_dirs(self, directory: str) -> None:
        """
        Create ``directory`` and its missing parents, and flush each new directory entry to disk.

        Args:
            directory: the directory path.
        """
        missing: list[str] = []
        current = directory
        while not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        if not missing:
            return
        os.makedirs(directory, exist_ok=True)
        # A new directory survives a power cut only once its entry in the parent is on disk.
        for created in reversed(missing):
            _fsync_directory(os.path.dirname(created))

    # The local calls go to ``os`` directly: fsspec's LocalFileSystem would normalise the path again on
    # every call, and the paths here are already absolute and confined.
    def info(self, path: str) -> Mapping[str, Any]:
        """
        Return the ``size`` and ``type`` of ``path``, symbolic links followed (as fsspec reports them).

        Raises:
            FileNotFoundError: nothing is there.
        """
        mode = (status := os.stat(path)).st_mode
        kind = "file" if stat.S_ISREG(mode) else "directory" if stat.S_ISDIR(mode) else "other"
        return {"name": path, "size": status.st_size, "type": kind}

    def remove_file(self, path: str) -> None:
        """
        Remove the file at ``path``.

        Raises:
            FileNotFoundError: nothing is there.
        """
        os.unlink(path)

    def open_read(self, path: str) -> IO[bytes]:
        """
        Open a file for reading, unbuffered: the caller's reader buffers (fsspec's file object would
        add a layer of its own per read).

        Args:
            path: the file's confined path.

        Returns:
            A readable binary file.
        """
        return open(path, "rb", buffering=0)

    def open_temporary(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """
        Create the temporary file exclusively, so that nothing existing is ever truncated.

        Args:
            path: the temporary path.

        Returns:
            A writable binary file.
        """
        return self.create_temporary(path)

    def create_temporary(self, path: str) -> IO[bytes]:
        """
        Create the temporary file exclusively and return it open for writing, and for reading back what
        :meth:`copy_in` copied (the caller closes it).

        Args:
            path: the temporary path.

        Returns:
            A writable (and readable) binary file.
        """
        return open(path, "x+b")

    def copy_in(self, reader: BinaryIO, sink: IO[bytes], summer: MultiChecksum) -> bool:
        """
        Copy a big local source with :func:`os.copy_file_range` (see :mod:`failover.storage.kernel_copy`).

        Args:
            reader: the source, from its start.
            sink: the open temporary file.
            summer: fed every byte of the source, read again to compare the copy with it.

        Returns:
            True when copied; False, with nothing copied, when the kernel cannot copy between these files.

        Raises:
            CopyDiffers: the copy read back differs from the source.
        """
        return copy_in_kernel(reader, sink, summer, lambda offset, length: self.written(sink, offset, length))

    def written(self, stream: IO[bytes], offset: int, length: int) -> None:
        """
        Start writing a big file's chunk to disk now, without waiting: the final ``fsync`` then waits for
        the last chunks only, and the written pages leave the page cache once on disk (a 1 GiB upload
        does not push 1 GiB of other data out of it).

        Args:
            stream: the open temporary file.
            offset: where the chunk starts.
            length: the chunk's size.
        """
        if _FADVISE:
            # DONTNEED starts the writeback of the range's dirty pages and drops the clean ones.
            os.posix_fadvise(stream.fileno(), offset, length, os.POSIX_FADV_DONTNEED)

    def seal(self, stream: IO[bytes]) -> None:
        """
        Flush ``stream`` and ``fsync`` it, so the verified bytes are on disk before they become visible.

        Args:
            stream: the open temporary file.
        """
        stream.flush()
        os.fsync(stream.fileno())

    def publish(self, temporary: str, final: str) -> None:
        """
        Rename the temporary file over the final name atomically, then flush the directory entry.

        Args:
            temporary: the verified temporary path.
            final: the object's final path.
        """
        self.rename(temporary, final)
        self.flush_directory(os.path.dirname(final))

    # What a staged group of puts does in separate passes (:mod:`failover.storage.staged`): write every
    # file, then flush every file, rename each, and flush each directory once. On a journaling
    # filesystem, creating a file right after a directory fsync waits for the journal; in passes, the
    # creates run back to back, and a directory holding many new objects is flushed once, not per object.
    stages_puts = True

    def flush_file(self, stream: IO[bytes]) -> None:
        """
        ``fsync`` a written temporary file (its data must be on disk before the rename).

        Args:
            stream: the open temporary file, already flushed to the kernel.
        """
        os.fsync(stream.fileno())

    def rename(self, temporary: str, final: str) -> None:
        """
        Rename the temporary file over the final name atomically (the entry is durable only once its
        directory is flushed).

        Args:
            temporary: the verified, flushed temporary path.
            final: the object's final path.
        """
        os.replace(temporary, final)

    def flush_directory(self, directory: str) -> None:
        """
        ``fsync`` a directory, so the renames into it survive a power cut.

        Args:
            directory: the directory path.
        """
        _fsync_directory(directory)

    def confined(self, root: str, path: str) -> bool:
        """
        Tell whether ``path`` stays inside ``root`` once symbolic links are resolved.

        Args:
            root: the SE's root directory.
            path: an object path below ``root``.

        Returns:
            False when a link (to a directory or to a file) leads out of the root.
        """
        return inside_real_root(root, path)


def backend_for(fs: Any) -> FsspecBackend:
    """
    Choose the backend for a filesystem: :class:`LocalBackend` for local disks, else :class:`FsspecBackend`.

    Args:
        fs: an fsspec filesystem.

    Returns:
        A backend bound to ``fs``.
    """
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return LocalBackend(fs)
    return FsspecBackend(fs)
