"""
What storage element calls return: an object's info and a put's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from failover.checksum import ChecksumType

__all__ = ["ObjectInfo", "PutResult"]


@dataclass(frozen=True)
class ObjectInfo:
    """
    What a storage element knows about one object.

    Args:
        size: the object's size in bytes.
        checksums: the checksums the storage reports itself, by type (often empty).
    """

    size: int
    checksums: Mapping[ChecksumType, str]


@dataclass(frozen=True)
class PutResult:
    """
    The outcome of a put or a copy: where the replica is and what it holds.

    Args:
        se: the storage element's name.
        lfn: the logical file name.
        pfn: the replica's full URL.
        size: the replica's size in bytes.
        checksums: the replica's checksums, of the requested types, in canonical form.
        already_present: True when the same content was already there and nothing was written.
    """

    se: str
    lfn: str
    pfn: str
    size: int
    checksums: Mapping[ChecksumType, str]
    already_present: bool
