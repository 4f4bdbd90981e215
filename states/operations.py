"""
The request operations an upload's transitions emit (SPEC.md §2-3), as emission payloads.

Every value comes from what was uploaded (never empty), so the request always validates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fsm.spec import Emission

__all__ = [
    "REGISTER_FILE",
    "REMOVE_REPLICA",
    "REPLICATE_AND_REGISTER",
    "register_file_operations",
    "remove_replica_operation",
    "replicate_operation",
]

REGISTER_FILE = "RegisterFile"
REPLICATE_AND_REGISTER = "ReplicateAndRegister"
REMOVE_REPLICA = "RemoveReplica"


def _file(upload: Mapping[str, Any], *, with_pfn: bool) -> dict[str, Any]:
    entry = {
        "lfn": upload["lfn"],
        "checksum": upload["checksum"],
        "checksum_type": upload["checksum_type"],
        "size": upload["size"],
        "guid": upload["guid"],
    }
    if with_pfn:
        entry["pfn"] = upload["pfn"]
    return entry


def _operation(
    kind: str, *, target_se: Sequence[str], source_se: str, catalog: Sequence[str], files: list[Any]
) -> Emission:
    payload = {
        "type": kind,
        "target_se": list(target_se),
        "source_se": source_se,
        "catalog": list(catalog),
        "files": files,
    }
    return Emission(kind, payload)


def register_file_operations(upload: Mapping[str, Any], catalogs: Sequence[str]) -> list[Emission]:
    """One ``RegisterFile`` per catalog where registration did not happen, at the SE that took the file."""
    return [
        _operation(
            REGISTER_FILE,
            target_se=[upload["uploaded_se"]],
            source_se="",
            catalog=[name],
            files=[_file(upload, with_pfn=True)],
        )
        for name in catalogs
    ]


def replicate_operation(upload: Mapping[str, Any]) -> Emission:
    """``ReplicateAndRegister`` from the failover SE to the target(s), registering in the chosen catalogs."""
    return _operation(
        REPLICATE_AND_REGISTER,
        target_se=upload["targets"],
        source_se=upload["uploaded_se"],
        catalog=upload["catalogs"],
        files=[_file(upload, with_pfn=False)],
    )


def remove_replica_operation(upload: Mapping[str, Any]) -> Emission:
    """``RemoveReplica`` of the temporary copy at the failover SE."""
    return _operation(
        REMOVE_REPLICA,
        target_se=[upload["uploaded_se"]],
        source_se="",
        catalog=[],
        files=[{"lfn": upload["lfn"]}],
    )
