"""LFN to object path: refusal of anything that could leave the root, temporary names, symlink checks."""

from __future__ import annotations

import doctest
import os
import posixpath
from pathlib import Path

import pytest
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.errors import InvalidInput
from failover.storage import LocalBackend, StorageElement, overlap
from failover.storage.element import plain_local_root
from failover.storage.overlap import roots_overlap
from failover.storage.paths import (
    check_lfn,
    inside_real_root,
    is_temporary,
    lfn_from_path,
    local_url,
    object_path,
    relative_path,
    temporary_path,
)
from failover.workspace import open_workspace

ROOTS = ["/srv/se-a", "/srv/se-a/", "/se-a", "", "bucket/prefix"]
TEMPORARY_NAME = ".x.root.failover-tmp-" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    "lfn", ["/x", "/vo/user/a/alice/run42/out.root", "/vo/.hidden", "/vo/...", "/vo/a b/ü/[1]*?.root"]
)
def test_valid_lfn_is_accepted_unchanged(lfn: str) -> None:
    assert check_lfn(lfn) == lfn


@pytest.mark.parametrize(
    "lfn",
    [
        "",
        "vo/x",
        "./x",
        "/",
        "//x",
        "/vo//x",
        "/vo/x/",
        "/.",
        "/..",
        "/vo/./x",
        "/vo/../x",
        "/vo/../../etc/passwd",
        "/vo\\..\\x",
        "/vo/x\x00.root",
        "/vo/x\n.root",
        "/vo/x\x7f",
        "/vo/x\x85",
        "/vo/x\ud800",
        "/vo/" + TEMPORARY_NAME,
    ],
)
def test_lfn_that_could_leave_the_root_is_refused(lfn: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_lfn(lfn)
    assert repr(lfn) in str(caught.value)
    assert caught.value.lfn == lfn


@pytest.mark.parametrize("lfn", [None, b"/vo/x", 42])
def test_non_string_lfn_is_refused(lfn: object) -> None:
    with pytest.raises(InvalidInput):
        check_lfn(lfn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("root", "expected"), [("/srv/se-a", "/srv/se-a/vo/x"), ("/", "/vo/x"), ("", "/vo/x")]
)
def test_object_path_is_root_followed_by_lfn(root: str, expected: str) -> None:
    assert object_path(root, "/vo/x") == expected
    assert lfn_from_path(root, expected) == "/vo/x"
    assert relative_path(root, expected) == "vo/x"


def _assert_confined(root: str, lfn: str) -> None:
    try:
        path = object_path(root, lfn)
    except InvalidInput:
        return
    anchor = "/" + root.strip("/")
    normalized = posixpath.normpath("/" + path.lstrip("/"))
    assert normalized.startswith(anchor.rstrip("/") + "/")
    assert normalized != anchor
    assert lfn_from_path(root, path) == lfn


@settings(derandomize=True, max_examples=500)
@given(root=st.sampled_from(ROOTS), lfn=st.text())
def test_no_accepted_lfn_maps_outside_the_root(root: str, lfn: str) -> None:
    _assert_confined(root, lfn)


_SEGMENTS = st.sampled_from(["", ".", "..", "...", "a", ".a", "a b", "\\", "..\\..", "x\x00", "\t", "é", "*"])


@settings(derandomize=True, max_examples=500)
@given(
    root=st.sampled_from(ROOTS),
    segments=st.lists(_SEGMENTS, max_size=6),
    absolute=st.booleans(),
)
def test_no_accepted_path_like_lfn_maps_outside_the_root(
    root: str, segments: list[str], absolute: bool
) -> None:
    """Path-shaped LFNs made of hostile segments are either refused or stay below the root."""
    _assert_confined(root, ("/" if absolute else "") + "/".join(segments))


def test_temporary_path_is_hidden_unique_and_recognised() -> None:
    first = temporary_path("/srv/se-a/vo/out.root")
    second = temporary_path("/srv/se-a/vo/out.root")
    assert first != second
    assert posixpath.dirname(first) == "/srv/se-a/vo"
    assert posixpath.basename(first).startswith(".out.root.failover-tmp-")
    assert is_temporary(first)
    assert is_temporary(second)


def test_temporary_name_stays_within_the_name_limit_for_long_basenames() -> None:
    temporary = temporary_path("/se/" + "x" * 255)
    assert len(posixpath.basename(temporary).encode()) <= 255
    assert is_temporary(temporary)


@pytest.mark.parametrize(
    "name",
    [
        "out.root",
        ".out.root",
        "out.root.failover-tmp-" + "a" * 32,
        ".out.failover-tmp-xyz",
        ".o.failover-tmp-" + "A" * 32,
    ],
)
def test_ordinary_names_are_not_temporary(name: str) -> None:
    assert not is_temporary(name)


def test_real_root_accepts_plain_and_internal_link_paths(tmp_path: Path) -> None:
    root = tmp_path / "se"
    (root / "vo").mkdir(parents=True)
    (root / "alias").symlink_to(root / "vo")
    assert inside_real_root(str(root), str(root / "vo" / "missing" / "x"))
    assert inside_real_root(str(root), str(root / "alias" / "x"))


def test_real_root_refuses_directory_link_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "se", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "vo").symlink_to(outside)
    assert not inside_real_root(str(root), str(root / "vo" / "x"))
    assert not inside_real_root(str(root), str(root / "vo" / "deeper" / "x"))


def test_real_root_refuses_file_link_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "se"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    (root / "x").symlink_to(tmp_path / "secret")
    assert not inside_real_root(str(root), str(root / "x"))


def test_real_root_follows_a_linked_root(tmp_path: Path) -> None:
    """A root that is itself a link (``/srv/se-a -> /data/se-a``) is compared by its real path."""
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "se")
    assert inside_real_root(str(tmp_path / "se"), str(tmp_path / "se" / "x"))


LOCAL_PATHS = st.text(alphabet="/ab.-_ %~:é", max_size=24)


@settings(max_examples=400, deadline=None)
@given(path=LOCAL_PATHS, scheme=st.sampled_from(["", "file://", "file:", "local://", "file:///"]))
def test_plain_local_roots_are_those_fsspec_gives(path: str, scheme: str) -> None:
    """The root a local SE takes without fsspec is fsspec's own; any other URL is left to fsspec."""
    url = scheme + path
    ours = plain_local_root(url)
    if ours is not None:
        assert ours == url_to_fs(url)[1]
        assert LocalBackend().url_of(ours + "/x") == LocalFileSystem().unstrip_protocol(ours + "/x")
    else:
        path = url.removeprefix("file://")
        assert not (path.startswith("/") and "::" not in url and "://" not in path)


def test_a_path_with_a_protocol_separator_is_left_to_fsspec() -> None:
    """fsspec reads ``/_://`` as the protocol ``/_`` (found by the property test above)."""
    assert plain_local_root("/_://") is None
    assert plain_local_root("file:///data/x://y") is None
    with pytest.raises(InvalidInput, match="unknown storage protocol '/_'"):
        StorageElement("SE-A", "/_://")


def test_a_local_se_made_without_fsspec_has_fsspecs_root_and_filesystem(tmp_path: Path) -> None:
    url = (tmp_path / "se-a").as_uri() + "/"
    se = StorageElement("SE-A", url)
    assert se.root == url_to_fs(url)[1] == str(tmp_path / "se-a")
    assert se.fs is LocalFileSystem()  # made on first use, fsspec's cached instance
    assert se.pfn("/vo/x.root") == f"file://{tmp_path}/se-a/vo/x.root"


def test_a_workspace_under_a_path_with_a_space_or_an_accent_keeps_its_replicas_inside(tmp_path: Path) -> None:
    home = tmp_path / "run 42 josé"
    env = open_workspace(home)
    local = tmp_path / "out.root"
    local.write_bytes(b"hits")
    put = env.se("LOCAL-DISK").put(local, "/vo/out.root")
    assert put.pfn == f"file://{home}/se/LOCAL-DISK/vo/out.root"
    assert (home / "se" / "LOCAL-DISK" / "vo" / "out.root").read_bytes() == b"hits"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.root", "run 42 josé"]
    env.close()


def test_a_local_url_keeps_the_percent_encoded_directory_an_earlier_version_made(tmp_path: Path) -> None:
    """Replicas stored there before the fix stay found, until the right directory exists."""
    right = tmp_path / "run 42" / "se"
    twin = Path(right.as_uri().removeprefix("file://"))
    assert local_url(right) == f"file://{right}"
    twin.mkdir(parents=True)
    assert local_url(right) == f"file://{twin}"
    right.mkdir(parents=True)
    assert local_url(right) == f"file://{right}"
    assert local_url(tmp_path / "plain") == f"file://{tmp_path}/plain"


def test_the_overlap_doctests_pass() -> None:
    assert doctest.testmod(overlap, raise_on_error=True).attempted > 0


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("/srv/se", "file:///srv/se/", "the same as"),
        ("/srv/se", "/srv/se/../se/tmp", "inside"),
        ("/srv/se/tmp", "/srv", "around"),
        ("/srv/se", "/srv/se-b", None),
        ("/srv/se", "root://eos.example.org//srv/se", None),
        ("s3://bucket/vo", "s3://BUCKET/vo/tmp", "inside"),
        ("s3://bucket/vo", "s3://other/vo", None),
        ("davs://dav.example.org:443/vo", "davs://dav.example.org:8443/vo", None),
        ("davs://dav.example.org/vo", "davs://alice@dav.example.org:443/vo", "the same as"),
        ("root://eos.example.org//eos/vo", "root://eos.example.org:1094//eos/vo/tmp", "inside"),
        ("root://eos.example.org:1095//eos/vo", "root://eos.example.org//eos/vo", None),
        ("root://eos:port//eos/vo", "root://eos:port//eos/vo/tmp", "inside"),
    ],
)
def test_roots_overlap(first: str, second: str, overlap: str | None) -> None:
    assert roots_overlap(first, second) == overlap
