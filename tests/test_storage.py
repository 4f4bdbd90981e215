"""The storage element contract, on every backend: verified puts, copies, reads, listing, confinement."""

from __future__ import annotations

import errno
import io
import os
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

import failover.storage
import failover.storage.element as element_module
from failover.checksum import CHUNK_SIZE, ChecksumType, MultiChecksum
from failover.errors import (
    InvalidInput,
    PermissionDenied,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
)
from failover.storage import FsspecBackend, StorageElement
from failover.storage.paths import object_path, temporary_path

LFN = "/vo/user/a/alice/run42/out.root"
ADLER32, MD5, SHA1 = ChecksumType.ADLER32, ChecksumType.MD5, ChecksumType.SHA1


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


def _make_se(kind: str, tmp_path: Path, name: str = "se-a", **options: Any) -> StorageElement:
    if kind == "file":
        return StorageElement(name, (tmp_path / name).as_uri())
    # An independent store per SE keeps tests apart although fsspec's memory store is global by default.
    options = {"skip_instance_cache": True, **options}
    protocol = "memory" if kind == "memory" else "faulty"
    if protocol == "memory":
        options["global_store"] = False
    return StorageElement(name, f"{protocol}://{name}", options=options)


@pytest.fixture(params=["file", "memory"])
def se(request: pytest.FixtureRequest, tmp_path: Path) -> StorageElement:
    """A fresh, empty SE on each backend the contract must hold for."""
    return _make_se(request.param, tmp_path)


def _local_file(tmp_path: Path, content: bytes, name: str = "out.root") -> Path:
    path = tmp_path / "job" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def _digests(content: bytes, *kinds: ChecksumType) -> dict[ChecksumType, str]:
    summer = MultiChecksum(kinds)
    summer.update(content)
    return summer.digests()


def _read(se: StorageElement, lfn: str) -> bytes:
    with se.open_read(lfn) as stream:
        return stream.read()


def _assert_clean(se: StorageElement, lfn: str) -> None:
    assert not se.exists(lfn)
    assert list(se.list_temporary()) == []
    assert list(se.list_lfns()) == []


def test_storage_exports_are_pinned_and_sorted() -> None:
    assert failover.storage.__all__ == sorted(failover.storage.__all__)
    assert all(hasattr(failover.storage, name) for name in failover.storage.__all__)


def test_put_then_every_accessor_sees_the_object(se: StorageElement, tmp_path: Path) -> None:
    content = b"event data " * 1000
    result = se.put(_local_file(tmp_path, content), LFN, checksum_types=(ADLER32, MD5))
    expected = _digests(content, ADLER32, MD5)
    assert (result.se, result.lfn, result.size, result.already_present) == ("se-a", LFN, len(content), False)
    assert result.checksums == expected
    assert result.pfn == se.pfn(LFN)
    assert result.pfn.startswith(se.url.split(":")[0] + "://") and result.pfn.endswith("se-a" + LFN)
    assert se.exists(LFN)
    assert se.stat(LFN) == failover.storage.ObjectInfo(size=len(content), checksums={})
    assert se.checksum(LFN, MD5) == expected[MD5]
    assert se.checksum(LFN, SHA1) == _digests(content, SHA1)[SHA1]
    assert _read(se, LFN) == content
    assert list(se.list_lfns()) == [LFN]


def test_put_accepts_checksum_aliases_and_deduplicates(se: StorageElement, tmp_path: Path) -> None:
    result = se.put(_local_file(tmp_path, b"abc"), LFN, checksum_types=["AD", SHA1, "adler32"])  # type: ignore[list-item]
    assert list(result.checksums) == [ADLER32, SHA1]


def test_put_without_checksum_type_is_refused(se: StorageElement, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        se.put(_local_file(tmp_path, b"abc"), LFN, checksum_types=())
    assert not se.exists(LFN)


@pytest.mark.parametrize("overwrite", [False, True])
def test_same_content_again_is_already_present_and_untouched(
    se: StorageElement, tmp_path: Path, overwrite: bool
) -> None:
    local = _local_file(tmp_path, b"same bytes")
    first = se.put(local, LFN)
    path = object_path(se.root, LFN)
    before = (se.fs.info(path), se.fs.modified(path))
    again = se.put(local, LFN, overwrite=overwrite)
    assert again.already_present
    assert (again.size, again.checksums, again.pfn) == (first.size, first.checksums, first.pfn)
    assert (se.fs.info(path), se.fs.modified(path)) == before


@pytest.mark.parametrize("other", [b"other content", b"same lengtH"], ids=["other-size", "same-size"])
def test_different_content_is_refused_and_the_old_kept(
    se: StorageElement, tmp_path: Path, other: bytes
) -> None:
    se.put(_local_file(tmp_path, b"same length"), LFN)
    with pytest.raises(StorageRefused) as caught:
        se.put(_local_file(tmp_path, other, "other.root"), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-a", LFN)
    assert "se-a" in str(caught.value) and LFN in str(caught.value)
    assert _read(se, LFN) == b"same length"
    assert list(se.list_temporary()) == []


def test_overwrite_replaces_different_content(se: StorageElement, tmp_path: Path) -> None:
    se.put(_local_file(tmp_path, b"old content"), LFN)
    result = se.put(_local_file(tmp_path, b"new", "new.root"), LFN, overwrite=True)
    assert (result.already_present, result.size) == (False, 3)
    assert _read(se, LFN) == b"new"
    assert list(se.list_lfns()) == [LFN]


def test_local_file_is_only_read(se: StorageElement, tmp_path: Path) -> None:
    local = _local_file(tmp_path, b"precious output")
    local.chmod(0o400)
    before = local.stat()
    se.put(local, LFN)
    after = local.stat()
    assert (after.st_mtime_ns, after.st_size, after.st_mode) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_mode,
    )
    assert local.read_bytes() == b"precious output"


def test_missing_local_file_is_source_missing(se: StorageElement, tmp_path: Path) -> None:
    with pytest.raises(SourceMissing):
        se.put(tmp_path / "absent.root", LFN)
    _assert_clean(se, LFN)


def test_object_under_an_object_is_refused(se: StorageElement, tmp_path: Path) -> None:
    se.put(_local_file(tmp_path, b"a file"), "/vo/x")
    with pytest.raises(StorageRefused):
        se.put(_local_file(tmp_path, b"below it", "b.root"), "/vo/x/y")
    assert list(se.list_lfns()) == ["/vo/x"]


class _FailingLocalFile(io.BufferedReader):
    """A local file whose disk fails once the first chunk has been read."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(size)


def test_local_read_failure_mid_stream_leaves_nothing(
    se: StorageElement, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _local_file(tmp_path, b"x" * (CHUNK_SIZE + 10))
    monkeypatch.setattr(
        element_module, "open", lambda path, mode: _FailingLocalFile(io.FileIO(path, mode)), raising=False
    )
    with pytest.raises(StorageUnavailable) as caught:
        se.put(local, LFN)
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.EIO
    _assert_clean(se, LFN)


def test_connection_drop_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    se = _make_se("faulty", tmp_path, fault="write")
    with pytest.raises(StorageUnavailable) as caught:
        se.put(_local_file(tmp_path, b"y" * (CHUNK_SIZE + 10)), LFN)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    _assert_clean(se, LFN)


def test_short_write_is_transfer_corrupted(tmp_path: Path) -> None:
    """A backend that silently drops bytes is caught by the size check before anything becomes visible."""
    se = _make_se("faulty", tmp_path, fault="lossy")
    with pytest.raises(TransferCorrupted) as caught:
        se.put(_local_file(tmp_path, b"z" * 1000), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-a", LFN)
    _assert_clean(se, LFN)


def test_reported_checksum_mismatch_is_transfer_corrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    se = ReportingElement(
        "se-r", "memory://se-r", options={"global_store": False, "skip_instance_cache": True}
    )
    monkeypatch.setattr(ReportingBackend, "reported", {ADLER32: "00000001"})
    with pytest.raises(TransferCorrupted):
        se.put(_local_file(tmp_path, b"content"), LFN)
    _assert_clean(se, LFN)


def test_reported_checksum_is_used_without_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checksum the storage reports is trusted: it is returned and compared without reading the object."""
    content = b"content"
    se = ReportingElement(
        "se-r", "memory://se-r", options={"global_store": False, "skip_instance_cache": True}
    )
    reported = {MD5: "ab" * 16, ADLER32: _digests(content, ADLER32)[ADLER32]}
    monkeypatch.setattr(ReportingBackend, "reported", reported)
    se.put(_local_file(tmp_path, content), LFN)
    assert se.checksum(LFN, MD5) == "ab" * 16
    assert se.stat(LFN) == failover.storage.ObjectInfo(size=len(content), checksums=reported)


def test_glob_characters_in_lfn_are_literal(se: StorageElement, tmp_path: Path) -> None:
    lfn = "/vo/run[1]/out*?.root"
    se.put(_local_file(tmp_path, b"globby"), lfn)
    se.put(_local_file(tmp_path, b"other", "o.root"), "/vo/run1/outX.root")
    assert _read(se, lfn) == b"globby"
    assert se.remove(lfn)
    assert list(se.list_lfns()) == ["/vo/run1/outX.root"]


@pytest.mark.parametrize("source_kind", ["file", "memory"])
def test_copy_to_streams_a_verified_replica(tmp_path: Path, source_kind: str) -> None:
    source = _make_se(source_kind, tmp_path, "se-src")
    target = _make_se("file", tmp_path, "se-dst")
    content = b"replicate me " * 5000
    source.put(_local_file(tmp_path, content), LFN)
    result = source.copy_to(target, LFN, checksum_types=(ADLER32, MD5))
    assert (result.se, result.pfn, result.already_present) == ("se-dst", target.pfn(LFN), False)
    assert result.checksums == _digests(content, ADLER32, MD5)
    assert _read(target, LFN) == content
    assert source.copy_to(target, LFN).already_present
    assert list(target.list_temporary()) == []


def test_copy_of_absent_replica_is_source_missing(se: StorageElement, tmp_path: Path) -> None:
    target = _make_se("file", tmp_path, "se-dst")
    with pytest.raises(SourceMissing) as caught:
        se.copy_to(target, LFN)
    assert caught.value.se == "se-a"
    _assert_clean(target, LFN)


def test_copy_interrupted_at_the_source_leaves_the_target_clean(tmp_path: Path) -> None:
    source = _make_se("faulty", tmp_path, "se-src", fault="read")
    target = _make_se("file", tmp_path, "se-dst")
    source.put(_local_file(tmp_path, b"w" * (CHUNK_SIZE + 10)), LFN)
    with pytest.raises(StorageUnavailable) as caught:
        source.copy_to(target, LFN)
    assert caught.value.se == "se-src"
    _assert_clean(target, LFN)


def test_remove_is_idempotent(se: StorageElement, tmp_path: Path) -> None:
    se.put(_local_file(tmp_path, b"bye"), LFN)
    assert se.remove(LFN) is True
    assert se.remove(LFN) is False
    assert se.stat(LFN) is None


def test_listing_separates_objects_from_crash_leftovers(se: StorageElement, tmp_path: Path) -> None:
    for lfn in ["/vo/b", "/vo/a/x", "/top"]:
        se.put(_local_file(tmp_path, lfn.encode(), "f"), lfn)
    leftover = temporary_path(object_path(se.root, "/vo/a/crashed.root"))
    se.fs.pipe_file(leftover, b"half a file")
    assert list(se.list_lfns()) == ["/top", "/vo/a/x", "/vo/b"]
    assert list(se.list_temporary()) == [leftover.removeprefix(se.root.rstrip("/") + "/")]
    assert se.remove_temporary() == 1
    assert se.remove_temporary() == 0
    assert list(se.list_lfns()) == ["/top", "/vo/a/x", "/vo/b"]


def test_caller_errors_inside_open_read_are_not_mapped(se: StorageElement, tmp_path: Path) -> None:
    se.put(_local_file(tmp_path, b"data"), LFN)
    with pytest.raises(KeyError), se.open_read(LFN):
        raise KeyError("the caller's own bug")


def test_open_read_of_absent_object_is_source_missing(se: StorageElement) -> None:
    with pytest.raises(SourceMissing), se.open_read(LFN):
        pass


def test_peak_memory_of_a_large_put_stays_flat(tmp_path: Path) -> None:
    """A 200 MB put (and its idempotent repeat) keeps traced memory under 20 MB: the file is streamed."""
    local = tmp_path / "big.root"
    with open(local, "wb") as sparse:
        sparse.truncate(200 * 1024 * 1024)
    se = _make_se("file", tmp_path)
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


@pytest.mark.parametrize(
    ("name", "url"), [("  ", "memory://x"), ("se", "nosuchproto://x"), ("se", "x::nope://y")]
)
def test_constructor_refuses_bad_configuration(name: str, url: str) -> None:
    with pytest.raises(InvalidInput):
        StorageElement(name, url)


def test_options_reach_the_filesystem(tmp_path: Path) -> None:
    """Two memory SEs with independent stores (a storage option) do not see each other's objects."""
    first, second = _make_se("memory", tmp_path), _make_se("memory", tmp_path)
    first.put(_local_file(tmp_path, b"mine"), LFN)
    assert not second.exists(LFN)


def _call_every_method(
    se: StorageElement, other: StorageElement, local: Path
) -> list[Callable[[str], object]]:
    def read(lfn: str) -> object:
        with se.open_read(lfn) as stream:
            return stream.read()

    return [
        se.pfn,
        se.stat,
        se.exists,
        lambda lfn: se.checksum(lfn, ADLER32),
        read,
        lambda lfn: se.put(local, lfn),
        lambda lfn: se.copy_to(other, lfn),
        lambda lfn: other.copy_to(se, lfn),
        se.remove,
    ]


METHOD_IDS = ["pfn", "stat", "exists", "checksum", "open_read", "put", "copy_from", "copy_into", "remove"]


@pytest.mark.parametrize("index", range(len(METHOD_IDS)), ids=METHOD_IDS)
@pytest.mark.parametrize("lfn", ["/vo/../../outside", "vo/x", "/vo/./x", "/vo\\..\\x", "/vo/x\x00"])
def test_every_method_refuses_lfns_leaving_the_root(
    se: StorageElement, tmp_path: Path, index: int, lfn: str
) -> None:
    other = _make_se("file", tmp_path, "se-other")
    other.put(_local_file(tmp_path, b"other"), "/outside")
    call = _call_every_method(se, other, _local_file(tmp_path, b"payload"))[index]
    with pytest.raises(InvalidInput):
        call(lfn)
    assert list(se.list_lfns()) == []


@pytest.fixture(params=["directory-link", "file-link"])
def escape(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[StorageElement, str, Path]:
    """A local SE with a link inside its root that points outside it, the LFN through it, and the outside."""
    se = _make_se("file", tmp_path)
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
    other = _make_se("file", tmp_path, "se-other")
    other.put(_local_file(tmp_path, b"other"), lfn)
    call = _call_every_method(se, other, _local_file(tmp_path, b"payload"))[index]
    with pytest.raises(PermissionDenied) as caught:
        call(lfn)
    assert caught.value.se == "se-a"
    assert sorted(os.listdir(outside)) == ["x.root"]
    assert (outside / "x.root").read_bytes() == b"not yours"


def test_listing_skips_symlinks(escape: tuple[StorageElement, str, Path]) -> None:
    se, _, _ = escape
    assert list(se.list_lfns()) == []
