"""
WebDAV storage elements (``davs://host:port/path``, or ``dav://`` over plain HTTP), through webdav4.

webdav4 is used for what it does soundly (PROPFIND parsing, listing, MKCOL, MOVE, DELETE), with two
repairs: every path is percent-encoded before it joins the base URL (webdav4 hands ``?``, ``#`` and ``%``
to httpx as they are, which breaks or misroutes such names), and whole-object transfers are streamed
(webdav4 spools a written file to local disk before its PUT, and commits a partial one on error).

A put streams the bytes in one chunked PUT to the temporary name, reads the temporary back to compare its
adler32 with what was sent (WebDAV servers report no checksum in general: this is the read-back
verification), then ``MOVE``-s it over the final name (a rename on the server).
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from webdav4.client import Client
from webdav4.fsspec import WebdavFileSystem

from failover.checksum import CHUNK_SIZE, ChecksumType, MultiChecksum
from failover.errors import InvalidInput, TransferCorrupted
from failover.storage.backends import FsspecBackend
from failover.storage.paths import lfn_from_path
from failover.storage.remote import RemoteStorageElement
from failover.storage.transfer import digest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["DavFileSystem", "WebDavBackend", "WebDavStorageElement"]

#: Seconds a WebDAV request may wait for the server (connect, a read or write of a chunk).
DEFAULT_TIMEOUT = 60.0
_SCHEMES = {"dav": "http", "davs": "https"}
_END = b""
_CONFLICT = 409


class _QuotingClient(Client):  # type: ignore[misc]
    """webdav4's client with every path percent-encoded before it joins the base URL."""

    def join_url(self, path: str, add_trailing_slash: bool = False) -> Any:
        return super().join_url(quote(path, safe="/"), add_trailing_slash=add_trailing_slash)


class _Download(io.RawIOBase):
    """One streamed GET of a whole object."""

    def __init__(self, client: Client, path: str) -> None:
        super().__init__()
        request = client.http.build_request("GET", client.join_url(path))
        self._response = client.http.send(request, stream=True)
        if self._response.is_error:
            self._response.read()
            self._response.close()
            self._response.raise_for_status()
        self._chunks = self._response.iter_bytes(CHUNK_SIZE)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if not self._pending:
            self._pending = next(self._chunks, _END)
        size = min(len(view), len(self._pending))
        view[:size], self._pending = self._pending[:size], self._pending[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            super().close()


class _Upload(io.RawIOBase):
    """
    One chunked PUT fed by ``write()``: the request runs in a thread that takes the chunks from a queue.

    ``close()`` ends the body and raises what the request raised. ``discard()`` ends the body where it is
    and waits for the request to finish, its outcome ignored: the object it leaves is a temporary the
    caller then removes. Aborting the request instead would race that removal: the server may handle the
    aborted PUT, and create the temporary, after the DELETE has found nothing.
    """

    def __init__(self, send: Callable[[Iterator[bytes]], None]) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._summer = MultiChecksum()
        self._thread = threading.Thread(target=self._run, args=(send,), name="webdav-put", daemon=True)
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        while (chunk := self._chunks.get()) is not None:
            yield chunk

    def _run(self, send: Callable[[Iterator[bytes]], None]) -> None:
        try:
            send(self._body())
        except BaseException as exc:  # handed to the writer's thread by close() and write()
            self._failure = exc

    def _put(self, chunk: bytes | None) -> None:
        while self._thread.is_alive():
            try:
                self._chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        raise ConnectionAbortedError("the WebDAV upload stopped early")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if chunk:
            self._summer.update(chunk)
            self._put(chunk)
        return len(chunk)

    @property
    def checksum(self) -> str:
        """The adler32 of the bytes written."""
        return self._summer.hexdigest(ChecksumType.ADLER32)

    def discard(self) -> None:
        if not self.closed:
            # The request may have died already: its failure is not the one the caller is handling.
            with suppress(BaseException):
                self._put(None)
            self._thread.join()
            super().close()

    def close(self) -> None:
        if not self.closed:
            try:
                self._put(None)
                self._thread.join()
                if self._failure is not None:
                    raise self._failure
            finally:
                super().close()


class DavFileSystem(WebdavFileSystem):  # type: ignore[misc]
    """
    webdav4's filesystem with encoded paths, streamed whole-object reads, and ``dav(s)://`` URLs.

    Args:
        base_url: the server, e.g. ``https://host:port``.
        url_base: how the SE's URLs start, e.g. ``davs://host:port``.
        client_opts: passed to webdav4's client and httpx (``auth``, ``timeout``, ``verify``...).
    """

    def __init__(self, base_url: str, url_base: str, **client_opts: Any) -> None:
        client_opts.setdefault("timeout", DEFAULT_TIMEOUT)
        super().__init__(base_url, client=_QuotingClient(base_url, **client_opts))
        self.url_base = url_base

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        text = str(path)
        if "://" in text:
            text = urlsplit(text).path
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        """Return the ``dav(s)://host:port/path`` URL of ``name``."""
        return f"{self.url_base}/{self._strip_protocol(name)}"

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode == "rb":
            return io.BufferedReader(_Download(self.client, self._strip_protocol(path)), CHUNK_SIZE)
        return super()._open(path, mode, **kwargs)


class WebDavBackend(FsspecBackend):
    """
    Puts on WebDAV: one streamed PUT, a read-back of the temporary, then ``MOVE``.

    Args:
        fs: the SE's :class:`DavFileSystem`.
        se: the SE's name, for errors.
        root: the SE's root, to name the LFN in errors.
        read_back: compare the temporary's adler32 with what was sent before publishing it.
    """

    fs: DavFileSystem

    def __init__(self, fs: DavFileSystem, se: str, root: str, *, read_back: bool = True) -> None:
        super().__init__(fs)
        self.se, self.root, self.read_back = se, root, read_back
        self._sent: dict[str, _Upload] = {}

    def make_dirs(self, directory: str) -> None:
        """
        Create ``directory`` with ``MKCOL``, and its parents only when the server says one is missing.

        An existing directory answers 405 and costs one request; an object where a directory should be is
        found by the PUT below it (409).

        Args:
            directory: the directory path.
        """
        client = self.fs.client
        response = client.http.request("MKCOL", client.join_url(directory.strip("/") + "/"))
        if response.status_code == _CONFLICT and "/" in directory.strip("/"):  # a parent is missing
            self.make_dirs(directory.strip("/").rsplit("/", 1)[0])
            response = client.http.request("MKCOL", client.join_url(directory.strip("/") + "/"))
        if response.status_code not in (200, 201, 405):
            response.raise_for_status()

    def open_temporary(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """
        Start the chunked PUT of the temporary object.

        Args:
            path: the temporary path.

        Returns:
            A writable stream; the PUT is aborted if the block fails.
        """
        client = self.fs.client

        def send(body: Iterator[bytes]) -> None:
            client.http.put(client.join_url(path), content=body).raise_for_status()

        upload = _Upload(send)
        self._sent[path] = upload
        return _committing(upload, lambda: self._sent.pop(path, None))

    def publish(self, temporary: str, final: str) -> None:
        """
        Read the temporary back and compare it with what was sent, then move it over the final name.

        Args:
            temporary: the verified temporary path.
            final: the object's final path.

        Raises:
            TransferCorrupted: the server holds other bytes than were sent.
        """
        sent = self._sent.pop(temporary, None)
        if self.read_back and sent is not None:
            with self.fs.open(temporary, "rb") as stream:
                held = digest(stream, (ChecksumType.ADLER32,)).hexdigest(ChecksumType.ADLER32)
            if held != sent.checksum:
                lfn = lfn_from_path(self.root, final)
                message = f"{self.se}: {lfn}: read back adler32 {held} after {sent.checksum} was sent"
                raise TransferCorrupted(message, se=self.se, lfn=lfn)
        self.fs.client.move(temporary, final, overwrite=True)


@contextmanager
def _committing(upload: _Upload, forget: Callable[[], object]) -> Iterator[IO[bytes]]:
    try:
        yield upload  # type: ignore[misc]
    except BaseException:
        forget()
        upload.discard()
        raise
    upload.close()


def _client_options(options: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    username, password = opts.pop("username", None), opts.pop("password", None)
    if username is not None:
        opts["auth"] = (username, password or "")
    return opts


class WebDavStorageElement(RemoteStorageElement):
    """
    A storage element on a WebDAV server, e.g. ``davs://webdav.example.org:2880/vo/failover``.

    Options: ``username`` and ``password`` (basic auth) or ``auth``; ``timeout`` (seconds, default
    :data:`DEFAULT_TIMEOUT`); ``verify`` and ``cert`` for TLS; ``read_back`` (default True: verify each put
    by reading it back); anything else goes to httpx.
    """

    def _open_filesystem(self, url: str, options: dict[str, Any]) -> tuple[Any, str]:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.netloc or parts.query:
            raise InvalidInput(f"{self.name}: not a dav:// or davs:// URL: {url!r}", se=self.name)
        self._read_back = bool(options.pop("read_back", True))
        base_url = f"{_SCHEMES[parts.scheme]}://{parts.netloc}"
        fs = DavFileSystem(base_url, f"{parts.scheme}://{parts.netloc}", **_client_options(options))
        return fs, DavFileSystem._strip_protocol(parts.path)

    def _make_backend(self, fs: Any) -> FsspecBackend:
        return WebDavBackend(fs, self.name, self.root, read_back=self._read_back)
