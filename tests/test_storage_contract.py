"""
The storage element contract, on every backend: a local disk (``file://``), memory (``memory://``), and real
XRootD (``root://``), S3 (``s3://``, SeaweedFS) and WebDAV (``dav://``, WsgiDAV) servers on 127.0.0.1.

Verified puts and copies, reads, checksums, URLs, removal, listing, confinement to the root, the temporary
name never visible under the final one, and failures arriving as the typed classes.
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, unique_root, xrootd_server
from storage_support import (
    ADLER32,
    LFN,
    MD5,
    METHOD_IDS,
    SHA1,
    assert_clean,
    call_every_method,
    change_while_read,
    digests,
    local_file,
    make_local_se,
    read,
)

import failover.storage.local_source as local_source_module
from failover.checksum import CHUNK_SIZE, ChecksumType
from failover.errors import (
    InvalidInput,
    PermissionDenied,
    SourceChanged,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
)
from failover.storage import PutItem, PutResult, StorageElement
from failover.storage.factory import storage_element
from failover.storage.paths import object_path, temporary_path

pytest_plugins = ["conftest_servers"]

#: The server fixture of each remote backend.
SERVERS = {"root": "xrootd", "s3": "s3", "webdav": "webdav"}
#: The checksums each backend's storage reports for a small object, without reading it back.
REPORTED: dict[str, frozenset[ChecksumType]] = {
    "root": frozenset({ADLER32}),
    "s3": frozenset({ADLER32, MD5}),
}


@dataclass(frozen=True)
class Backend:
    """One kind of storage the contract holds on: how to make a fresh SE, and what its storage reports."""

    kind: str
    make: Callable[[str], StorageElement]

    @property
    def reported(self) -> frozenset[ChecksumType]:
        return REPORTED.get(self.kind, frozenset())

    @property
    def takes_question_marks(self) -> bool:
        # XRootD reads what follows a '?' as opaque data, so it refuses such names.
        return self.kind != "root"


@pytest.fixture(params=["file", "memory", "root", "s3", "webdav"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend; a remote one starts its (session) server on first use."""
    kind = request.param
    if kind not in SERVERS:
        return Backend(kind, lambda name: make_local_se(kind, tmp_path, name))
    server = request.getfixturevalue(SERVERS[kind])
    return Backend(kind, lambda name: storage_element(name, server.url(unique_root(name)), server.options()))


@pytest.fixture
def se(backend: Backend) -> StorageElement:
    """A fresh, empty SE named ``se-a`` on each backend the contract must hold for."""
    return backend.make("se-a")


def test_put_then_every_accessor_sees_the_object(
    se: StorageElement, backend: Backend, tmp_path: Path
) -> None:
    content = b"event data " * 1000
    result = se.put(local_file(tmp_path, content), LFN, checksum_types=(ADLER32, MD5))
    expected = digests(content, ADLER32, MD5)
    assert (result.se, result.lfn, result.size, result.already_present) == ("se-a", LFN, len(content), False)
    assert result.checksums == expected
    assert result.pfn == se.pfn(LFN)
    assert result.pfn.startswith(se.url.split(":")[0] + "://") and result.pfn.endswith("se-a" + LFN)
    assert se.exists(LFN)
    info = se.stat(LFN)
    assert info is not None and info.size == len(content)
    assert info.checksums == {kind: expected[kind] for kind in backend.reported}
    assert se.checksum(LFN, MD5) == expected[MD5]
    assert se.checksum(LFN, SHA1) == digests(content, SHA1)[SHA1]
    assert read(se, LFN) == content
    assert list(se.list_lfns()) == [LFN]


def test_put_accepts_checksum_aliases_and_deduplicates(se: StorageElement, tmp_path: Path) -> None:
    result = se.put(local_file(tmp_path, b"abc"), LFN, checksum_types=["AD", SHA1, "adler32"])  # type: ignore[list-item]
    assert list(result.checksums) == [ADLER32, SHA1]


def test_put_without_checksum_type_is_refused(se: StorageElement, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        se.put(local_file(tmp_path, b"abc"), LFN, checksum_types=())
    assert not se.exists(LFN)


@pytest.mark.parametrize("overwrite", [False, True])
def test_same_content_again_is_already_present_and_untouched(
    se: StorageElement, tmp_path: Path, overwrite: bool
) -> None:
    local = local_file(tmp_path, b"same bytes")
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
    se.put(local_file(tmp_path, b"same length"), LFN)
    with pytest.raises(StorageRefused) as caught:
        se.put(local_file(tmp_path, other, "other.root"), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-a", LFN)
    assert "se-a" in str(caught.value) and LFN in str(caught.value)
    assert read(se, LFN) == b"same length"
    assert list(se.list_temporary()) == []


def test_overwrite_replaces_different_content(se: StorageElement, tmp_path: Path) -> None:
    se.put(local_file(tmp_path, b"old content"), LFN)
    result = se.put(local_file(tmp_path, b"new", "new.root"), LFN, overwrite=True)
    assert (result.already_present, result.size) == (False, 3)
    assert read(se, LFN) == b"new"
    assert list(se.list_lfns()) == [LFN]


def test_temporary_name_is_never_visible(
    se: StorageElement, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until a put publishes its verified bytes, readers see no object, or the previous one whole."""
    seen: list[tuple[object, ...]] = []
    publish = se._backend.publish

    def spying(temporary: str, final: str) -> None:
        info = se.stat(LFN)
        seen.append(
            (info and info.size, info and read(se, LFN), list(se.list_lfns()), len(list(se.list_temporary())))
        )
        publish(temporary, final)

    monkeypatch.setattr(se._backend, "publish", spying)
    se.put(local_file(tmp_path, b"first version"), LFN)
    se.put(local_file(tmp_path, b"second", "second.root"), LFN, overwrite=True)
    assert seen == [(None, None, [], 1), (13, b"first version", [LFN], 1)]
    assert read(se, LFN) == b"second" and list(se.list_temporary()) == []


def test_local_file_is_only_read(se: StorageElement, tmp_path: Path) -> None:
    local = local_file(tmp_path, b"precious output")
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
    with pytest.raises(SourceMissing, match=r"absent\.root does not exist \(removed since the upload"):
        se.put(tmp_path / "absent.root", LFN)
    assert_clean(se, LFN)


def test_object_under_an_object_is_refused(se: StorageElement, tmp_path: Path) -> None:
    """On every store, object stores included, an LFN is a file or a directory, never both."""
    se.put(local_file(tmp_path, b"a file"), "/vo/x")
    with pytest.raises(StorageRefused):
        se.put(local_file(tmp_path, b"below it", "b.root"), "/vo/x/y")
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
    local = local_file(tmp_path, b"x" * (CHUNK_SIZE + 10))
    monkeypatch.setattr(
        local_source_module,
        "open",
        lambda path, mode: _FailingLocalFile(io.FileIO(path, mode)),
        raising=False,
    )
    with pytest.raises(StorageUnavailable) as caught:
        se.put(local, LFN)
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.EIO
    assert_clean(se, LFN)


def _append(path: Path) -> None:
    with path.open("ab") as writer:
        writer.write(b"the job was still writing")


def _rewrite_same_size(path: Path) -> None:
    # Same size, other bytes, and a modification time that surely moved (timestamps are coarse).
    status = path.stat()
    with path.open("r+b") as writer:
        writer.write(b"y" * 10)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


def _replace(path: Path) -> None:
    other = path.with_name("other")
    other.write_bytes(path.read_bytes())
    os.replace(other, path)


#: How a job's output file can change while it is uploaded: what is read is not the file that was checked.
CHANGES: dict[str, Callable[[Path], None]] = {
    "grown": _append,
    "truncated": lambda path: os.truncate(path, 10),
    "rewritten": _rewrite_same_size,
    "replaced": _replace,
    "removed": os.unlink,
}


@pytest.fixture(params=list(CHANGES))
def changing_file(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Path]:
    """A local file of two chunks that changes, one way per case, once its first chunk is read."""
    local = local_file(tmp_path, b"x" * (CHUNK_SIZE + 10))
    change_while_read(monkeypatch, local, lambda: CHANGES[request.param](local))
    return request.param, local


def test_a_local_file_that_changes_while_it_is_read_is_not_stored(
    se: StorageElement, changing_file: tuple[str, Path]
) -> None:
    change, local = changing_file
    with pytest.raises(SourceChanged, match="changed while it was read") as caught:
        se.put(local, LFN)
    assert caught.value.se == "se-a" and caught.value.lfn == LFN
    assert ("removed" in str(caught.value)) == (change == "removed")
    assert_clean(se, LFN)


def test_put_many_refuses_only_the_file_that_changed(
    se: StorageElement, changing_file: tuple[str, Path], tmp_path: Path
) -> None:
    _, local = changing_file
    steady = local_file(tmp_path, b"a small steady file", "steady.root")
    outcomes = se.put_many([PutItem(local, LFN), PutItem(steady, "/vo/steady.root")])
    assert isinstance(outcomes[0], SourceChanged)
    assert isinstance(outcomes[1], PutResult) and outcomes[1].size == len(b"a small steady file")
    assert list(se.list_lfns()) == ["/vo/steady.root"]
    assert list(se.list_temporary()) == []


def test_a_local_file_not_of_the_size_checked_is_refused_before_it_is_read(
    se: StorageElement, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = local_file(tmp_path, b"12345")
    monkeypatch.setattr(local_source_module, "open", _never_opened, raising=False)
    with pytest.raises(SourceChanged, match="holds 5 bytes, 4 when the upload checked it"):
        se.put(local, LFN, expected_size=4)
    (outcome,) = se.put_many([PutItem(local, LFN, expected_size=6)])
    assert isinstance(outcome, SourceChanged)
    assert_clean(se, LFN)


def _never_opened(path: str, mode: str) -> io.BufferedReader:
    raise AssertionError(f"{path} was opened")


def test_a_local_file_without_the_checksum_checked_is_not_stored(se: StorageElement, tmp_path: Path) -> None:
    content = b"event data " * 100
    local = local_file(tmp_path, content)
    right = digests(content, ADLER32)[ADLER32]
    wrong = digests(b"the file the upload checked", ADLER32)[ADLER32]
    with pytest.raises(SourceChanged, match=f"has ADLER32 {right}, {wrong} when the upload checked it"):
        se.put(local, LFN, expected_size=len(content), expected_checksum=wrong)
    assert_clean(se, LFN)
    put = se.put(local, LFN, expected_size=len(content), expected_checksum=right.upper())
    assert put.size == len(content) and not put.already_present
    # The same bytes already there are no excuse: the file is still not the one checked.
    with pytest.raises(SourceChanged):
        se.put(local, LFN, expected_checksum=wrong)
    (outcome,) = se.put_many([PutItem(local, LFN, expected_checksum=wrong)])
    assert isinstance(outcome, SourceChanged)
    assert read(se, LFN) == content


def test_glob_characters_in_lfn_are_literal(se: StorageElement, backend: Backend, tmp_path: Path) -> None:
    lfn = "/vo/run[1]/out*?.root" if backend.takes_question_marks else "/vo/run[1]/out*.root"
    se.put(local_file(tmp_path, b"globby"), lfn)
    se.put(local_file(tmp_path, b"other", "o.root"), "/vo/run1/outX.root")
    assert read(se, lfn) == b"globby"
    assert se.remove(lfn)
    assert list(se.list_lfns()) == ["/vo/run1/outX.root"]


@pytest.mark.parametrize("lfn", ["/vo/a b/100%.root", "/vo/#frag&x=1;y.root", "/vo/é/ü.root"])
def test_url_special_characters_in_lfn_are_literal(se: StorageElement, tmp_path: Path, lfn: str) -> None:
    se.put(local_file(tmp_path, b"special"), lfn)
    assert (read(se, lfn), list(se.list_lfns())) == (b"special", [lfn])
    assert se.remove(lfn) and list(se.list_lfns()) == []


@pytest.mark.parametrize("direction", ["from", "into"])
def test_copy_to_streams_a_verified_replica(backend: Backend, tmp_path: Path, direction: str) -> None:
    """A copy from this backend to a local disk, or into this backend from one, is a verified put."""
    local = make_local_se("file", tmp_path, "se-local")
    source, target = (
        (backend.make("se-src"), local) if direction == "from" else (local, backend.make("se-dst"))
    )
    content = b"replicate me " * 5000
    source.put(local_file(tmp_path, content), LFN)
    result = source.copy_to(target, LFN, checksum_types=(ADLER32, MD5))
    assert (result.se, result.pfn, result.already_present) == (target.name, target.pfn(LFN), False)
    assert result.checksums == digests(content, ADLER32, MD5)
    assert read(target, LFN) == content
    assert source.copy_to(target, LFN).already_present
    assert list(target.list_temporary()) == []


def test_copy_of_absent_replica_is_source_missing(se: StorageElement, tmp_path: Path) -> None:
    target = make_local_se("file", tmp_path, "se-dst")
    with pytest.raises(SourceMissing) as caught:
        se.copy_to(target, LFN)
    assert caught.value.se == "se-a"
    assert_clean(target, LFN)


def test_remove_is_idempotent(se: StorageElement, tmp_path: Path) -> None:
    se.put(local_file(tmp_path, b"bye"), LFN)
    assert se.remove(LFN) is True
    assert se.remove(LFN) is False
    assert se.stat(LFN) is None


def test_listing_separates_objects_from_crash_leftovers(se: StorageElement, tmp_path: Path) -> None:
    for lfn in ["/vo/b", "/vo/a/x", "/top"]:
        se.put(local_file(tmp_path, lfn.encode(), "f"), lfn)
    leftover = temporary_path(object_path(se.root, "/vo/a/crashed.root"))
    se.fs.pipe_file(leftover, b"half a file")
    assert list(se.list_lfns()) == ["/top", "/vo/a/x", "/vo/b"]
    assert list(se.list_temporary()) == [leftover.removeprefix(se.root.rstrip("/") + "/")]
    assert se.remove_temporary() == 1
    assert se.remove_temporary() == 0
    assert list(se.list_lfns()) == ["/top", "/vo/a/x", "/vo/b"]


def test_caller_errors_inside_open_read_are_not_mapped(se: StorageElement, tmp_path: Path) -> None:
    se.put(local_file(tmp_path, b"data"), LFN)
    with pytest.raises(KeyError), se.open_read(LFN):
        raise KeyError("the caller's own bug")


def test_open_read_of_absent_object_is_source_missing(se: StorageElement) -> None:
    with pytest.raises(SourceMissing), se.open_read(LFN):
        pass


@pytest.mark.parametrize("index", range(len(METHOD_IDS)), ids=METHOD_IDS)
@pytest.mark.parametrize("lfn", ["/vo/../../outside", "vo/x", "/vo/./x", "/vo\\..\\x", "/vo/x\x00"])
def test_every_method_refuses_lfns_leaving_the_root(
    se: StorageElement, tmp_path: Path, index: int, lfn: str
) -> None:
    other = make_local_se("file", tmp_path, "se-other")
    other.put(local_file(tmp_path, b"other"), "/outside")
    call = call_every_method(se, other, local_file(tmp_path, b"payload"))[index]
    with pytest.raises(InvalidInput):
        call(lfn)
    assert list(se.list_lfns()) == []


# Remote backends only: what a server can do that a local disk cannot.


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """Each remote backend's kind and (session) server."""
    return request.param, request.getfixturevalue(SERVERS[request.param])


#: A port where nothing listens (one for the whole module, so that S3 clients are built only once).
DEAD_PORT = free_port()


def _dead_url(kind: str) -> str:
    """A URL of ``kind`` on a port where nothing listens."""
    port = DEAD_PORT
    return {
        "root": f"root://127.0.0.1:{port}//se",
        "s3": "s3://failover/se",
        "webdav": f"dav://127.0.0.1:{port}/se",
    }[kind]


@pytest.mark.parametrize("index", range(len(METHOD_IDS)), ids=METHOD_IDS)
def test_unreachable_server_is_storage_unavailable(
    server: tuple[str, Any], tmp_path: Path, index: int
) -> None:
    """An SE whose server is down can be configured, and every call on it is StorageUnavailable."""
    kind, running = server
    options = running.options()
    if kind == "s3":
        # One attempt: the defaults (s3fs and botocore retries, ~2 s on a dead endpoint) are not under test.
        options.update(endpoint_url=f"http://127.0.0.1:{DEAD_PORT}", retries=1)
        options["config_kwargs"] = {"retries": {"max_attempts": 1}}
    se = storage_element("se-down", _dead_url(kind), options)
    other = make_local_se("file", tmp_path, "se-other")
    other.put(local_file(tmp_path, b"other"), LFN)
    call = call_every_method(se, other, local_file(tmp_path, b"payload"))[index]
    if METHOD_IDS[index] == "pfn":
        assert str(call(LFN)).endswith("/se" + LFN)  # a name, not a call to the server
        return
    with pytest.raises(StorageUnavailable) as caught:
        call(LFN)
    assert caught.value.se == "se-down"


@pytest.mark.parametrize(
    "url",
    [
        "davs://alice:s3cret@dav.example.org/vo",
        "s3://key:s3cret@bucket/vo",
        "simplecache::dav://a:s3cret@h/vo",
    ],
)
def test_a_url_holding_a_password_is_refused_without_showing_it(url: str) -> None:
    """It would start every PFN: the catalogs, the journal and every report would hold the password."""
    with pytest.raises(InvalidInput, match=r"holds a password.*as the SE's options") as caught:
        storage_element("SE-A", url)
    assert "s3cret" not in str(caught.value) and ":***@" in str(caught.value)


def test_a_url_with_a_user_name_only_is_taken() -> None:
    assert storage_element("SE-A", "davs://alice@dav.example.org/vo").url == "davs://alice@dav.example.org/vo"


@pytest.mark.parametrize("kind", ["s3", "webdav"])
def test_wrong_credentials_are_permission_denied(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> None:
    running = request.getfixturevalue(kind)
    options = running.options(**({"secret": "wrong"} if kind == "s3" else {"password": "wrong"}))
    se = storage_element("se-locked", running.url(unique_root("se-locked")), options)
    with pytest.raises(PermissionDenied) as caught:
        se.put(local_file(tmp_path, b"payload"), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-locked", LFN)


def test_xrootd_refuses_question_marks(xrootd: Any, tmp_path: Path) -> None:
    """XRootD reads what follows '?' as opaque data: such a name is the SE's refusal, not a wrong file."""
    se = storage_element("se-x", xrootd.url(unique_root("se-x")), xrootd.options())
    with pytest.raises(StorageRefused):
        se.put(local_file(tmp_path, b"payload"), "/vo/what?.root")
    assert list(se.list_lfns()) == []


def test_checksum_follows_the_bytes_not_a_stale_record(server: tuple[str, Any], tmp_path: Path) -> None:
    """An object rewritten behind the SE's back reports the checksum of its new bytes, never the old one."""
    kind, running = server
    se = storage_element("se-r", running.url(unique_root("se-r")), running.options())
    se.put(local_file(tmp_path, b"original bytes"), LFN)
    assert se.checksum(LFN, ADLER32) == digests(b"original bytes", ADLER32)[ADLER32]
    if kind == "root":
        # XRootD keeps a computed checksum with the file's mtime, whose resolution is one second: a file
        # rewritten in place within that second still reports the old one (puts never rewrite in place).
        time.sleep(1.05)
    se.fs.pipe_file(object_path(se.root, LFN), b"damaged! bytes")
    assert se.checksum(LFN, ADLER32) == digests(b"damaged! bytes", ADLER32)[ADLER32]


def _flip_first_byte(data: Any) -> bytes:
    chunk = bytearray(data)
    chunk[0] ^= 0xFF
    return bytes(chunk)


def _damage_on_the_wire(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the client send other bytes than the put accounted for, below failover's own checksums."""
    if kind == "root":
        import failover.storage.xrootd_fs as xrootd_module

        write = xrootd_module.XRootDWriter.write
        monkeypatch.setattr(
            xrootd_module.XRootDWriter, "write", lambda self, data: write(self, _flip_first_byte(data))
        )
    elif kind == "s3":
        import s3fs.core

        s3_write = s3fs.core.S3File.write
        monkeypatch.setattr(
            s3fs.core.S3File, "write", lambda self, data: s3_write(self, _flip_first_byte(data))
        )
    else:
        import failover.storage.webdav as webdav_module

        put = webdav_module._Upload._put
        monkeypatch.setattr(
            webdav_module._Upload, "_put", lambda self, chunk: put(self, chunk and _flip_first_byte(chunk))
        )


def test_bytes_damaged_on_the_way_are_caught_before_publication(
    server: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Same size, other bytes: the server's adler32 (XRootD), the server's ETag (S3) or the read-back
    (WebDAV) differs from what was sent, and nothing is published.
    """
    kind, running = server
    se = storage_element("se-w", running.url(unique_root("se-w")), running.options())
    _damage_on_the_wire(kind, monkeypatch)
    with pytest.raises(TransferCorrupted) as caught:
        se.put(local_file(tmp_path, b"y" * (CHUNK_SIZE + 10)), LFN)
    assert (caught.value.se, caught.value.lfn) == ("se-w", LFN)
    monkeypatch.undo()
    assert_clean(se, LFN)


def test_xrootd_server_dying_mid_put_is_unavailable_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Writes in flight fail with the connection: the put ends (no hang) and publishes nothing. The server
    being down, the temporary cannot be removed then: it is left for recovery's ``remove_temporary``.
    """
    import failover.storage.xrootd_fs as module

    with xrootd_server() as server:
        se = storage_element("se-x", server.url("se-x"), server.options())
        write = module.XRootDWriter.write

        def dying(self: Any, data: Any) -> int:
            written = write(self, data)
            server.stop()
            return written

        monkeypatch.setattr(module.XRootDWriter, "write", dying)
        with pytest.raises(StorageUnavailable):
            se.put(local_file(tmp_path, b"z" * (3 * CHUNK_SIZE)), LFN)
        monkeypatch.undo()
        server.start()
        time.sleep(1.1)  # the client tries a failed server again after its StreamErrorWindow
        assert (se.exists(LFN), len(list(se.list_temporary()))) == (False, 1)
        assert se.remove_temporary() == 1
        assert_clean(se, LFN)


def test_s3_multipart_put_is_verified_by_its_etag_without_read_back(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ETag the server computes for a multipart upload is the one predicted from the parts sent."""
    from failover.storage.s3 import PART_SIZE

    se = storage_element("se-m", s3.url(unique_root("se-m")), s3.options())
    opened = se.fs.open

    def no_read_back(path: str, mode: str = "rb", **options: Any) -> Any:
        assert mode != "rb", f"{path} was read back"
        return opened(path, mode, **options)

    monkeypatch.setattr(se.fs, "open", no_read_back)
    content = b"m" * (PART_SIZE + 10)
    se.put(local_file(tmp_path, content), LFN)
    info = se.stat(LFN)
    assert info is not None and info.checksums == {ADLER32: digests(content, ADLER32)[ADLER32]}


def test_s3_etag_of_another_rule_falls_back_to_a_read_back(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose ETags follow another rule is not a corruption: the bytes read back decide."""
    import failover.storage.s3 as module

    monkeypatch.setattr(module._SentStream, "etag", property(lambda self: "0" * 32))
    se = storage_element("se-e", s3.url(unique_root("se-e")), s3.options())
    result = se.put(local_file(tmp_path, b"sound bytes"), LFN)
    assert (result.already_present, read(se, LFN)) == (False, b"sound bytes")
