"""
A storage element: a named fsspec root where the replicas of LFNs are put, read, copied and removed.

Puts and copies go through :func:`~failover.storage.transfer.write_verified`, so the final name never shows a
partial object; an object already there with the same content makes a put a no-op, which keeps resumed
uploads idempotent. Every storage call runs inside :func:`~failover.storage.errors.map_storage_errors`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO

from failover.checksum import ChecksumType, MultiChecksum, parse_checksum_type
from failover.errors import (
    FailoverError,
    InvalidInput,
    PermissionDenied,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
)
from failover.storage.backends import FsspecBackend, LocalBackend, backend_for
from failover.storage.errors import map_storage_errors
from failover.storage.inventory import Inventory
from failover.storage.local_source import local_file_source
from failover.storage.paths import object_path
from failover.storage.results import ObjectInfo, PutResult
from failover.storage.staged import PutItem, StagedGroup
from failover.storage.streams import mapped_reader
from failover.storage.transfer import Source, checksum_kinds, digest, same_content, write_verified

__all__ = ["StorageElement"]

_ADLER32_ONLY = (ChecksumType.ADLER32,)
#: How many files a staged put writes before flushing them (each holds a file descriptor until then).
STAGED_GROUP_SIZE = 64


@dataclass(frozen=True)
class _Incoming:
    """One object for a staged group: where it goes, and how to open its bytes (may raise)."""

    lfn: str
    checksum_types: Iterable[ChecksumType]
    overwrite: bool
    source: Callable[[], Source]


def plain_local_root(url: str) -> str | None:
    """
    The root path of a plain local URL (an absolute path, or ``file://`` and one), exactly as fsspec's
    ``url_to_fs`` gives it; None for any other URL, which is left to fsspec.

    A local storage element needs nothing of fsspec, whose import (with asyncio) costs every command
    0.03 to 0.05 s of its start.
    """
    path = url.removeprefix("file://")
    # fsspec reads what comes before any "://" as a protocol ("/a://b" is protocol "/a"), so must we.
    if "::" in url or "://" in path or not path.startswith("/"):
        return None
    return path.rstrip("/") or "/"


def _check_protocols(name: str, url: str) -> None:
    from fsspec import available_protocols, registry
    from fsspec.core import split_protocol

    # Known implementations (possibly not installed) and those registered at run time.
    known = set(available_protocols()) | set(registry)
    for part in url.split("::"):
        protocol = split_protocol(part)[0] or "file"
        if protocol not in known:
            raise InvalidInput(f"{name}: unknown storage protocol {protocol!r} in {url!r}", se=name)


class StorageElement(Inventory):
    """
    A named storage endpoint whose root is an fsspec URL.

    >>> import tempfile, pathlib
    >>> workdir = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (workdir / "out.root").write_bytes(b"hello")
    >>> se = StorageElement(" se-a ", (workdir / "se-a").as_uri())
    >>> result = se.put(workdir / "out.root", "/vo/run42/out.root")
    >>> (se.name, result.size, result.checksums[ChecksumType.ADLER32], result.already_present)
    ('se-a', 5, '062c0215', False)
    >>> se.put(workdir / "out.root", "/vo/run42/out.root").already_present
    True
    >>> import shutil; shutil.rmtree(workdir)

    Local roots (``file://``, the default) get durable puts: data and directories are ``fsync``-ed and
    the final rename is atomic, and symbolic links leading out of the root are refused. Subclasses can
    override :meth:`_make_backend` to use a :class:`~failover.storage.backends.FsspecBackend` that knows
    more about their store (for instance the checksums it reports).

    Args:
        name: the SE's name; surrounding spaces are stripped.
        url: the fsspec URL of the SE's root, e.g. ``file:///srv/se-a`` or ``memory://se-a``.
        options: storage options passed to the fsspec filesystem.
        create_root: create the root directory now if it is missing (the default). With False, a local
            root is never created: while it is missing (its storage not mounted, say) every operation
            raises ``StorageUnavailable``, so that nothing lands on the local disk in its place and no
            replica there is taken for gone. Other roots are then made by the first put.
        mount: for a local root, the mount point of the filesystem that holds it (the root itself or a
            directory above it). While that path is not a mount point, every operation raises
            ``StorageUnavailable`` and the root is not created: a root that is itself a mount point
            exists, empty, when its storage is not mounted, and without this the files would go to the
            disk beneath and be hidden once the storage is mounted again (OpenStack Swift's
            ``mount_check`` guards its devices the same way).

    Attributes:
        fs: the fsspec filesystem holding the root (a local root's is made, and fsspec imported, only
            when something asks for it: puts, reads and removals on a local disk go to ``os``).
        root: the root path, in the filesystem's own form.

    Raises:
        InvalidInput: the name is empty, the URL's protocol is unknown, or ``mount`` is given for a root
            that is not local or not under it.
        StorageUnavailable: the filesystem cannot be set up or the root cannot be created (or another
            error mapped by :func:`~failover.storage.errors.map_storage_errors`).
    """

    #: Whether every operation first checks that the (local) root exists: see ``create_root``.
    _root_must_exist = False

    #: The mount point the local root must be on (see ``mount``), or None.
    _mount: str | None = None

    def __init__(
        self,
        name: str,
        url: str,
        *,
        options: Mapping[str, Any] | None = None,
        create_root: bool = True,
        mount: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name.strip()
        if not self.name:
            raise InvalidInput(f"A storage element needs a name (url {url!r})")
        self.url = url
        self._fs: Any = None
        # Options, or a subclass's own backend, need the filesystem even for a local root.
        own_backend = type(self)._make_backend is not StorageElement._make_backend
        root = None if options or own_backend else plain_local_root(url)
        with map_storage_errors(self.name):  # the InvalidInput of an unknown protocol passes unchanged
            if root is None:
                _check_protocols(self.name, url)
                from fsspec.core import url_to_fs

                self.fs, self.root = url_to_fs(url, **dict(options or {}))
                self._backend = self._make_backend(self.fs)
            else:
                self.root, self._backend = root, LocalBackend()
            if mount is not None:
                self._mount = self._mount_point(os.fspath(mount))
            if create_root and self.root.strip("/") and self._mounted():
                self._backend.make_dirs(self.root)
        self._root_must_exist = not create_root and isinstance(self._backend, LocalBackend)

    def _mount_point(self, mount: str) -> str:
        """``mount`` made absolute, once checked to be a local root's mount (see ``mount``)."""
        if not isinstance(self._backend, LocalBackend):
            raise InvalidInput(
                f"{self.name}: mount {mount!r} is for a local root, not {self.url}", se=self.name
            )
        path, root = os.path.abspath(mount), os.path.abspath(self.root)
        if os.path.commonpath([path, root]) != path:
            message = f"{self.name}: its root {self.root} is not on its mount {path} (not under it)"
            raise InvalidInput(message, se=self.name)
        return path

    def _mounted(self) -> bool:
        return self._mount is None or os.path.ismount(self._mount)

    def __repr__(self) -> str:
        return f"StorageElement({self.name!r}, {self.url!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem holding the root (for a plain local root, made on first use)."""
        if self._fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self._fs = LocalFileSystem()
        return self._fs

    @fs.setter
    def fs(self, value: Any) -> None:
        self._fs = value

    def _make_backend(self, fs: Any) -> FsspecBackend:
        """Return the backend for ``fs``; subclasses override this to add store-specific behaviour."""
        return backend_for(fs)

    def _check_root(self) -> None:
        """
        Raise ``StorageUnavailable`` if the root's mount is not mounted (see ``mount``), or if the root
        must exist and does not (see ``create_root``).
        """
        if not self._mounted():
            raise StorageUnavailable(
                f"{self.name}: {self._mount}, its configured mount, is not mounted: nothing beneath it is "
                "read or written until it is",
                se=self.name,
            )
        if self._root_must_exist and not os.path.isdir(self.root):
            raise StorageUnavailable(
                f"{self.name}: its root {self.root} does not exist (is its storage mounted?) and is not "
                "created in its place: create it, or set create_root = true for this SE",
                se=self.name,
            )

    def _path(self, lfn: str) -> str:
        """The confined path of ``lfn``'s object, for an operation on it (the root checked first)."""
        self._check_root()
        return self._confined(lfn)

    def _confined(self, lfn: str) -> str:
        path = object_path(self.root, lfn)
        with map_storage_errors(self.name, lfn):
            confined = self._backend.confined(self.root, path)
        if not confined:
            raise PermissionDenied(
                f"{self.name}: {lfn} resolves outside the SE root {self.url} through a symbolic link",
                se=self.name,
                lfn=lfn,
            )
        return path

    def pfn(self, lfn: str) -> str:
        """
        Return the full URL of ``lfn``'s replica on this SE, e.g. ``file:///srv/se-a/vo/x.root``.

        Args:
            lfn: the logical file name.

        Returns:
            The physical file name (the object need not exist).

        Raises:
            InvalidInput: the LFN is refused (see :func:`~failover.storage.paths.check_lfn`).
            PermissionDenied: the LFN resolves outside the root through a symbolic link.
        """
        return self._pfn_at(self._confined(lfn), lfn)

    def holds_same_object(self, other: StorageElement, lfn: str) -> bool:
        """
        Tell whether ``other`` stores ``lfn`` as the very object this SE does: two SEs sharing storage
        (the same root, or local roots reaching one directory through links or bind mounts). Such a copy
        is no second copy: removing either removes both.

        Args:
            other: another storage element.
            lfn: the logical file name.

        Returns:
            True when both name the same object: the same PFN, or, on local disks, the same file.
        """
        mine, theirs = self._confined(lfn), other._confined(lfn)
        if self._pfn_at(mine, lfn) == other._pfn_at(theirs, lfn):
            return True
        if not (isinstance(self._backend, LocalBackend) and isinstance(other._backend, LocalBackend)):
            return False
        try:
            first, second = os.stat(mine), os.stat(theirs)
        except OSError:
            return False
        return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)

    def _pfn_at(self, path: str, lfn: str) -> str:
        with map_storage_errors(self.name, lfn):
            return self._backend.url_of(path)

    def stat(self, lfn: str) -> ObjectInfo | None:
        """
        Return the size and the storage-reported checksums of ``lfn``'s object.

        Args:
            lfn: the logical file name.

        Returns:
            The object's info, or None when there is no object (a directory is not an object).

        Raises:
            InvalidInput: the LFN is refused.
            PermissionDenied: the SE refuses access.
            StorageUnavailable: the SE cannot be reached.
        """
        return self._stat_at(self._path(lfn), lfn)

    # The ``_..._at`` methods take a path already confined by :meth:`_path`: one public call checks its
    # LFN once, however many storage calls it makes.
    def _stat_at(self, path: str, lfn: str) -> ObjectInfo | None:
        with map_storage_errors(self.name, lfn):
            try:
                info = self._backend.info(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if info.get("type") != "file":
                return None
            return ObjectInfo(size=int(info["size"]), checksums=self._backend.reported_checksums(info))

    def exists(self, lfn: str) -> bool:
        """
        Tell whether ``lfn`` has an object on this SE.

        Args:
            lfn: the logical file name.

        Returns:
            True if the object exists.

        Raises:
            InvalidInput: the LFN is refused.
            PermissionDenied: the SE refuses access.
            StorageUnavailable: the SE cannot be reached.
        """
        return self.stat(lfn) is not None

    def checksum(self, lfn: str, kind: ChecksumType) -> str:
        """
        Return the checksum of ``lfn``'s object: the storage's own if it reports one, else by reading it back.

        Args:
            lfn: the logical file name.
            kind: the checksum type.

        Returns:
            The checksum in canonical form.

        Raises:
            SourceMissing: there is no such object.
            InvalidInput: the LFN is refused.
            StorageUnavailable: the SE cannot be reached or failed during the read.
        """
        return self._checksum_at(self._path(lfn), lfn, parse_checksum_type(kind))

    def _checksum_at(self, path: str, lfn: str, kind: ChecksumType) -> str:
        info = self._stat_at(path, lfn)
        if info is None:
            raise SourceMissing(f"{self.name} holds no object for {lfn}", se=self.name, lfn=lfn)
        if kind in info.checksums:
            return info.checksums[kind]
        return self._read_checksum(path, lfn, kind, info.size)

    def _read_checksum(self, path: str, lfn: str, kind: ChecksumType, size: int | None = None) -> str:
        """The checksum of the object at ``path`` (of ``size`` bytes, if known), by reading it."""
        with self._open_at(path, lfn) as stream:
            return digest(stream, (kind,), size).hexdigest(kind)

    @contextmanager
    def open_read(self, lfn: str) -> Iterator[BinaryIO]:
        """
        Open ``lfn``'s object for streamed reading; read it in chunks to keep memory flat.

        Args:
            lfn: the logical file name.

        Yields:
            A binary stream whose read failures are failover errors.

        Raises:
            SourceMissing: there is no such object.
            InvalidInput: the LFN is refused.
            StorageUnavailable: the SE cannot be reached or failed during a read.
        """
        with self._open_at(self._path(lfn), lfn) as reader:
            yield reader

    @contextmanager
    def _open_at(self, path: str, lfn: str) -> Iterator[BinaryIO]:
        with map_storage_errors(self.name, lfn):
            stream = self._backend.open_read(path)
        with mapped_reader(stream, self.name, lfn) as reader:
            yield reader

    def put(
        self,
        local_path: str | os.PathLike[str],
        lfn: str,
        *,
        checksum_types: Iterable[ChecksumType] = _ADLER32_ONLY,
        overwrite: bool = False,
        expected_size: int | None = None,
        expected_checksum: str | None = None,
    ) -> PutResult:
        """
        Store a local file as ``lfn`` (SPEC.md §2): streamed once, verified, then made visible atomically.

        The local file is only ever opened for reading. If the object already holds the same size and
        checksum, nothing is written and ``already_present`` is True.

        Args:
            local_path: the file to upload.
            lfn: the logical file name.
            checksum_types: the checksums to compute on the way and return (the first one also decides
                whether an existing object holds the same content).
            overwrite: replace an existing object with different content instead of refusing.
            expected_size: the size the caller checked the file had.
            expected_checksum: the file's checksum of the first checksum type, as the caller checked it.

        Returns:
            Where the replica is, its size and checksums.

        Raises:
            InvalidInput: the LFN is refused, or no checksum type is given.
            SourceMissing: the local file does not exist.
            SourceChanged: the file is not what the caller checked, or changed while it was read
                (:mod:`failover.storage.local_source`); nothing is stored.
            StorageRefused: other content exists under the name (and not ``overwrite``), or the SE refuses
                the name, the size or the space.
            TransferCorrupted: the SE holds other bytes than were sent.
            PermissionDenied: the SE refuses access.
            StorageUnavailable: the SE cannot be reached or failed during the transfer.
        """
        kinds = checksum_kinds(checksum_types)
        final = self._path(lfn)
        item = PutItem(local_path, lfn, kinds, overwrite, expected_size, expected_checksum)
        return self._store(self._local_source(item), final, lfn, kinds, overwrite)

    def _local_source(self, item: PutItem) -> Source:
        """The bytes of ``item``'s local file, checked against what its caller checked."""
        return local_file_source(
            item.local_path,
            se=self.name,
            lfn=item.lfn,
            kind=checksum_kinds(item.checksum_types)[0],
            expected_size=item.expected_size,
            expected_checksum=item.expected_checksum,
        )

    def copy_to(
        self,
        target: StorageElement,
        lfn: str,
        *,
        checksum_types: Iterable[ChecksumType] = _ADLER32_ONLY,
        overwrite: bool = False,
    ) -> PutResult:
        """
        Copy ``lfn``'s object to ``target``, streamed through the same verified put as :meth:`put`.

        Args:
            target: the storage element to copy to.
            lfn: the logical file name (the same on both SEs).
            checksum_types: the checksums to compute on the way and return.
            overwrite: replace different content at the target instead of refusing.

        Returns:
            The target replica's location, size and checksums.

        Raises:
            SourceMissing: this SE holds no object for ``lfn``.
            InvalidInput: the LFN is refused, or no checksum type is given.
            StorageRefused: the target holds other content (and not ``overwrite``), or refuses the object.
            TransferCorrupted: the target holds other bytes than were sent.
            PermissionDenied: either SE refuses access.
            StorageUnavailable: either SE cannot be reached or failed during the transfer.
        """
        kinds = checksum_kinds(checksum_types)
        return target._store(self._object_source(lfn), target._path(lfn), lfn, kinds, overwrite)

    def remove(self, lfn: str) -> bool:
        """
        Remove ``lfn``'s object; removing an absent object is not an error.

        Args:
            lfn: the logical file name.

        Returns:
            True if an object was removed, False if there was none.

        Raises:
            InvalidInput: the LFN is refused.
            PermissionDenied: the SE refuses the removal.
            StorageUnavailable: the SE cannot be reached.
        """
        path = self._path(lfn)
        if self._stat_at(path, lfn) is None:
            return False
        with map_storage_errors(self.name, lfn):
            try:
                self._backend.remove_file(path)
            except FileNotFoundError:
                # Removed by someone else since the stat: the outcome the caller wants.
                return False
        return True

    def _result(self, final: str, lfn: str, summer: MultiChecksum, *, already_present: bool) -> PutResult:
        pfn = self._pfn_at(final, lfn)
        return PutResult(self.name, lfn, pfn, summer.size, summer.digests(), already_present)

    def _store(
        self, source: Source, final: str, lfn: str, kinds: tuple[ChecksumType, ...], overwrite: bool
    ) -> PutResult:
        """
        Put ``source`` under ``lfn`` (confined path ``final``); the same content already there counts as
        done (idempotent resume).
        """
        present = self._already_present(source, final, lfn, kinds, overwrite)
        if present is not None:
            return present
        with map_storage_errors(self.name, lfn):
            summer = write_verified(self._backend, source, final, kinds, se=self.name, lfn=lfn)
        return self._result(final, lfn, summer, already_present=False)

    def _already_present(
        self, source: Source, final: str, lfn: str, kinds: tuple[ChecksumType, ...], overwrite: bool
    ) -> PutResult | None:
        """
        The result of a put that finds the same content already there, or None when it must write.

        Raises:
            StorageRefused: different content is there and ``overwrite`` is not set.
        """
        existing = self._stat_at(final, lfn)
        if existing is None:
            return None
        with map_storage_errors(self.name, lfn):
            # same_content uses a checksum the storage reports in ``existing`` first: read_back only reads.
            read_back = partial(self._read_checksum, final, lfn, size=existing.size)
            same = same_content(existing, source, kinds, read_back)
        if same is not None:
            return self._result(final, lfn, same, already_present=True)
        if not overwrite:
            message = f"{self.name} already holds different content under {lfn} (size {existing.size})"
            raise StorageRefused(message, se=self.name, lfn=lfn)
        return None

    def put_many(self, items: Sequence[PutItem]) -> list[PutResult | FailoverError]:
        """
        Put many local files, each with the guarantees and outcome of :meth:`put`.

        On a local disk the files are written in groups (:class:`~failover.storage.staged.StagedGroup`):
        every file written, then every file flushed and renamed, then each directory flushed once. The
        call returns once all of them are durable. Elsewhere, the files are put one by one.

        Args:
            items: the files, their LFNs and put options.

        Returns:
            For each item in order: its :class:`PutResult`, or the error that stopped it (one file's
            failure does not stop the others).
        """
        if not self._backend.stages_puts:
            return [self._put_or_error(item) for item in items]
        return self._store_staged(
            [
                _Incoming(
                    item.lfn,
                    item.checksum_types,
                    item.overwrite,
                    partial(self._local_source, item),
                )
                for item in items
            ]
        )

    def copy_many_to(
        self,
        target: StorageElement,
        lfns: Sequence[str],
        *,
        checksum_types: Iterable[ChecksumType] = _ADLER32_ONLY,
        overwrite: bool = False,
    ) -> list[PutResult | FailoverError]:
        """
        Copy many objects to ``target``, each with the guarantees and outcome of :meth:`copy_to`.

        On a local target disk the copies are written in groups, as :meth:`put_many` writes files.

        Args:
            target: the storage element to copy to.
            lfns: the logical file names (the same on both SEs).
            checksum_types: the checksums to compute on the way and return.
            overwrite: replace different content at the target instead of refusing.

        Returns:
            For each LFN in order: the target replica's :class:`PutResult`, or the error that stopped it.
        """
        if not target._backend.stages_puts:
            return [self._copy_or_error(target, lfn, checksum_types, overwrite) for lfn in lfns]
        kinds = tuple(checksum_types)
        return target._store_staged(
            [_Incoming(lfn, kinds, overwrite, partial(self._object_source, lfn)) for lfn in lfns]
        )

    def _copy_or_error(
        self, target: StorageElement, lfn: str, kinds: Iterable[ChecksumType], overwrite: bool
    ) -> PutResult | FailoverError:
        try:
            return self.copy_to(target, lfn, checksum_types=kinds, overwrite=overwrite)
        except FailoverError as err:
            return err

    def _object_source(self, lfn: str) -> Source:
        """The bytes of this SE's object ``lfn``, to copy (SourceMissing when there is none)."""
        path = self._path(lfn)
        info = self._stat_at(path, lfn)
        if info is None:
            raise SourceMissing(f"{self.name} holds no replica of {lfn} to copy", se=self.name, lfn=lfn)
        return Source(info.size, lambda: self._open_at(path, lfn))

    def _put_or_error(self, item: PutItem) -> PutResult | FailoverError:
        try:
            return self.put(
                item.local_path,
                item.lfn,
                checksum_types=item.checksum_types,
                overwrite=item.overwrite,
                expected_size=item.expected_size,
                expected_checksum=item.expected_checksum,
            )
        except FailoverError as err:
            return err

    def _store_staged(self, incoming: Sequence[_Incoming]) -> list[PutResult | FailoverError]:
        outcomes: list[PutResult | FailoverError] = []
        for start in range(0, len(incoming), STAGED_GROUP_SIZE):
            outcomes.extend(self._store_group(incoming[start : start + STAGED_GROUP_SIZE]))
        return outcomes

    def _store_group(self, items: Sequence[_Incoming]) -> list[PutResult | FailoverError]:
        outcomes: dict[int, PutResult | FailoverError] = {}
        assert isinstance(self._backend, LocalBackend)
        with StagedGroup(self._backend, self.name) as group:
            for index, item in enumerate(items):
                try:
                    kinds = checksum_kinds(item.checksum_types)
                    final = self._path(item.lfn)
                    source = item.source()
                    present = self._already_present(source, final, item.lfn, kinds, item.overwrite)
                    if present is None:
                        group.write(index, source, final, kinds, item.lfn)
                    else:
                        outcomes[index] = present
                except FailoverError as err:
                    outcomes[index] = err
            for index, written in group.publish().items():
                if isinstance(written, FailoverError):
                    outcomes[index] = written
                else:
                    outcomes[index] = self._result(
                        written.final, written.lfn, written.summer, already_present=False
                    )
        return [outcomes[index] for index in range(len(items))]
