"""
What the storage elements on network protocols (XRootD, S3, WebDAV) share.

A remote SE is built without touching its server: a job must be able to configure an SE that is down
and fail over from it, so the root is created by the first put (every put creates its parent
directories anyway). Each protocol says how its URL becomes a filesystem and a root with
:meth:`RemoteStorageElement._open_filesystem`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from failover.errors import InvalidInput
from failover.storage.element import StorageElement
from failover.storage.errors import map_storage_errors

__all__ = ["RemoteStorageElement", "discarding"]


class RemoteStorageElement(StorageElement):
    """
    A storage element on a server: opened lazily, its filesystem built by the protocol's subclass.

    Args:
        name: the SE's name; surrounding spaces are stripped.
        url: the URL of the SE's root, in the protocol's own form.
        options: protocol options (credentials, endpoint, timeouts), see each subclass.

    Raises:
        InvalidInput: the name is empty or the URL is not one the protocol understands.
        StorageUnavailable: the client cannot be set up (another error mapped by
            :func:`~failover.storage.errors.map_storage_errors`).
    """

    def __init__(self, name: str, url: str, *, options: Mapping[str, Any] | None = None) -> None:
        # The same attributes as StorageElement.__init__, without its eager creation of the root.
        self.name = name.strip()
        if not self.name:
            raise InvalidInput(f"A storage element needs a name (url {url!r})")
        self.url = url
        with map_storage_errors(self.name):
            self.fs, self.root = self._open_filesystem(url, dict(options or {}))
            self._backend = self._make_backend(self.fs)

    def _open_filesystem(self, url: str, options: dict[str, Any]) -> tuple[Any, str]:
        """
        Return the filesystem and the root path for ``url``.

        Args:
            url: the SE's URL.
            options: the SE's options.

        Returns:
            An fsspec filesystem and the root path in its own form.
        """
        raise NotImplementedError


@contextmanager
def discarding(stream: Any) -> Iterator[IO[bytes]]:
    """
    Close a remote write stream when the block succeeds, and discard it when the block fails.

    fsspec's buffered files commit whatever was written when they are closed, even by an exception; a
    failed put must instead leave nothing behind to publish (the caller removes the temporary name).

    Args:
        stream: a writable stream with a ``discard()`` method (fsspec's buffered files have one).

    Yields:
        The stream.
    """
    try:
        yield stream
    except BaseException:
        stream.discard()
        raise
    stream.close()
