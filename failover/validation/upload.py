"""
All of an upload's inputs checked together, in SPEC §1 order: the first violation is raised.

The order is LFN, local file, GUID, checksum type, checksum, size, SE names, catalogs. Every error raised
carries the upload's LFN in its ``lfn`` field (when the LFN is a string), plus ``se`` or ``catalog`` where
one is at fault.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failover.checksum import ChecksumType
from failover.errors import InvalidInput
from failover.validation.metadata import (
    CHECKSUM_KEY,
    CHECKSUM_TYPE_KEY,
    GUID_KEY,
    SIZE_KEY,
    new_guid,
    validate_checksum,
    validate_checksum_type,
    validate_guid,
    validate_size,
)
from failover.validation.names import CatalogChoice, select_catalogs, validate_ses
from failover.validation.paths import validate_lfn, validate_local_file

__all__ = ["UploadInput", "validate_upload"]


@dataclass(frozen=True)
class UploadInput:
    """
    An upload's inputs, validated and in canonical form.

    Args:
        lfn: the logical file name.
        local_path: the local file, absolute.
        size: the local file's size in bytes (> 0).
        checksum_type: the checksum type to compute and register.
        checksum: the caller's checksum, canonical and verified against the file; ``None`` if not supplied.
        guid: the GUID, upper case: the caller's, or a generated one.
        guid_generated: whether ``guid`` was generated (store it with the upload and reuse it on resume).
        ses: the destination SE names, in the order to try them; may be empty (a total failure, SPEC §2).
        catalogs: the catalogs to register in.
        metadata: a copy of the caller's ``fileMetaDict``, unknown keys included, values unchanged.
    """

    lfn: str
    local_path: Path
    size: int
    checksum_type: ChecksumType
    checksum: str | None
    guid: str
    guid_generated: bool
    ses: tuple[str, ...]
    catalogs: tuple[str, ...]
    metadata: dict[str, Any] = field(hash=False)


def validate_upload(
    *,
    lfn: str,
    local_path: str | os.PathLike[str],
    file_meta: Mapping[str, Any] | None,
    ses: str | Iterable[str] | None,
    configured_ses: Collection[str],
    catalogs: str | Iterable[str] | None,
    configured_catalogs: Sequence[CatalogChoice],
    master_only: bool = False,
    default_checksum_type: str | ChecksumType | None = "ADLER32",
    guid_factory: Callable[[], str] = new_guid,
    checked_ses: tuple[str, ...] | None = None,
    checked_catalogs: tuple[str, ...] | None = None,
) -> UploadInput:
    """
    Check everything about an upload before anything is uploaded, and return it in canonical form.

    The local file is only read (to verify a supplied checksum), never modified.

    Args:
        lfn: the logical file name.
        local_path: the local file to upload.
        file_meta: DIRAC's ``fileMetaDict``; ``GUID``, ``Checksum``, ``ChecksumType`` and ``Size`` are read,
            other keys are kept unchanged in :attr:`UploadInput.metadata`. ``None`` means ``{}``.
        ses: the destination SEs: a name, a comma-separated string or a list.
        configured_ses: the names of the configured SEs.
        catalogs: DIRAC's ``fileCatalog``; ``None`` or ``""`` means every configured catalog.
        configured_catalogs: the configured catalogs, in order.
        master_only: DIRAC's ``masterCatalogOnly``: register in the master catalogs only.
        default_checksum_type: used when ``ChecksumType`` is absent or empty; ``None`` means ADLER32.
        guid_factory: makes a GUID when none is given.
        checked_ses: what :func:`validate_ses` returned for these ``ses``, to skip that check (the last
            but one) for each of many files; ``None`` checks them here.
        checked_catalogs: what :func:`select_catalogs` returned for these arguments, likewise.

    Raises:
        InvalidInput: the first violation, as one of its subclasses where one fits
            (:class:`~failover.errors.NameTooLong`, :class:`~failover.errors.ChecksumMismatch`,
            :class:`~failover.errors.UnknownStorageElement`, :class:`~failover.errors.UnknownCatalog`).
    """
    with _about(lfn):
        checked_lfn = validate_lfn(lfn)
        path, size = validate_local_file(local_path)
        meta = _mapping(file_meta)
        guid, generated = validate_guid(meta.get(GUID_KEY), guid_factory)
        kind = validate_checksum_type(meta.get(CHECKSUM_TYPE_KEY), default_checksum_type)
        checksum = validate_checksum(meta.get(CHECKSUM_KEY), path, kind)
        validate_size(meta.get(SIZE_KEY), size)
        se_names = validate_ses(ses, configured_ses) if checked_ses is None else checked_ses
        catalog_names = (
            select_catalogs(catalogs, configured_catalogs, master_only)
            if checked_catalogs is None
            else checked_catalogs
        )
    return UploadInput(
        lfn=checked_lfn,
        local_path=path,
        size=size,
        checksum_type=kind,
        checksum=checksum,
        guid=guid,
        guid_generated=generated,
        ses=se_names,
        catalogs=catalog_names,
        metadata=meta,
    )


@contextmanager
def _about(lfn: object) -> Iterator[None]:
    try:
        yield
    except InvalidInput as err:
        if err.lfn is None and isinstance(lfn, str):
            err.lfn = lfn
        raise


def _mapping(file_meta: object) -> dict[str, Any]:
    if file_meta is None:
        return {}
    if not isinstance(file_meta, Mapping):
        raise InvalidInput(f"fileMetaDict must be a mapping, not {type(file_meta).__name__}")
    return dict(file_meta)
