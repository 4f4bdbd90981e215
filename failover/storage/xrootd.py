"""
XRootD storage elements (``root://host:port//path``), on the XRootD client itself.

The filesystem is failover's own (:mod:`failover.storage.xrootd_fs`): fsspec-xrootd is not sound enough to
keep replicas on. A put opens its temporary name with ``NEW`` (so nothing existing is ever truncated),
writes with a few chunks in flight, ``sync``-s, and is verified against the server's own adler32
(``xrootd.chksum adler32``, asked with a checksum query) before an ``mv`` (a rename on the server, atomic)
publishes it. A ``?`` starts the opaque part of an XRootD path, so names holding one are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import IO, Any
from urllib.parse import urlsplit

from failover.checksum import ChecksumType
from failover.errors import InvalidInput, StorageRefused
from failover.storage.backends import FsspecBackend
from failover.storage.remote import RemoteStorageElement, discarding
from failover.storage.xrootd_fs import XRootDFileSystem, XRootDWriter

__all__ = ["XRootDBackend", "XRootDStorageElement"]


class XRootDBackend(FsspecBackend):
    """
    Puts on XRootD: exclusive create, server ``sync``, the server's adler32, then an atomic ``mv``.

    Args:
        fs: the SE's :class:`XRootDFileSystem`.
    """

    fs: XRootDFileSystem

    def open_temporary(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """
        Create the temporary file exclusively (``NEW``), so that nothing existing is ever truncated.

        Args:
            path: the temporary path.

        Returns:
            A writable stream whose handle is dropped if the block fails.
        """
        return discarding(self.fs.open(path, "xb"))

    def seal(self, stream: IO[bytes]) -> None:
        """
        Ask the server to flush the temporary file to disk before it is verified and published.

        Args:
            stream: the open temporary stream.
        """
        if isinstance(stream, XRootDWriter):
            stream.sync()

    def publish(self, temporary: str, final: str) -> None:
        """
        Rename the verified temporary over the final name, atomically on the server.

        Args:
            temporary: the verified temporary path.
            final: the object's final path.
        """
        self.fs.mv(temporary, final)

    def reported_checksums(self, info: Mapping[str, Any]) -> dict[ChecksumType, str]:
        """
        Return the adler32 the server computes for the object (nothing when it has no checksums).

        Args:
            info: the result of ``fs.info(path)``.

        Returns:
            ``{ADLER32: value}``, or empty.
        """
        value = self.fs.adler32(str(info["name"]))
        return {ChecksumType.ADLER32: value} if value is not None else {}


class XRootDStorageElement(RemoteStorageElement):
    """
    A storage element on an XRootD server, e.g. ``root://eos.example.org:1094//eos/vo/failover``.

    Options: ``timeout`` (seconds per request, default
    :data:`~failover.storage.xrootd_fs.DEFAULT_TIMEOUT`). Names holding ``?`` are
    refused with :class:`~failover.errors.StorageRefused`: XRootD reads what follows as opaque data.
    """

    def _open_filesystem(self, url: str, options: dict[str, Any]) -> tuple[Any, str]:
        parts = urlsplit(url)
        if parts.scheme not in XRootDFileSystem.protocol or not parts.netloc or parts.query:
            raise InvalidInput(f"{self.name}: not an XRootD URL: {url!r}", se=self.name)
        fs = XRootDFileSystem(parts.netloc, **options)
        return fs, XRootDFileSystem._strip_protocol(parts.path)

    def _make_backend(self, fs: Any) -> FsspecBackend:
        return XRootDBackend(fs)

    def _path(self, lfn: str) -> str:
        path = super()._path(lfn)
        if "?" in lfn:
            raise StorageRefused(
                f"{self.name}: XRootD cannot store {lfn!r}: '?' starts the opaque part of a path",
                se=self.name,
                lfn=lfn,
            )
        return path
