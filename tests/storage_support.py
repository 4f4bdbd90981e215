"""Helpers shared by the storage tests: local files to put, expected checksums, and small assertions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from failover.checksum import ChecksumType, MultiChecksum
from failover.storage import StorageElement

LFN = "/vo/user/a/alice/run42/out.root"
ADLER32, MD5, SHA1 = ChecksumType.ADLER32, ChecksumType.MD5, ChecksumType.SHA1


def make_local_se(kind: str, tmp_path: Path, name: str = "se-a", **options: Any) -> StorageElement:
    """A fresh SE of kind ``file``, ``memory`` or ``faulty`` (an independent in-memory store)."""
    if kind == "file":
        return StorageElement(name, (tmp_path / name).as_uri())
    # An independent store per SE keeps tests apart although fsspec's memory store is global by default.
    options = {"skip_instance_cache": True, **options}
    protocol = "memory" if kind == "memory" else "faulty"
    if protocol == "memory":
        options["global_store"] = False
    return StorageElement(name, f"{protocol}://{name}", options=options)


def local_file(tmp_path: Path, content: bytes, name: str = "out.root") -> Path:
    """A job output file with ``content``, outside every SE."""
    path = tmp_path / "job" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def digests(content: bytes, *kinds: ChecksumType) -> dict[ChecksumType, str]:
    """The checksums of ``content``."""
    summer = MultiChecksum(kinds)
    summer.update(content)
    return summer.digests()


def read(se: StorageElement, lfn: str) -> bytes:
    """The whole object of ``lfn``."""
    with se.open_read(lfn) as stream:
        return stream.read()


def assert_clean(se: StorageElement, lfn: str) -> None:
    """The SE holds nothing: no object, no temporary."""
    assert not se.exists(lfn)
    assert list(se.list_temporary()) == []
    assert list(se.list_lfns()) == []


def call_every_method(
    se: StorageElement, other: StorageElement, local: Path
) -> list[Callable[[str], object]]:
    """Every SE method that takes an LFN, as a call of the LFN alone (``other`` is a copy partner)."""
    return [
        se.pfn,
        se.stat,
        se.exists,
        lambda lfn: se.checksum(lfn, ADLER32),
        lambda lfn: read(se, lfn),
        lambda lfn: se.put(local, lfn),
        lambda lfn: se.copy_to(other, lfn),
        lambda lfn: other.copy_to(se, lfn),
        se.remove,
    ]


METHOD_IDS = ["pfn", "stat", "exists", "checksum", "open_read", "put", "copy_from", "copy_into", "remove"]
