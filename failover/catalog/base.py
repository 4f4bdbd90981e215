"""
What a file catalog is: the entry and replica shapes, the :class:`FileCatalog` interface, and the
configured :class:`CatalogSet` from which an upload picks its catalogs (SPEC §1, catalogs row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

from failover.checksum import normalize_checksum, parse_checksum_type, same_checksum
from failover.errors import InvalidInput, UnknownCatalog

__all__ = ["CatalogSet", "FileCatalog", "FileEntry", "Replica", "conflicting_field"]


@dataclass(frozen=True)
class FileEntry:
    """
    What a catalog holds for one LFN.

    Args:
        lfn: the logical file name.
        size: the size in bytes.
        checksum: the checksum, of type ``checksum_type``.
        checksum_type: ``ADLER32``, ``MD5`` or ``SHA1`` (DIRAC aliases such as ``AD`` accepted).
        guid: the file's GUID (compared case-insensitively).
    """

    lfn: str
    size: int
    checksum: str
    checksum_type: str
    guid: str

    def normalized(self) -> FileEntry:
        """
        Return the entry in canonical form: type by its DIRAC name, checksum canonical, GUID upper case.

        Raises:
            InvalidInput: the checksum type is unsupported, or the checksum is not valid for it.
        """
        kind = parse_checksum_type(self.checksum_type)
        checksum = normalize_checksum(self.checksum, kind)
        return replace(self, checksum=checksum, checksum_type=kind.value, guid=self.guid.strip().upper())


@dataclass(frozen=True)
class Replica:
    """
    One physical copy of an LFN.

    Args:
        lfn: the logical file name.
        se: the storage element holding the copy.
        pfn: where the copy is on that SE.
    """

    lfn: str
    se: str
    pfn: str


def conflicting_field(registered: FileEntry, wanted: FileEntry) -> str | None:
    """
    Return the first field in which two entries for one LFN really differ, or ``None`` if they agree.

    Sizes compare exactly, checksum types by what they mean (``AD`` is ``ADLER32``), checksums
    tolerantly (case, ``0x``, ADLER32 leading zeros) and GUIDs case-insensitively, as DIRAC does.

    >>> old = FileEntry("/vo/f", 5, "062c0215", "ADLER32", "ab-cd")
    >>> conflicting_field(old, FileEntry("/vo/f", 5, "0x62C0215", "AD", "AB-CD")) is None
    True
    >>> conflicting_field(old, FileEntry("/vo/f", 6, "062c0215", "ADLER32", "ab-cd"))
    'size'

    Raises:
        InvalidInput: a checksum type is unsupported.
    """
    kind = parse_checksum_type(registered.checksum_type)
    if registered.size != wanted.size:
        return "size"
    if kind is not parse_checksum_type(wanted.checksum_type):
        return "checksum_type"
    if not same_checksum(registered.checksum, wanted.checksum, kind):
        return "checksum"
    if registered.guid.strip().upper() != wanted.guid.strip().upper():
        return "guid"
    return None


class FileCatalog(Protocol):
    """
    The interface every catalog implements.

    Registration is idempotent as in DIRAC: registering what is already there, identically, succeeds
    and changes nothing. Every method either answers or raises a failover error naming the catalog.
    """

    #: The catalog's configured name.
    name: str
    #: Whether this is a master catalog.
    master: bool

    def get_file(self, lfn: str) -> FileEntry | None:
        """Return what is registered for ``lfn``, or ``None``."""
        ...

    def get_replicas(self, lfn: str) -> list[Replica]:
        """Return the replicas of ``lfn`` (empty when it has none or is not registered)."""
        ...

    def find_guid(self, guid: str) -> str | None:
        """Return the LFN registered with ``guid`` (case-insensitive), or ``None``."""
        ...

    def path_conflict(self, lfn: str) -> str | None:
        """
        Say why ``lfn`` cannot be registered as a file in this catalog's namespace, or ``None``.

        A name is a file or a directory, never both: a registered file among the directories above
        ``lfn``, or registered files below ``lfn`` (``lfn`` is a directory), is a conflict.
        """
        ...

    def register_file(self, entry: FileEntry, replica: Replica) -> bool:
        """
        Register a file and one replica of it, together.

        Returns:
            ``True`` if anything was written; ``False`` if the same entry and replica were there already.

        Raises:
            RegistrationRefused: the LFN is registered with other metadata, its GUID belongs to another
                LFN, the replica's SE holds another PFN for it, or the LFN clashes with the namespace
                (see :meth:`path_conflict`).
            InvalidInput: the entry is malformed, or the replica is of another LFN.
            CatalogUnavailable: the catalog cannot be reached.
        """
        ...

    def register_replica(self, replica: Replica) -> bool:
        """
        Add a replica of a registered file.

        Returns:
            ``True`` if added; ``False`` if the same replica was there already.

        Raises:
            RegistrationRefused: the file is not registered, or the SE holds another PFN for it.
            CatalogUnavailable: the catalog cannot be reached.
        """
        ...

    def remove_replica(self, lfn: str, se: str) -> bool:
        """Remove the replica of ``lfn`` at ``se``, keeping the file entry; ``False`` if it was absent."""
        ...

    def remove_file(self, lfn: str) -> bool:
        """Remove the entry of ``lfn`` and all its replicas; ``False`` if it was absent."""
        ...

    def iter_files(self) -> Iterator[tuple[FileEntry, list[Replica]]]:
        """Yield every registered file with its replicas, in LFN order (for consistency checks)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Group the block's writes into one commit; each write still succeeds or fails alone."""
        ...


def _split_names(requested: str | Iterable[str]) -> list[str]:
    items = [requested] if isinstance(requested, str) else list(requested)
    names = [name.strip() for item in items for name in item.split(",")]
    return list(dict.fromkeys(name for name in names if name))


class CatalogSet:
    """
    The configured catalogs, in configured order, keyed by name.

    Args:
        catalogs: the catalogs; their names must be distinct.

    Raises:
        InvalidInput: two catalogs share a name.
    """

    def __init__(self, catalogs: Iterable[FileCatalog] = ()) -> None:
        self._by_name: dict[str, FileCatalog] = {}
        for catalog in catalogs:
            if catalog.name in self._by_name:
                raise InvalidInput(f"catalog {catalog.name!r} is configured twice", catalog=catalog.name)
            self._by_name[catalog.name] = catalog

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[FileCatalog]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        """Return the catalog names in configured order."""
        return list(self._by_name)

    def masters(self) -> list[FileCatalog]:
        """Return the master catalogs in configured order."""
        return [catalog for catalog in self._by_name.values() if catalog.master]

    def get(self, name: str) -> FileCatalog:
        """
        Return the catalog called ``name`` (surrounding spaces ignored).

        Raises:
            UnknownCatalog: no catalog has that name.
        """
        name = name.strip()
        catalog = self._by_name.get(name)
        if catalog is None:
            known = ", ".join(self._by_name) or "none"
            raise UnknownCatalog(f"unknown catalog {name!r} (configured: {known})", catalog=name)
        return catalog

    def select(
        self, requested: str | Iterable[str] | None = None, master_only: bool = False
    ) -> list[FileCatalog]:
        """
        Choose the catalogs to register in, as SPEC §1 says.

        ``None``, ``""`` or no names at all mean every configured catalog. Otherwise a name, a list of
        names or a comma-separated string, stripped and de-duplicated in first-appearance order. With
        ``master_only`` the master catalogs replace the selection (the requested names are still
        checked, so a typo is reported rather than silently ignored).

        >>> class Cat:
        ...     def __init__(self, name, master=False):
        ...         self.name, self.master = name, master
        >>> catalogs = CatalogSet([Cat("A"), Cat("B", master=True), Cat("C")])
        >>> [c.name for c in catalogs.select(" C, A,C ")]
        ['C', 'A']
        >>> [c.name for c in catalogs.select(None, master_only=True)]
        ['B']

        Raises:
            UnknownCatalog: a requested name is not configured, no catalog is configured, or
                ``master_only`` is set and no master catalog is configured.
        """
        names = _split_names(requested or ())
        chosen = [self.get(name) for name in names] or list(self._by_name.values())
        if master_only:
            chosen = self.masters()
            if not chosen:
                raise UnknownCatalog("no master catalog is configured")
        if not chosen:
            raise UnknownCatalog("no catalog is configured")
        return chosen
