"""
A small synchronous fsspec filesystem over the XRootD client (``XRootD.client``), for XRootD storage elements.

fsspec-xrootd 0.5.5 is not sound enough to keep replicas on: its ``info`` answers from a listing cache that
goes stale (and then raises a bare ``OSError``), a missing object is not a ``FileNotFoundError``, failures
lose their XRootD status, and it has no ``put_file``. Here every failed status becomes the ``OSError``
subclass :func:`~failover.storage.errors.xrootd_os_error` says, nothing is cached, a rename is a literal
``mv``, and the server's adler32 is one query away (:meth:`XRootDFileSystem.adler32`).

The client library is imported on first use (it is optional) and set to fail fast.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import threading
from contextlib import suppress
from datetime import UTC, datetime
from functools import cache, partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fsspec.spec import AbstractFileSystem

from failover.checksum import CHUNK_SIZE, ChecksumType, normalize_checksum
from failover.storage.errors import xrootd_os_error

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["DEFAULT_TIMEOUT", "XRootDFileSystem", "XRootDWriter"]

#: Seconds an XRootD request may take before it fails (a chunk of a read or write, a stat, a rename).
DEFAULT_TIMEOUT = 60
# Chunks written ahead of the server's acknowledgements (CHUNK_SIZE each).
_WRITES_IN_FLIGHT = 4
# Seconds past a write's own timeout that its answer may still take: the client reports the timeout
# itself; this only bounds the wait for an answer that never comes (seen once, a server killed mid-put).
_ANSWER_GRACE = 30.0
# Fail fast on a server that is down, so that failover moves on (the client's defaults retry a connection
# 5 times within 120 s windows), and try it again one second after a failure (by default the client
# refuses to reconnect for 30 minutes, which would keep a long-running executor off a server that came
# back). XRD_* environment variables still win.
_CLIENT_DEFAULTS = {
    "ConnectionRetry": 1,
    "ConnectionWindow": 10,
    "StreamErrorWindow": 1,
    "TimeoutResolution": 1,
}


@cache
def _client() -> Any:
    """The XRootD client module, imported on first use and configured to fail fast."""
    client = importlib.import_module("XRootD.client")
    for key, value in _CLIENT_DEFAULTS.items():
        if f"XRD_{key.upper()}" not in os.environ:
            client.EnvPutInt(key, value)
    return client


def _flags() -> Any:
    return importlib.import_module("XRootD.client.flags")


def _checked(result: tuple[Any, Any], path: str) -> Any:
    """Return a call's response, or raise the ``OSError`` its failed status stands for."""
    status, response = result
    if not status.ok:
        raise xrootd_os_error(int(status.errno or 0), int(status.code or 0), str(status.message), path)
    return response


class _Reader(io.RawIOBase):
    """An open XRootD file read sequentially."""

    def __init__(self, handle: Any, path: str, timeout: int) -> None:
        super().__init__()
        self._handle, self._path, self._timeout, self._offset = handle, path, timeout, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = _checked(self._handle.read(self._offset, len(view), timeout=self._timeout), self._path)
        view[: len(data)] = data
        self._offset += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                _checked(self._handle.close(timeout=self._timeout), self._path)
            finally:
                super().close()


class XRootDWriter(io.RawIOBase):
    """
    An XRootD file written sequentially, a few chunks in flight at once so the wire never idles.

    ``sync`` waits for every write and makes them durable; ``discard`` drops the handle. A failed write is
    raised by the next call.
    """

    def __init__(self, handle: Any, path: str, timeout: int) -> None:
        super().__init__()
        self._handle, self._path, self._timeout, self._offset = handle, path, timeout, 0
        self._slots = threading.BoundedSemaphore(_WRITES_IN_FLIGHT)
        self._in_flight: dict[int, bytes] = {}
        self._failures: list[Any] = []

    def writable(self) -> bool:
        """Tell that this stream can be written."""
        return True

    def _written(self, offset: int, status: Any) -> None:
        self._in_flight.pop(offset, None)
        if not status.ok:
            self._failures.append(status)
        self._slots.release()

    def _raise_failure(self) -> None:
        if self._failures:
            _checked((self._failures[0], None), self._path)

    def write(self, data: Any) -> int:
        """
        Send ``data`` after what was written so far, without waiting for the server's answer.

        Returns:
            The number of bytes taken (all of them).

        Raises:
            OSError: this write, or an earlier one, failed (built by ``xrootd_os_error``).
        """
        chunk, offset = bytes(data), self._offset
        self._take_slot()
        if self._failures:
            self._slots.release()  # so that discard() can still drain
            self._raise_failure()
        # The client sends from the chunk's memory after write() returns: keep it alive until it is done.
        self._in_flight[offset] = chunk
        done = partial(self._written, offset)
        status = self._handle.write(
            chunk, offset, len(chunk), self._timeout, callback=lambda s, r, h: done(s)
        )
        if not status.ok:  # not even sent: the callback will never come
            self._in_flight.pop(offset, None)
            self._slots.release()
            _checked((status, None), self._path)
        self._offset += len(chunk)
        return len(chunk)

    def _take_slot(self) -> None:
        """Wait for a write in flight to be answered (bounded: see ``_ANSWER_GRACE``)."""
        waited = self._timeout + _ANSWER_GRACE
        if not self._slots.acquire(timeout=waited):
            raise OSError(errno.ETIMEDOUT, f"no answer to a write within {waited:g} s", self._path)

    def _drain(self) -> None:
        taken = 0
        try:
            for _ in range(_WRITES_IN_FLIGHT):
                self._take_slot()
                taken += 1
        finally:
            for _ in range(taken):
                self._slots.release()
        self._raise_failure()

    def sync(self) -> None:
        """Wait for every write, then ask the server to flush the file to its disk."""
        self._drain()
        _checked(self._handle.sync(timeout=self._timeout), self._path)

    def discard(self) -> None:
        """Let go of the file without reporting errors (the caller removes the temporary name)."""
        if not self.closed:
            try:
                with suppress(OSError):
                    self._drain()
                self._handle.close(timeout=self._timeout)
            finally:
                super().close()

    def close(self) -> None:
        """Wait for every write and close the file, raising the first failure."""
        if not self.closed:
            try:
                self._drain()
                _checked(self._handle.close(timeout=self._timeout), self._path)
            finally:
                super().close()


class XRootDFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """
    The fsspec calls a storage element needs, made with the XRootD client (synchronous, no caches).

    Args:
        hostid: the server, ``host:port``.
        timeout: seconds each request may take.
    """

    protocol = ("root", "xroot")
    root_marker = "/"

    def __init__(self, hostid: str, timeout: int = DEFAULT_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hostid = hostid
        self.timeout = int(timeout)
        self.client = _client().FileSystem(f"root://{hostid}")

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        text = str(path)
        if "://" in text:
            text = urlsplit(text).path
        return "/" + text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        """Return the ``root://host:port//path`` URL of ``name``."""
        return f"root://{self.hostid}/{self._strip_protocol(name)}"

    def _call(self, method: str, path: str, *args: Any) -> Any:
        path = self._strip_protocol(path)
        return _checked(getattr(self.client, method)(path, *args, timeout=self.timeout), path)

    def _entry(self, path: str, stat: Any) -> dict[str, Any]:
        flags = _flags().StatInfoFlags
        kind = "directory" if stat.flags & flags.IS_DIR else "other" if stat.flags & flags.OTHER else "file"
        return {"name": path, "size": int(stat.size), "type": kind, "mtime": int(stat.modtime)}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Return name, size, type and mtime of ``path``; a missing path raises ``FileNotFoundError``."""
        path = self._strip_protocol(path)
        return self._entry(path, self._call("stat", path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """List a directory (a file lists itself)."""
        path = self._strip_protocol(path)
        entry = self.info(path)
        if entry["type"] != "directory":
            return [entry if detail else path]
        listing = self._call("dirlist", path, _flags().DirListFlags.STAT)
        entries = [self._entry(f"{path.rstrip('/')}/{item.name}", item.statinfo) for item in listing]
        return entries if detail else [entry["name"] for entry in entries]

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Create a directory (and its parents)."""
        flags = _flags().MkDirFlags.MAKEPATH if create_parents else _flags().MkDirFlags.NONE
        self._call("mkdir", path, flags)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Create a directory and its parents; XRootD's ``MAKEPATH`` accepts an existing directory."""
        self.mkdir(path)

    def rm_file(self, path: str) -> None:
        """Remove one file."""
        self._call("rm", path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        self._call("rmdir", path)

    def mv(
        self, path1: str, path2: str, recursive: bool = False, maxdepth: Any = None, **kwargs: Any
    ) -> None:
        """Rename ``path1`` to ``path2`` on the server (atomic; no glob expansion)."""
        self._call("mv", path1, self._strip_protocol(path2))

    def modified(self, path: str) -> datetime:
        """Return the modification time of ``path``."""
        return datetime.fromtimestamp(self.info(path)["mtime"], UTC)

    def adler32(self, path: str) -> str | None:
        """
        Ask the server for the adler32 of ``path``.

        Returns:
            The checksum, or None when the server computes none (no ``xrootd.chksum``).
        """
        try:
            path = self._strip_protocol(path)
            query = self.client.query(_flags().QueryCode.CHECKSUM, path, timeout=self.timeout)
            answer = _checked(query, path)
        except OSError as exc:
            if exc.errno == errno.ENOTSUP:  # kXR_Unsupported: a server without xrootd.chksum
                return None
            raise
        kind, _, value = answer.decode().strip("\x00").strip().partition(" ")
        return normalize_checksum(value, ChecksumType.ADLER32) if kind.lower() == "adler32" else None

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        flags = _flags().OpenFlags
        opening = {"rb": flags.READ, "xb": flags.NEW | flags.MAKEPATH, "wb": flags.DELETE | flags.MAKEPATH}
        if mode not in opening:
            raise ValueError(f"XRootD files open in modes {sorted(opening)}, not {mode!r}")
        handle = _client().File()
        _checked(handle.open(self.unstrip_protocol(path), opening[mode], timeout=self.timeout), path)
        if mode == "rb":
            return io.BufferedReader(_Reader(handle, path, self.timeout), buffer_size=CHUNK_SIZE)
        return XRootDWriter(handle, path, self.timeout)
