"""
The storage element on local and in-memory stores: fault injection, reported checksums, memory use, the
constructor, and symbolic links. The contract every backend keeps is in ``test_storage_contract.py``.
"""

from __future__ import annotations

import errno
import io
import os
import random
import tracemalloc
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from storage_support import (
    ADLER32,
    LFN,
    MD5,
    METHOD_IDS,
    assert_clean,
    call_every_method,
    digests,
    local_file,
    make_local_se,
    read,
)

import failover.storage
from failover.checksum import CHUNK_SIZE, MIN_READ_SIZE, ChecksumType
from failover.errors import InvalidInput, PermissionDenied, StorageUnavailable, TransferCorrupted
from failover.storage import FsspecBackend, StorageElement
from failover.storage.backends import LocalBackend
from failover.storage.factory import storage_element
from failover.storage.staged import PutItem
from failover.storage.transfer import PIPELINE_CHUNK_SIZE, PIPELINE_MIN_SIZE, digest


class _FaultyFile(MemoryFile):  # type: ignore[misc]
    """A memory object that breaks in the way its filesystem scripts."""

    def __init__(self, fs: FaultyFileSystem, path: str, data: bytes | None = None) -> None:
        super().__init__(fs, path, data)
        self.fault = fs.fault

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if self.fault == "lossy":
            super().write(chunk[:-1])
            return len(chunk)
        if self.fault == "write" and self.tell() > 0:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        return int(super().write(chunk))

    def read(self, size: int | None = -1) -> bytes:
        if self.fault == "read" and self.tell() > 0:
            raise TimeoutError("read timed out")
        return bytes(super().read(size))


class FaultyFileSystem(MemoryFileSystem):  # type: ignore[misc]
    """
    An in-memory store with one scripted fault, given as the storage option ``fault``.

    ``write``: the connection drops after the first chunk written; ``read``: after the first chunk read;
    ``lossy``: every write silently drops its last byte (a backend that loses data).
    """

    protocol = "faulty"

    def __init__(self, *args: Any, fault: str = "", **kwargs: Any) -> None:
        super().__init__(*args, global_store=False, **kwargs)
        self.fault = fault

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(path.removeprefix("faulty://")))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if mode == "wb":
            created = _FaultyFile(self, path)
            created.commit()
            return created
        if mode == "rb" and path in self.store:
            return _FaultyFile(self, path, self.store[path].getvalue())
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)


class ReportingBackend(FsspecBackend):
    """A store that reports fixed checksums, like an XRootD server with ``xrootd.chksum``."""

    reported: Mapping[ChecksumType, str] = {}

    def reported_checksums(self, info: Mapping[str, Any]) -> dict[ChecksumType, str]:
        return dict(self.reported)


class ReportingElement(StorageElement):
    def _make_backend(self, fs: Any) -> FsspecBackend:
        return ReportingBackend(fs)


def test_storage_exports_are_pinned_and_sorted() -> None:
    assert failover.storage.__all__ == sorted(failover.storage.__all__)
    assert all(hasattr(failover.storage, name) for name in failover.storage.__all__)


def test_connection_drop_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    se = make_local_se("faulty", tmp_path, fault="write")
    with pytest.raises(StorageUnavailable) as caught:
        se.put(local_file(tmp_path, b"y" * (CHUNK_SIZE + 10)), LFN)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert_clean(se, LFN)


def test_a_connection_drop_in_a_big_put_checksummed_aside_leaves_nothing(tmp_path: Path) -> None:
    se = make_local_se("faulty", tmp_path, fault="write")
    with pytest.raises(StorageUnavailable):
        se.put(local_file(tmp_path, b"y" * (PIPELINE_MIN_SIZE + 10)), LFN)
    assert_clean(se, LFN)


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_a_big_put_checksummed_aside_stores_and_reports_what_one_thread_would(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copied through Python (a store the kernel cannot copy to, or a kernel without copy_file_range)."""
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    content = random.Random(7).randbytes(PIPELINE_MIN_SIZE + 12_345)
    chunks: list[tuple[int, int]] = []
    real = LocalBackend.written
    monkeypatch.setattr(
        LocalBackend,
        "written",
        lambda self, s, offset, n: (chunks.append((offset, n)), real(self, s, offset, n)),
    )
    se = make_local_se(kind, tmp_path)

    result = se.put(local_file(tmp_path, content), LFN, checksum_types=[ADLER32, MD5])

    assert (result.size, dict(result.checksums)) == (len(content), digests(content, ADLER32, MD5))
    assert read(se, LFN) == content
    if kind == "file":  # the chunks are handed to the disk in order, each as soon as it is written
        assert [offset for offset, _ in chunks] == list(range(0, len(content), PIPELINE_CHUNK_SIZE))
        assert sum(n for _, n in chunks) == len(content)


def test_short_write_is_transfer_corrupted(tmp_path: Path) -> None:
    """A backend that silently drops bytes is caught by the size check before anything becomes visible."""
    se = make_local_se("faulty", tmp_path, fault="lossy")
    with pytest.raises(TransferCorrupted) as caught:
        se.put(local_file(tmp_path, b"z" * 1000), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-a", LFN)
    assert_clean(se, LFN)


def test_reported_checksum_mismatch_is_transfer_corrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    se = ReportingElement(
        "se-r", "memory://se-r", options={"global_store": False, "skip_instance_cache": True}
    )
    monkeypatch.setattr(ReportingBackend, "reported", {ADLER32: "00000001"})
    with pytest.raises(TransferCorrupted):
        se.put(local_file(tmp_path, b"content"), LFN)
    assert_clean(se, LFN)


def test_reported_checksum_is_used_without_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checksum the storage reports is trusted: it is returned and compared without reading the object."""
    content = b"content"
    se = ReportingElement(
        "se-r", "memory://se-r", options={"global_store": False, "skip_instance_cache": True}
    )
    reported = {MD5: "ab" * 16, ADLER32: digests(content, ADLER32)[ADLER32]}
    monkeypatch.setattr(ReportingBackend, "reported", reported)
    se.put(local_file(tmp_path, content), LFN)
    assert se.checksum(LFN, MD5) == "ab" * 16
    assert se.stat(LFN) == failover.storage.ObjectInfo(size=len(content), checksums=reported)


def test_copy_interrupted_at_the_source_leaves_the_target_clean(tmp_path: Path) -> None:
    source = make_local_se("faulty", tmp_path, "se-src", fault="read")
    target = make_local_se("file", tmp_path, "se-dst")
    source.put(local_file(tmp_path, b"w" * (CHUNK_SIZE + 10)), LFN)
    with pytest.raises(StorageUnavailable) as caught:
        source.copy_to(target, LFN)
    assert caught.value.se == "se-src"
    assert_clean(target, LFN)


def test_peak_memory_of_a_large_put_stays_flat(tmp_path: Path) -> None:
    """A 200 MB put (and its idempotent repeat) keeps traced memory under 20 MB: the file is streamed."""
    local = tmp_path / "big.root"
    with open(local, "wb") as sparse:
        sparse.truncate(200 * 1024 * 1024)
    se = make_local_se("file", tmp_path)
    tracemalloc.start()
    try:
        first = se.put(local, LFN)
        again = se.put(local, LFN)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (first.size, again.already_present) == (200 * 1024 * 1024, True)
    assert peak < 20 * 1024 * 1024


def test_constructor_strips_the_name_and_creates_the_root(tmp_path: Path) -> None:
    se = StorageElement("  se-a \t", (tmp_path / "new" / "root").as_uri())
    assert se.name == "se-a"
    assert (tmp_path / "new" / "root").is_dir()
    assert repr(se) == f"StorageElement('se-a', {se.url!r})"


@pytest.mark.parametrize("url_of", [Path.as_uri, str], ids=["file-url", "plain-path"])
def test_a_root_that_must_exist_makes_every_operation_unavailable_while_missing(
    tmp_path: Path, url_of: Any
) -> None:
    """
    create_root=False (a configured SE's default): a missing root is a storage not mounted. Nothing is
    created in its place, and a replica there is not taken for gone (stat, remove and listings raise).
    """
    root = tmp_path / "mnt" / "se-a"
    local = tmp_path / "out.root"
    local.write_bytes(b"grid job output")
    se = StorageElement("SE-A", url_of(root), create_root=False)
    for name, call in _every_operation(se, tmp_path, local).items():
        with pytest.raises(StorageUnavailable, match=r"SE-A: its root .* does not exist") as caught:
            call()
        assert caught.value.se == "SE-A", name
    assert not (tmp_path / "mnt").exists()
    assert se.pfn(LFN).endswith("/mnt/se-a" + LFN)  # naming a replica touches nothing
    root.mkdir(parents=True)
    assert se.put(local, LFN).size == len(b"grid job output")
    assert list(se.list_lfns()) == [LFN]


def _every_operation(se: StorageElement, tmp_path: Path, local: Path) -> dict[str, Any]:
    """Each operation on ``se``'s files, by name (the copies come from another SE holding ``LFN``)."""
    other = StorageElement("SE-B", (tmp_path / "se-b").as_uri())
    other.put(local, LFN)
    return {
        "put": lambda: se.put(local, LFN),
        "put_many": lambda: _raise_first(se.put_many([PutItem(local, LFN)])),
        "copy in": lambda: other.copy_to(se, LFN),
        "copy_many in": lambda: _raise_first(other.copy_many_to(se, [LFN])),
        "stat": lambda: se.stat(LFN),
        "checksum": lambda: se.checksum(LFN, ChecksumType.ADLER32),
        "remove": lambda: se.remove(LFN),
        "list_lfns": lambda: list(se.list_lfns()),
        "remove_temporary": se.remove_temporary,
    }


def _raise_first(outcomes: list[Any]) -> None:
    if isinstance(outcomes[0], Exception):
        raise outcomes[0]


@pytest.mark.parametrize("create_root", [True, False])
def test_a_root_whose_mount_is_not_mounted_is_never_written_beneath(
    tmp_path: Path, create_root: bool
) -> None:
    """
    ``mount``: while the storage is not mounted, its mount point is an empty directory of the local
    disk. Every operation raises, nothing is created there (not even the root, whatever create_root
    says), and nothing there is taken for gone.
    """
    mount = tmp_path / "mnt"
    mount.mkdir()
    local = tmp_path / "out.root"
    local.write_bytes(b"grid job output")
    for root in (mount, mount / "se-a"):  # the mount point itself, or a directory on it
        se = StorageElement("SE-A", root.as_uri(), create_root=create_root, mount=mount)
        for name, call in _every_operation(se, tmp_path, local).items():
            with pytest.raises(
                StorageUnavailable, match=rf"SE-A: {mount}, its configured mount, is not mounted"
            ) as caught:
                call()
            assert caught.value.se == "SE-A", name
        assert list(mount.iterdir()) == []
        assert se.pfn(LFN) == (root / LFN.lstrip("/")).as_uri()  # naming a replica touches nothing


def test_a_root_on_a_mounted_filesystem_is_used(tmp_path: Path) -> None:
    """The filesystem that really holds tmp_path is mounted: an SE with that mount works as any other."""
    mount = tmp_path
    while not os.path.ismount(mount):
        mount = mount.parent
    local = tmp_path / "out.root"
    local.write_bytes(b"grid job output")
    se = StorageElement("SE-A", (tmp_path / "se-a").as_uri(), mount=mount)
    assert (tmp_path / "se-a").is_dir()  # create_root: made at once, its filesystem being there
    assert se.put(local, LFN).size == len(b"grid job output")
    assert list(se.list_lfns()) == [LFN]


@pytest.mark.parametrize(
    ("url", "mount", "problem"),
    [
        ("{tmp}/disk/se", "{tmp}/other", r"SE-A: its root .*/disk/se is not on its mount .*/other"),
        ("{tmp}/disk", "{tmp}/disk/se", r"SE-A: its root .*/disk is not on its mount .*/disk/se"),
        ("memory://se-a", "/srv", r"SE-A: mount '/srv' is for a local root, not memory://se-a"),
        ("root://eos.example.org//vo/se", "/srv", r"SE-A: mount '/srv' is for a local root, not root://"),
    ],
)
def test_a_mount_that_cannot_hold_the_root_is_refused(
    tmp_path: Path, url: str, mount: str, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        storage_element("SE-A", url.format(tmp=tmp_path), mount=mount.format(tmp=tmp_path))
    assert not (tmp_path / "disk").exists()


def test_holds_same_object_tells_shared_storage_from_a_second_copy(tmp_path: Path) -> None:
    """Two SEs on one root, or on one directory through a link, hold an LFN as one file: no second copy."""
    (tmp_path / "disk" / "se").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "disk" / "se")
    local = tmp_path / "out.root"
    local.write_bytes(b"grid job output")
    se = StorageElement("SE-A", (tmp_path / "disk" / "se").as_uri())
    same = StorageElement("SAME", (tmp_path / "disk" / "se").as_uri())
    linked = StorageElement("LINKED", (tmp_path / "link").as_uri())
    other = StorageElement("OTHER", (tmp_path / "other").as_uri())
    se.put(local, LFN)
    other.put(local, LFN)
    assert (se.holds_same_object(same, LFN), se.holds_same_object(linked, LFN)) == (True, True)
    assert (linked.holds_same_object(se, LFN), se.holds_same_object(other, LFN)) == (True, False)
    assert se.holds_same_object(same, "/vo/none") and not se.holds_same_object(linked, "/vo/none")


@pytest.mark.parametrize(
    ("name", "url"), [("  ", "memory://x"), ("se", "nosuchproto://x"), ("se", "x::nope://y")]
)
def test_constructor_refuses_bad_configuration(name: str, url: str) -> None:
    with pytest.raises(InvalidInput):
        StorageElement(name, url)


def test_options_reach_the_filesystem(tmp_path: Path) -> None:
    """Two memory SEs with independent stores (a storage option) do not see each other's objects."""
    first, second = make_local_se("memory", tmp_path), make_local_se("memory", tmp_path)
    first.put(local_file(tmp_path, b"mine"), LFN)
    assert not second.exists(LFN)


@pytest.fixture(params=["directory-link", "file-link"])
def escape(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[StorageElement, str, Path]:
    """A local SE with a link inside its root that points outside it, the LFN through it, and the outside."""
    se = make_local_se("file", tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.root").write_bytes(b"not yours")
    root = Path(se.root)
    if request.param == "directory-link":
        (root / "vo").symlink_to(outside)
    else:
        (root / "vo").mkdir()
        (root / "vo" / "x.root").symlink_to(outside / "x.root")
    return se, "/vo/x.root", outside


@pytest.mark.parametrize("index", range(len(METHOD_IDS)), ids=METHOD_IDS)
def test_every_method_refuses_symlinks_out_of_the_root(
    escape: tuple[StorageElement, str, Path], tmp_path: Path, index: int
) -> None:
    se, lfn, outside = escape
    other = make_local_se("file", tmp_path, "se-other")
    other.put(local_file(tmp_path, b"other"), lfn)
    call = call_every_method(se, other, local_file(tmp_path, b"payload"))[index]
    with pytest.raises(PermissionDenied) as caught:
        call(lfn)
    assert caught.value.se == "se-a"
    assert sorted(os.listdir(outside)) == ["x.root"]
    assert (outside / "x.root").read_bytes() == b"not yours"


def test_listing_skips_symlinks(escape: tuple[StorageElement, str, Path]) -> None:
    se, _, _ = escape
    assert list(se.list_lfns()) == []


class _AskedSizes(io.BytesIO):
    """A stream that keeps how many bytes each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        """Keep the size asked, then read."""
        self.asked.append(size)
        return super().read(size)


@pytest.mark.parametrize(
    ("actual", "expected", "asked"),
    [
        (4096, 4096, MIN_READ_SIZE),  # a small object: one read, one more that finds its end
        (3 * CHUNK_SIZE // 2, 3 * CHUNK_SIZE // 2, CHUNK_SIZE),
        (5 * MIN_READ_SIZE // 2, 4096, MIN_READ_SIZE),  # grew since its size was taken: still read whole
        (4096, None, CHUNK_SIZE),
    ],
)
def test_digest_asks_for_reads_sized_to_the_stream_and_reads_it_whole(
    actual: int, expected: int | None, asked: int
) -> None:
    data = bytes(range(256)) * (actual // 256)
    stream = _AskedSizes(data)

    summer = digest(stream, [ChecksumType.ADLER32], expected)  # type: ignore[arg-type]

    assert summer.size == actual
    assert summer.hexdigest(ChecksumType.ADLER32) == f"{zlib.adler32(data):08x}"
    assert set(stream.asked) == {asked}
    assert len(stream.asked) == -(-actual // asked) + 1  # the last read finds the end
