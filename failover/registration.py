"""
Catalog work around a put: the pre-check before the first put, and registration after it.

A catalog that does not answer never blocks an upload (SPEC §2 **Fix**): the pre-check skips it and
registration defers to a ``RegisterFile`` operation. Only a catalog's real refusal (conflicting
metadata, a GUID used by another LFN, an LFN that clashes with a file or a directory there) stops an
upload before anything is put.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from failover.catalog import FileCatalog, FileEntry, Replica, conflicting_field
from failover.checksum import checksum_file, parse_checksum_type
from failover.errors import FailoverError, RegistrationRefused

__all__ = ["precheck_catalogs", "register_everywhere"]


def _entry(upload: Mapping[str, Any], checksum: str) -> FileEntry:
    return FileEntry(upload["lfn"], upload["size"], checksum, upload["checksum_type"], upload["guid"])


def _local_checksum(upload: Mapping[str, Any]) -> str:
    kind = parse_checksum_type(upload["checksum_type"])
    return upload.get("checksum") or checksum_file(upload["local_path"], [kind]).hexdigest(kind)


def _check_one(catalog: FileCatalog, upload: Mapping[str, Any]) -> None:
    lfn, guid = upload["lfn"], upload["guid"]
    holder = catalog.find_guid(guid)
    if holder is not None and holder != lfn:
        raise RegistrationRefused(
            f"catalog {catalog.name!r}: GUID {guid} already belongs to {holder}",
            lfn=lfn,
            catalog=catalog.name,
        )
    registered = catalog.get_file(lfn)
    if registered is None:
        conflict = catalog.path_conflict(lfn)
        if conflict is not None:
            raise RegistrationRefused(
                f"catalog {catalog.name!r} refuses {lfn}: {conflict}", lfn=lfn, catalog=catalog.name
            )
        return
    field = conflicting_field(registered, _entry(upload, _local_checksum(upload)))
    if field is not None:
        raise RegistrationRefused(
            f"catalog {catalog.name!r} holds {lfn} with a different {field}", lfn=lfn, catalog=catalog.name
        )


def precheck_catalogs(catalogs: Iterable[FileCatalog], upload: Mapping[str, Any]) -> None:
    """
    Refuse an upload that a catalog would refuse, before anything is put.

    Catalogs that do not answer are skipped: the upload goes on and registration is deferred.

    Raises:
        RegistrationRefused: a catalog holds the LFN with other metadata, or the GUID under another LFN.
    """
    for catalog in catalogs:
        try:
            _check_one(catalog, upload)
        except RegistrationRefused:
            raise
        except FailoverError:
            continue


def register_everywhere(
    catalogs: Iterable[FileCatalog], upload: Mapping[str, Any], *, se: str, pfn: str, checksum: str
) -> tuple[list[str], dict[str, str]]:
    """
    Register an uploaded file in every catalog; never raises for a catalog's failure.

    Returns:
        The catalogs where the file is registered (an identical existing entry counts), and the reason
        for each catalog where it is not (to become a ``RegisterFile`` operation).
    """
    entry = _entry(upload, checksum)
    registered: list[str] = []
    failed: dict[str, str] = {}
    for catalog in catalogs:
        try:
            catalog.register_file(entry, Replica(upload["lfn"], se, pfn))
            registered.append(catalog.name)
        except FailoverError as err:
            failed[catalog.name] = f"{type(err).__name__}: {err}"
    return registered, failed
