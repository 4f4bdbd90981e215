"""
Helpers shared by the storage tests: local files to put (and to change while they are read), expected
checksums, and small assertions.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import failover.storage.local_source as local_source_module
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


class _ChangingLocalFile(io.BufferedReader):
    """A local file that something else changes once its first chunk has been read."""

    def __init__(self, raw: io.FileIO, change: Callable[[], None]) -> None:
        super().__init__(raw)
        self._change: Callable[[], None] | None = change

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if data and self._change is not None:
            change, self._change = self._change, None
            change()
        return data


def change_while_read(monkeypatch: pytest.MonkeyPatch, local: Path, change: Callable[[], None]) -> None:
    """
    Make ``change`` happen to ``local`` once a put has read its first chunk (each time the put opens it),
    as a job still writing its output would: puts read local files through ``open`` in
    :mod:`failover.storage.local_source`, patched here for ``local`` only.
    """

    def opening(path: str, mode: str) -> io.BufferedReader:
        if Path(path) != local:
            return io.open(path, mode)  # noqa: UP020 (the builtin is patched in that module only)
        return _ChangingLocalFile(io.FileIO(path, mode), change)

    monkeypatch.setattr(local_source_module, "open", opening, raising=False)
