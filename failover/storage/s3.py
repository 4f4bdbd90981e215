"""
S3 storage elements (``s3://bucket/prefix``), through s3fs.

S3 has no rename and no directories. A put uploads the temporary key (s3fs: one PUT, or a multipart upload
in parts of :data:`PART_SIZE`), checks its size, then checks its ETag, which the server computes from the
bytes it received (the MD5, or the MD5 of the parts' MD5s), against the one the sent bytes call for; it
then publishes the object with a server-side copy that writes its adler32 as metadata
(``x-amz-meta-adler32``) and deletes the temporary key. A copy is atomic, so the final key never shows a
partial object. ``head_object`` reads that adler32 back as the checksum the storage reports, with the ETag
as MD5 where S3 defines it so (a single-part object without SSE-KMS or SSE-C encryption).

A key under a key is refused (``/vo/x/y`` while ``/vo/x`` is an object), as on every hierarchical SE, so
that LFNs keep one meaning across storage elements.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import posixpath
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import IO, Any
from urllib.parse import urlsplit

from fsspec.asyn import sync
from fsspec.core import url_to_fs

from failover.checksum import ChecksumType, MultiChecksum, normalize_checksum
from failover.errors import InvalidInput, TransferCorrupted
from failover.storage.backends import FsspecBackend
from failover.storage.paths import lfn_from_path
from failover.storage.remote import RemoteStorageElement, discarding
from failover.storage.transfer import digest

__all__ = ["S3Backend", "S3StorageElement"]

#: The object metadata key holding the adler32 written at upload.
ADLER32_METADATA = "adler32"
#: The largest object one ``copy_object`` may copy; larger ones are copied in parts.
COPY_LIMIT = 5 * 2**30
#: How often s3fs tries a call that failed for a reason it deems passing (s3fs's default is 5, ~2 s).
DEFAULT_RETRIES = 2
# Fail fast on an endpoint that is down (botocore retries 4 more times by default): failover has its
# own retry policy. Never answer from a listing cache that another process may have made stale.
_DEFAULT_OPTIONS: Mapping[str, Any] = {
    "use_listings_cache": False,
    "fixed_upload_size": True,
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}},
}
#: The size of the parts of a multipart upload (s3fs's default block size): every part but the last.
PART_SIZE = 50 * 2**20
_ETAG = re.compile(r"[0-9a-f]{32}(-[0-9]+)?")


class _SentStream:
    """
    A write stream that keeps the adler32 of what goes through it, and the ETag S3 should give it.

    The ETag of an unencrypted object is the MD5 of its bytes when it was sent in one PUT (smaller than a
    part), else the MD5 of its parts' MD5s followed by ``-<parts>``; s3fs cuts parts of exactly
    :data:`PART_SIZE` bytes (``fixed_upload_size``).
    """

    def __init__(self, stream: Any, forget: Callable[[], object]) -> None:
        self.stream, self._forget = stream, forget
        self._summer = MultiChecksum()
        self._part, self._filled = hashlib.md5(usedforsecurity=False), 0
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        written = bytes(data)
        self._summer.update(written)
        chunk = memoryview(written)
        while chunk:
            taken, chunk = chunk[: PART_SIZE - self._filled], chunk[PART_SIZE - self._filled :]
            self._part.update(taken)
            self._filled += len(taken)
            if self._filled == PART_SIZE:
                self._parts.append(self._part.digest())
                self._part, self._filled = hashlib.md5(usedforsecurity=False), 0
        return int(self.stream.write(data))

    @property
    def size(self) -> int:
        """How many bytes were written."""
        return self._summer.size

    @property
    def checksum(self) -> str:
        """The adler32 of the bytes written."""
        return self._summer.hexdigest(ChecksumType.ADLER32)

    @property
    def etag(self) -> str:
        """The ETag S3 computes for the bytes written, when it is not encrypting them."""
        parts = self._parts + ([self._part.digest()] if self._filled or not self._parts else [])
        if self.size < PART_SIZE:
            return parts[0].hex()
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"

    def discard(self) -> None:
        self._forget()
        self.stream.discard()
        self.stream.closed = True
        self.stream = None

    def close(self) -> None:
        self.stream.close()
        # s3fs keeps the last part in its buffer after closing; only the checksums are needed from here.
        self.stream = None


def _etag(head: Mapping[str, Any]) -> str | None:
    """The object's ETag when it is an MD5 or a multipart MD5 (not under SSE-KMS or SSE-C)."""
    etag = str(head.get("ETag", "")).strip('"').lower()
    kms = str(head.get("ServerSideEncryption", "")).startswith("aws:kms")
    if kms or head.get("SSECustomerAlgorithm") or not _ETAG.fullmatch(etag):
        return None
    return etag


class S3Backend(FsspecBackend):
    """
    Puts on S3: temporary key, size check, server-side copy with the adler32 as metadata, delete.

    Args:
        fs: the SE's ``s3fs.S3FileSystem``.
        root: the SE's root (``bucket/prefix``): keys below it are checked for keys under keys.
    """

    def __init__(self, fs: Any, root: str, se: str) -> None:
        super().__init__(fs)
        self.root, self.se = root.rstrip("/"), se
        self._sent: dict[str, _SentStream] = {}

    def _key(self, path: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path)
        return str(bucket), str(key)

    def _head(self, path: str) -> dict[str, Any]:
        bucket, key = self._key(path)
        return dict(self.fs.call_s3("head_object", Bucket=bucket, Key=key))

    async def _is_object(self, path: str) -> bool:
        bucket, key = self._key(path)
        try:
            await self.fs._call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    async def _objects_among(self, paths: list[str]) -> list[str]:
        found = await asyncio.gather(*(self._is_object(path) for path in paths))
        return [path for path, is_object in zip(paths, found, strict=True) if is_object]

    def make_dirs(self, directory: str) -> None:
        """
        Check that no object stands where ``directory`` or one of its parents below the root would be.

        S3 needs no directories; the parents are looked up at once, concurrently.

        Args:
            directory: the directory path.

        Raises:
            NotADirectoryError: an object holds the name of one of the directories.
        """
        parents: list[str] = []
        current = directory.rstrip("/")
        while current.startswith(self.root + "/"):
            parents.append(current)
            current = posixpath.dirname(current)
        clashes = sync(self.fs.loop, self._objects_among, parents) if parents else []
        if clashes:
            raise NotADirectoryError(errno.ENOTDIR, "an object holds the name of a directory", clashes[0])

    def open_temporary(self, path: str) -> AbstractContextManager[IO[bytes]]:
        """
        Start the temporary object; its adler32 is computed on the way, for the metadata.

        Args:
            path: the temporary key.

        Returns:
            A writable stream, discarded (a multipart upload aborted) if the block fails.
        """
        stream = _SentStream(
            self.fs.open(path, "wb", block_size=PART_SIZE), lambda: self._sent.pop(path, None)
        )
        # Read back by publish(); a put whose verification fails leaves its entry (a few numbers) behind.
        self._sent[path] = stream
        return discarding(stream)

    def _check_etag(self, temporary: str, final: str, sent: _SentStream) -> None:
        """
        Compare the temporary's ETag (computed by the server) with the one the sent bytes call for.

        A server whose ETags follow another rule, or an s3fs that cut the parts differently, would differ
        for sound bytes too: then the object is read back and its adler32 decides.

        Raises:
            TransferCorrupted: the server holds other bytes than were sent.
        """
        etag = _etag(self._head(temporary))
        if etag is None or etag == sent.etag:
            return
        with self.fs.open(temporary, "rb", block_size=PART_SIZE) as stream:
            held = digest(stream, (ChecksumType.ADLER32,)).hexdigest(ChecksumType.ADLER32)
        if held != sent.checksum:
            lfn = lfn_from_path(self.root, final)
            message = f"{self.se}: {lfn}: the server holds ETag {etag} after {sent.etag} was sent"
            raise TransferCorrupted(message, se=self.se, lfn=lfn)

    def publish(self, temporary: str, final: str) -> None:
        """
        Check the temporary's ETag, copy it to the final key with its adler32 as metadata, delete it.

        Args:
            temporary: the temporary key, whose size was verified.
            final: the object's final key.

        Raises:
            TransferCorrupted: the server holds other bytes than were sent.
        """
        sent = self._sent.pop(temporary, None)
        if sent is not None:
            self._check_etag(temporary, final, sent)
        metadata = {ADLER32_METADATA: sent.checksum} if sent is not None else {}
        size = sent.size if sent is not None else int(self.fs.info(temporary)["size"])
        (bucket, key), (_, source) = self._key(final), self._key(temporary)
        if size <= COPY_LIMIT:
            self.fs.call_s3(
                "copy_object",
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": bucket, "Key": source},
                MetadataDirective="REPLACE",
                Metadata=metadata,
            )
        else:
            sync(self.fs.loop, self.fs._copy_managed, temporary, final, size, Metadata=metadata)
        self.fs.rm_file(temporary)

    def reported_checksums(self, info: Mapping[str, Any]) -> dict[ChecksumType, str]:
        """
        Return the adler32 written at upload and, where S3 defines it so, the ETag as MD5.

        Args:
            info: the result of ``fs.info(path)``.

        Returns:
            Checksums by type (a temporary object has no adler32 yet).
        """
        head = self._head(str(info["name"]))
        checksums: dict[ChecksumType, str] = {}
        adler32 = (head.get("Metadata") or {}).get(ADLER32_METADATA)
        if adler32:
            checksums[ChecksumType.ADLER32] = normalize_checksum(adler32, ChecksumType.ADLER32)
        etag = _etag(head)
        if etag is not None and "-" not in etag:
            checksums[ChecksumType.MD5] = etag
        return checksums


class S3StorageElement(RemoteStorageElement):
    """
    A storage element on S3, e.g. ``s3://failover/vo/se-a``.

    Options go to ``s3fs.S3FileSystem``: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``,
    ``config_kwargs``..., except ``retries`` (s3fs's attempts per call, default :data:`DEFAULT_RETRIES`).
    The defaults fail fast on an endpoint that is down and use no listing cache.
    """

    def _open_filesystem(self, url: str, options: dict[str, Any]) -> tuple[Any, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("s3", "s3a") or not parts.netloc:
            raise InvalidInput(f"{self.name}: not an S3 URL with a bucket: {url!r}", se=self.name)
        retries = int(options.pop("retries", DEFAULT_RETRIES))
        fs, root = url_to_fs(url, **{**_DEFAULT_OPTIONS, **options})
        fs.retries = retries
        return fs, str(root).rstrip("/")

    def _make_backend(self, fs: Any) -> FsspecBackend:
        return S3Backend(fs, self.root, self.name)
