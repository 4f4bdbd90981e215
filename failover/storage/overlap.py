"""
Whether two storage elements' roots share storage: the same root, or one inside the other.

Two SEs on one storage hold some LFNs as one object: a failover request then "replicates" a file onto
itself and its ``RemoveReplica`` deletes the only copy. A configuration refuses such SEs
(:func:`first_overlap`); the executor checks each replica it counts on before a removal
(:meth:`~failover.storage.StorageElement.holds_same_object`), for SEs built by hand.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from urllib.parse import urlsplit

from failover.storage.element import plain_local_root

__all__ = ["first_overlap", "root_location", "roots_overlap"]

# A server named with or without its protocol's port is the same server.
_DEFAULT_PORTS = {
    "root": 1094,
    "xroot": 1094,
    "roots": 1094,
    "http": 80,
    "dav": 80,
    "https": 443,
    "davs": 443,
}


def root_location(url: str) -> tuple[str, str]:
    """
    Where a root URL's storage is and its path there, comparable between SEs.

    A local root (a path, ``file://``) is resolved through its symbolic links as far as it exists; any
    other keeps its protocol, host (lowercased, without a user name) and port (the protocol's default when
    none is written), and its normalised path.

    >>> root_location("s3://Bucket.Example.org//vo/se-a/")
    ('s3://bucket.example.org', '/vo/se-a')
    >>> root_location("root://alice@EOS.example.org//eos/vo/")
    ('root://eos.example.org:1094', '/eos/vo')
    >>> root_location("file:///srv/se-a/../se-b")
    ('file://', '/srv/se-b')
    """
    local = plain_local_root(url)
    if local is not None:
        return "file://", os.path.realpath(local)
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a number: compared as written (the SE fails on its own when used)
        return f"{scheme}://{parts.netloc.lower()}", posixpath.normpath("/" + parts.path.lstrip("/"))
    where = f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"
    return where, posixpath.normpath("/" + parts.path.lstrip("/"))


def roots_overlap(first: str, second: str) -> str | None:
    """
    How the root at ``second`` overlaps the one at ``first`` ("the same as", "inside" or "around"), or None.

    >>> roots_overlap("/srv/se", "/srv/se/failover"), roots_overlap("/srv/se", "/srv/se-b")
    ('inside', None)
    """
    return _overlap(root_location(first), root_location(second))


def first_overlap(urls: Sequence[str]) -> tuple[int, int, str] | None:
    """
    The first pair of roots among ``urls`` that overlap: the earlier's index, the later's, and how the later
    overlaps the earlier (see :func:`roots_overlap`); None when all are apart. Each root is located once.
    """
    locations = [root_location(url) for url in urls]
    for later, location in enumerate(locations):
        for earlier in range(later):
            how = _overlap(locations[earlier], location)
            if how is not None:
                return earlier, later, how
    return None


def _overlap(first: tuple[str, str], second: tuple[str, str]) -> str | None:
    (where_a, path_a), (where_b, path_b) = first, second
    if where_a != where_b:
        return None
    if path_a == path_b:
        return "the same as"
    common = posixpath.commonpath([path_a, path_b])
    if common == path_a:
        return "inside"
    if common == path_b:
        return "around"
    return None
