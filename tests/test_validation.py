"""Input validation (SPEC §1): each rule, each alias, and the order in which the rules are checked."""

from __future__ import annotations

import doctest
import errno
import os
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import failover.validation
from failover.checksum import ChecksumType
from failover.errors import ChecksumMismatch, InvalidInput, NameTooLong, UnknownCatalog, UnknownStorageElement
from failover.validation import (
    CatalogChoice,
    UploadInput,
    namespace,
    new_guid,
    parse_name_list,
    parse_size,
    select_catalogs,
    validate_checksum,
    validate_checksum_type,
    validate_guid,
    validate_lfn,
    validate_local_file,
    validate_ses,
    validate_upload,
)
from failover.validation import paths as validation_paths

CONTENT = b"hello"
ADLER32 = "062c0215"
MD5 = "5d41402abc4b2a76b9719d911017c592"
SHA1 = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "0F8FAD5B-D9CB-469F-A165-70867728950E"
FIXED_GUID = "11111111-2222-4333-8444-555555555555"
CONFIGURED_SES = ("SE-A", "SE-B", "SE-C")
CATALOGS = (
    CatalogChoice("FileCatalog", master=True),
    CatalogChoice("LcgFileCatalog", master=False),
    CatalogChoice("BookkeepingDB", master=False),
)
GUID_SHAPE = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


def _local_file(tmp_path: Path, data: bytes = CONTENT) -> Path:
    path = tmp_path / "out.root"
    path.write_bytes(data)
    return path


def _upload(tmp_path: Path, **overrides: Any) -> UploadInput:
    """Validate a good upload of ``CONTENT``, with ``overrides`` replacing some of its arguments."""
    if "local_path" not in overrides:
        overrides["local_path"] = _local_file(tmp_path)
    arguments: dict[str, Any] = {
        "lfn": LFN,
        "file_meta": {},
        "ses": ["SE-A"],
        "configured_ses": CONFIGURED_SES,
        "catalogs": None,
        "configured_catalogs": CATALOGS,
        "guid_factory": lambda: FIXED_GUID,
    }
    arguments.update(overrides)
    return validate_upload(**arguments)


@pytest.mark.parametrize(
    "lfn", [LFN, "/a", "/vo/with space/file name.root", "/vo/ünïcode/é.root", "/vo/...x"]
)
def test_valid_lfn_is_returned_unchanged(lfn: str) -> None:
    assert validate_lfn(lfn) == lfn


@pytest.mark.parametrize(
    "lfn",
    [
        "vo/user/out.root",
        "./out.root",
        "",
        "/",
        "//vo/out.root",
        "/vo//out.root",
        "/vo/out.root/",
        "/vo/./x",
        "/vo/../x",
        "/vo/x/..",
        "/vo/x/.",
        " /vo/out.root",
    ],
)
def test_lfn_must_be_absolute_without_empty_dot_or_dotdot_segments(lfn: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_lfn(lfn)
    assert type(caught.value) is InvalidInput


@pytest.mark.parametrize("char", ["\n", "\t", "\r", "\x00", "\x1b", "\x7f", "\x85", "\ud800"])
def test_lfn_with_a_control_character_is_invalid(char: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_lfn(f"/vo/user/out{char}.root")
    assert type(caught.value) is InvalidInput
    assert caught.value.lfn == f"/vo/user/out{char}.root"


@pytest.mark.parametrize("lfn", [None, b"/vo/out.root", 42, Path("/vo/out.root")])
def test_lfn_that_is_not_a_string_is_invalid(lfn: Any) -> None:
    with pytest.raises(InvalidInput):
        validate_lfn(lfn)


def test_lfn_basename_over_128_is_name_too_long_errno_36() -> None:
    lfn = "/vo/user/" + "a" * 129
    with pytest.raises(NameTooLong) as caught:
        validate_lfn(lfn)
    assert caught.value.dirac_errno == errno.ENAMETOOLONG == 36
    assert caught.value.lfn == lfn


@pytest.mark.parametrize("basename", ["a" * 128, "é" * 128])
def test_lfn_basename_of_128_characters_is_accepted_whatever_its_bytes(basename: str) -> None:
    assert validate_lfn("/vo/" + basename) == "/vo/" + basename


def test_lfn_over_1024_characters_is_name_too_long_errno_36() -> None:
    lfn = "/" + "/".join(["d" * 99] * 10) + "/" + "f" * 24
    assert len(lfn) == 1025
    with pytest.raises(NameTooLong) as caught:
        validate_lfn(lfn)
    assert caught.value.dirac_errno == 36
    assert validate_lfn(lfn[:-1]) == lfn[:-1]


_GOOD_SEGMENTS = st.text(alphabet="ab.-_ é", min_size=1, max_size=6)
# Good segments are weighted up so that enough candidates pass for the property to say something.
_SEGMENTS = st.one_of(st.sampled_from(["", ".", "..", "a\n", "\x00"]), *[_GOOD_SEGMENTS] * 8)
_LFN_CANDIDATES = st.one_of(
    st.text(max_size=30),
    st.lists(_SEGMENTS, min_size=1, max_size=6).map(lambda s: "/" + "/".join(s)),
)


@settings(derandomize=True, max_examples=500)
@given(_LFN_CANDIDATES)
def test_any_accepted_lfn_starts_with_slash_and_has_no_dot_or_empty_segments(candidate: str) -> None:
    try:
        accepted = validate_lfn(candidate)
    except InvalidInput:
        return
    assert accepted == candidate
    assert accepted.startswith("/")
    assert not {"", ".", ".."} & set(accepted.split("/")[1:])
    assert not any(unicodedata.category(char) == "Cc" for char in accepted)


@settings(derandomize=True)
@given(st.lists(st.text(alphabet="abcXYZ019_-.é", min_size=1, max_size=20), min_size=1, max_size=8))
def test_lfn_made_of_ordinary_segments_is_accepted(segments: list[str]) -> None:
    segments = [s for s in segments if s not in (".", "..")] or ["x"]
    lfn = "/" + "/".join(segments)
    assert validate_lfn(lfn) == lfn


def test_local_file_returns_absolute_path_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _local_file(tmp_path, b"12345678")
    monkeypatch.chdir(tmp_path)
    assert validate_local_file("out.root") == (tmp_path / "out.root", 8)


def test_local_file_symlink_is_followed_for_checks_but_kept_in_the_path(tmp_path: Path) -> None:
    link = tmp_path / "link.root"
    link.symlink_to(_local_file(tmp_path))
    assert validate_local_file(link) == (link, len(CONTENT))


@pytest.mark.parametrize("name", ["missing.root", "dangling-link", "out.root/below-a-file"])
def test_local_file_that_does_not_exist_is_invalid(tmp_path: Path, name: str) -> None:
    _local_file(tmp_path)
    (tmp_path / "dangling-link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidInput, match="does not exist"):
        validate_local_file(tmp_path / name)


def test_local_file_that_is_a_directory_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="directory"):
        validate_local_file(tmp_path)


def test_local_file_that_is_a_fifo_is_invalid_and_not_opened(tmp_path: Path) -> None:
    """Opening a FIFO would block, so a non-regular file is refused before any open."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="not a regular file"):
        validate_local_file(fifo)


@pytest.mark.parametrize(
    ("char", "reason"),
    [("\udce9", "'\\udce9' stands for the byte 0xe9 of a name not in UTF-8"), ("\ud800", "lone surrogate")],
)
def test_lfn_that_is_not_valid_unicode_says_so(char: str, reason: str) -> None:
    """A file name in Latin-1 (``café`` as bytes) reaches Python with a stand-in for its byte 0xe9."""
    with pytest.raises(InvalidInput, match="is not valid Unicode") as caught:
        validate_lfn(f"/vo/user/caf{char}.root")
    assert reason in str(caught.value)


def test_local_file_whose_name_is_not_utf8_is_invalid_not_a_crash(tmp_path: Path) -> None:
    """The upload's record is UTF-8 text: before, the file passed and the record's insert raised."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9.root"
    with open(raw, "wb") as written:
        written.write(b"events")
    with pytest.raises(InvalidInput, match=r"file name is not valid Unicode: b'.*caf\\xe9.root'.*byte 0xe9"):
        validate_local_file(os.fsdecode(raw))


def test_local_file_of_zero_size_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="zero size"):
        validate_local_file(_local_file(tmp_path, b""))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_local_file_without_read_permission_is_invalid(tmp_path: Path) -> None:
    path = _local_file(tmp_path)
    path.chmod(0)
    with pytest.raises(InvalidInput, match="not readable"):
        validate_local_file(path)


def test_local_file_that_cannot_be_opened_for_reading_is_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for a permission test when running as root, which reads any file."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(validation_paths, "open", refuse, raising=False)
    with pytest.raises(InvalidInput, match="not readable"):
        validate_local_file(_local_file(tmp_path))


@pytest.mark.parametrize("path", ["", None, 42])
def test_local_file_path_must_be_given(path: Any) -> None:
    with pytest.raises(InvalidInput):
        validate_local_file(path)


@pytest.mark.parametrize("guid", [None, "", "   "])
def test_absent_guid_is_generated_by_the_factory(guid: str | None) -> None:
    assert validate_guid(guid, lambda: FIXED_GUID.lower()) == (FIXED_GUID, True)


def test_generated_guid_is_an_upper_case_uuid4() -> None:
    guid, generated = validate_guid(None)
    assert generated
    assert GUID_SHAPE.fullmatch(guid)
    assert uuid.UUID(guid).version == 4
    assert new_guid() != new_guid()


@pytest.mark.parametrize("given", [GUID, GUID.lower(), f"  {GUID.lower()} ", GUID + "\n"])
def test_given_guid_is_stripped_and_upper_cased(given: str) -> None:
    assert validate_guid(given) == (GUID, False)


@pytest.mark.parametrize(
    "guid",
    [
        "1234",
        "not-a-guid",
        GUID.replace("-", ""),
        "{" + GUID + "}",
        GUID[:-1] + "G",
        GUID + "0",
        GUID + "\n0",
        GUID.replace("-", "_"),
        42,
        ["x"],
    ],
)
def test_malformed_guid_is_invalid(guid: Any) -> None:
    with pytest.raises(InvalidInput):
        validate_guid(guid)


def test_malformed_generated_guid_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        validate_guid(None, lambda: "not-a-guid")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("AD", ChecksumType.ADLER32),
        ("ad", ChecksumType.ADLER32),
        ("Adler32", ChecksumType.ADLER32),
        ("ADLER32", ChecksumType.ADLER32),
        ("adler32", ChecksumType.ADLER32),
        (" Adler32 ", ChecksumType.ADLER32),
        ("MD5", ChecksumType.MD5),
        ("md5", ChecksumType.MD5),
        ("SHA1", ChecksumType.SHA1),
        ("sha1", ChecksumType.SHA1),
        (ChecksumType.MD5, ChecksumType.MD5),
    ],
)
def test_checksum_type_aliases(name: str, kind: ChecksumType) -> None:
    assert validate_checksum_type(name) is kind


@pytest.mark.parametrize(
    ("value", "default", "kind"),
    [
        (None, "ADLER32", ChecksumType.ADLER32),
        ("", "MD5", ChecksumType.MD5),
        (None, None, ChecksumType.ADLER32),
        ("  ", "sha1", ChecksumType.SHA1),
        (None, ChecksumType.SHA1, ChecksumType.SHA1),
        ("MD5", None, ChecksumType.MD5),
    ],
)
def test_absent_checksum_type_means_the_default_and_none_default_means_adler32(
    value: str | None, default: str | ChecksumType | None, kind: ChecksumType
) -> None:
    assert validate_checksum_type(value, default) is kind


@pytest.mark.parametrize(
    ("value", "default"), [("CRC32", "ADLER32"), ("SHA256", None), (5, None), (None, "CRC")]
)
def test_unsupported_checksum_type_is_invalid(value: Any, default: str | None) -> None:
    with pytest.raises(InvalidInput):
        validate_checksum_type(value, default)


@pytest.mark.parametrize(
    ("kind", "supplied", "canonical"),
    [
        (ChecksumType.ADLER32, ADLER32, ADLER32),
        (ChecksumType.ADLER32, ADLER32.upper(), ADLER32),
        (ChecksumType.ADLER32, "0x" + ADLER32, ADLER32),
        (ChecksumType.ADLER32, "0X62C0215", ADLER32),
        (ChecksumType.ADLER32, "62c0215", ADLER32),
        (ChecksumType.ADLER32, "00" + ADLER32, ADLER32),
        (ChecksumType.MD5, MD5, MD5),
        (ChecksumType.MD5, MD5.upper(), MD5),
        (ChecksumType.SHA1, SHA1, SHA1),
        (ChecksumType.SHA1, SHA1.upper(), SHA1),
    ],
)
def test_matching_checksum_is_accepted_tolerantly_and_returned_canonical(
    tmp_path: Path, kind: ChecksumType, supplied: str, canonical: str
) -> None:
    assert validate_checksum(supplied, _local_file(tmp_path), kind) == canonical


@pytest.mark.parametrize("supplied", [None, "", "  "])
def test_absent_checksum_is_not_verified(tmp_path: Path, supplied: str | None) -> None:
    assert validate_checksum(supplied, tmp_path / "never-read", ChecksumType.ADLER32) is None


@pytest.mark.parametrize(
    ("kind", "supplied"),
    [(ChecksumType.ADLER32, "062c0216"), (ChecksumType.MD5, "0" * 32), (ChecksumType.SHA1, "f" * 40)],
)
def test_checksum_differing_from_the_local_file_is_a_mismatch(
    tmp_path: Path, kind: ChecksumType, supplied: str
) -> None:
    with pytest.raises(ChecksumMismatch):
        validate_checksum(supplied, _local_file(tmp_path), kind)


@pytest.mark.parametrize(
    ("kind", "supplied"),
    [
        (ChecksumType.ADLER32, "xyz"),
        (ChecksumType.ADLER32, "123456789"),
        (ChecksumType.ADLER32, MD5),
        (ChecksumType.MD5, ADLER32),
        (ChecksumType.SHA1, MD5),
        (ChecksumType.ADLER32, 0x062C0215),
    ],
)
def test_malformed_checksum_is_invalid_not_a_mismatch(
    tmp_path: Path, kind: ChecksumType, supplied: Any
) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_checksum(supplied, _local_file(tmp_path), kind)
    assert type(caught.value) is InvalidInput


@pytest.mark.parametrize(
    ("value", "size"), [(None, 0), ("", 0), (0, 0), ("0", 0), (5, 5), ("5", 5), (" 5 ", 5), (5.0, 5)]
)
def test_size_accepts_ints_and_int_like_strings_zero_meaning_unknown(value: Any, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [-1, "-1", "abc", "5.5", 5.5, True, [5], "1_000", "0x10"])
def test_negative_or_non_numeric_size_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_size(value)


@pytest.mark.parametrize("size", [0, "0", None, "", len(CONTENT), str(len(CONTENT))])
def test_upload_accepts_unknown_or_matching_size(tmp_path: Path, size: Any) -> None:
    assert _upload(tmp_path, file_meta={"Size": size}).size == len(CONTENT)


@pytest.mark.parametrize("size", [len(CONTENT) + 1, "1"])
def test_upload_size_differing_from_the_local_file_is_a_mismatch(tmp_path: Path, size: Any) -> None:
    with pytest.raises(ChecksumMismatch):
        _upload(tmp_path, file_meta={"Size": size})


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (None, []),
        ("", []),
        ("a", ["a"]),
        ("a, b,,c", ["a", "b", "c"]),
        (["a ", " b"], ["a", "b"]),
        (("b", "a", "b"), ["b", "a"]),
        (["a,b", "c, a"], ["a", "b", "c"]),
        ([" ", ""], []),
        (iter(["x"]), ["x"]),
    ],
)
def test_parse_name_list_strips_splits_drops_empties_and_dedups_keeping_first(
    value: Any, names: list[str]
) -> None:
    assert parse_name_list(value) == names


@pytest.mark.parametrize("value", [42, b"SE-A", ["SE-A", 3], [None]])
def test_parse_name_list_refuses_what_is_not_names(value: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_name_list(value)


@pytest.mark.parametrize(
    ("ses", "expected"),
    [("SE-A", ("SE-A",)), (" SE-B , SE-A ", ("SE-B", "SE-A")), (["SE-C", "SE-A", "SE-C"], ("SE-C", "SE-A"))],
)
def test_se_names_are_stripped_split_and_keep_their_order(ses: Any, expected: tuple[str, ...]) -> None:
    assert validate_ses(ses, CONFIGURED_SES) == expected


def test_unknown_se_is_an_error_naming_it() -> None:
    with pytest.raises(UnknownStorageElement) as caught:
        validate_ses(["SE-A", " SE-X "], CONFIGURED_SES)
    assert caught.value.se == "SE-X"


@pytest.mark.parametrize("ses", [None, "", [], " , "])
def test_empty_se_list_is_not_an_input_error(ses: Any) -> None:
    """The caller reports an empty list as a total failure (SPEC §2), not as invalid input."""
    assert validate_ses(ses, CONFIGURED_SES) == ()


def test_configured_se_names_are_stripped_too() -> None:
    assert validate_ses("SE-A", [" SE-A "]) == ("SE-A",)


@pytest.mark.parametrize("requested", [None, "", [], " , "])
def test_no_catalog_requested_means_all_configured_in_configured_order(requested: Any) -> None:
    assert select_catalogs(requested, CATALOGS, master_only=False) == (
        "FileCatalog",
        "LcgFileCatalog",
        "BookkeepingDB",
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("LcgFileCatalog", ("LcgFileCatalog",)),
        (["BookkeepingDB", "FileCatalog"], ("BookkeepingDB", "FileCatalog")),
        (" LcgFileCatalog, FileCatalog ,LcgFileCatalog", ("LcgFileCatalog", "FileCatalog")),
    ],
)
def test_requested_catalogs_are_deduplicated_in_first_appearance_order(requested: Any, expected: Any) -> None:
    assert select_catalogs(requested, CATALOGS, master_only=False) == expected


def test_unknown_catalog_is_an_error_naming_it() -> None:
    with pytest.raises(UnknownCatalog) as caught:
        select_catalogs("FileCatalog, Nope", CATALOGS, master_only=False)
    assert caught.value.catalog == "Nope"


@pytest.mark.parametrize("requested", [None, "LcgFileCatalog", ["BookkeepingDB", "LcgFileCatalog"]])
def test_master_only_replaces_the_selection_with_the_master_catalogs(requested: Any) -> None:
    assert select_catalogs(requested, CATALOGS, master_only=True) == ("FileCatalog",)


def test_master_only_keeps_every_master_in_configured_order() -> None:
    configured = (CatalogChoice("B", True), CatalogChoice("C", False), CatalogChoice("A", True))
    assert select_catalogs(None, configured, master_only=True) == ("B", "A")


def test_master_only_still_refuses_an_unknown_requested_catalog() -> None:
    with pytest.raises(UnknownCatalog) as caught:
        select_catalogs("Nope", CATALOGS, master_only=True)
    assert caught.value.catalog == "Nope"


def test_master_only_without_a_master_catalog_is_an_error() -> None:
    configured = [CatalogChoice("LcgFileCatalog", master=False)]
    with pytest.raises(UnknownCatalog) as caught:
        select_catalogs(None, configured, master_only=True)
    assert caught.value.catalog is None
    assert select_catalogs(None, configured, master_only=False) == ("LcgFileCatalog",)


def test_no_catalog_configured_is_an_error() -> None:
    with pytest.raises(UnknownCatalog):
        select_catalogs(None, [], master_only=False)


def test_valid_upload_is_returned_in_canonical_form(tmp_path: Path) -> None:
    meta = {"GUID": GUID.lower(), "Checksum": "0X62C0215", "ChecksumType": "Adler32", "Size": "5"}
    checked = _upload(tmp_path, file_meta=meta, ses=" SE-B, SE-A,SE-B", catalogs="LcgFileCatalog")
    assert checked == UploadInput(
        lfn=LFN,
        local_path=tmp_path / "out.root",
        size=len(CONTENT),
        checksum_type=ChecksumType.ADLER32,
        checksum=ADLER32,
        guid=GUID,
        guid_generated=False,
        ses=("SE-B", "SE-A"),
        catalogs=("LcgFileCatalog",),
        metadata=meta,
    )


def test_unknown_file_meta_keys_are_kept_unchanged_and_other_casings_are_not_read(tmp_path: Path) -> None:
    meta = {"guid": GUID, "checksum": "bad", "Owner": {"name": "alice"}, "Events": 1000}
    checked = _upload(tmp_path, file_meta=meta)
    assert checked.metadata == meta
    assert checked.metadata is not meta
    assert (checked.guid, checked.guid_generated, checked.checksum) == (FIXED_GUID, True, None)


def test_guid_factory_is_called_once_when_no_guid_is_given_and_never_otherwise(tmp_path: Path) -> None:
    made: list[str] = []

    def factory() -> str:
        made.append(FIXED_GUID)
        return FIXED_GUID

    assert _upload(tmp_path, guid_factory=factory).guid == FIXED_GUID
    assert _upload(tmp_path, guid_factory=factory, file_meta={"GUID": GUID}).guid == GUID
    assert made == [FIXED_GUID]


@pytest.mark.parametrize(
    ("default", "checksum", "kind"),
    [
        (None, ADLER32, ChecksumType.ADLER32),
        ("MD5", MD5, ChecksumType.MD5),
        ("sha1", SHA1, ChecksumType.SHA1),
    ],
)
def test_upload_checksum_is_verified_with_the_default_type_when_none_is_given(
    tmp_path: Path, default: str | None, checksum: str, kind: ChecksumType
) -> None:
    checked = _upload(tmp_path, file_meta={"Checksum": checksum.upper()}, default_checksum_type=default)
    assert (checked.checksum_type, checked.checksum) == (kind, checksum)


def test_upload_never_modifies_the_local_file(tmp_path: Path) -> None:
    path = _local_file(tmp_path)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    before = path.stat()
    _upload(tmp_path, local_path=path, file_meta={"Checksum": ADLER32, "Size": 5})
    after = path.stat()
    assert path.read_bytes() == CONTENT
    assert (after.st_mtime_ns, after.st_size, after.st_mode) == (
        before.st_mtime_ns,
        before.st_size,
        before.st_mode,
    )


@pytest.mark.parametrize("file_meta", [None, {}])
def test_absent_file_meta_is_an_empty_one(tmp_path: Path, file_meta: Any) -> None:
    assert _upload(tmp_path, file_meta=file_meta).metadata == {}


def test_file_meta_that_is_not_a_mapping_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        _upload(tmp_path, file_meta=[("GUID", GUID)])


def test_empty_se_list_passes_validation(tmp_path: Path) -> None:
    assert _upload(tmp_path, ses=[]).ses == ()


def test_master_only_upload_registers_in_master_catalogs(tmp_path: Path) -> None:
    assert _upload(tmp_path, catalogs="LcgFileCatalog", master_only=True).catalogs == ("FileCatalog",)


_MISSING = "missing.root"
_ORDER_CASES = {
    "lfn before local file": ({"lfn": "relative/out.root", "local_path": _MISSING}, InvalidInput, "LFN"),
    "long lfn before local file": ({"lfn": "/vo/" + "x" * 200, "local_path": _MISSING}, NameTooLong, "LFN"),
    "local file before guid": ({"local_path": _MISSING, "file_meta": {"GUID": "bad"}}, InvalidInput, "file"),
    "guid before unknown se": ({"file_meta": {"GUID": "bad"}, "ses": "SE-X"}, InvalidInput, "GUID"),
    "guid before checksum type": (
        {"file_meta": {"GUID": "bad", "ChecksumType": "CRC"}},
        InvalidInput,
        "GUID",
    ),
    "checksum type before checksum": (
        {"file_meta": {"ChecksumType": "CRC", "Checksum": "0"}},
        InvalidInput,
        "checksum type",
    ),
    "checksum before size": ({"file_meta": {"Checksum": "1", "Size": "abc"}}, ChecksumMismatch, "checksum"),
    "malformed checksum before size": (
        {"file_meta": {"Checksum": "zz", "Size": 99}},
        InvalidInput,
        "checksum",
    ),
    "size before se": ({"file_meta": {"Size": 99}, "ses": "SE-X"}, ChecksumMismatch, "size"),
    "se before catalog": ({"ses": "SE-X", "catalogs": "Nope"}, UnknownStorageElement, "SE"),
    "catalog last": ({"catalogs": "Nope"}, UnknownCatalog, "Catalog"),
}


@pytest.mark.parametrize(("overrides", "expected", "words"), _ORDER_CASES.values(), ids=_ORDER_CASES.keys())
def test_upload_reports_the_first_violation_in_spec_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], expected: type, words: str
) -> None:
    """With two violations at once, the one whose rule comes first in SPEC §1 is raised."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput) as caught:
        _upload(tmp_path, **overrides)
    assert type(caught.value) is expected
    assert words.lower() in str(caught.value).lower()


@pytest.mark.parametrize(("overrides", "expected", "words"), _ORDER_CASES.values(), ids=_ORDER_CASES.keys())
def test_every_upload_error_carries_the_lfn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any], expected: type, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput) as caught:
        _upload(tmp_path, **overrides)
    assert caught.value.lfn == overrides.get("lfn", LFN)


def test_upload_errors_name_the_se_or_catalog_at_fault(tmp_path: Path) -> None:
    with pytest.raises(UnknownStorageElement) as se_error:
        _upload(tmp_path, ses=["SE-A", "SE-X"])
    with pytest.raises(UnknownCatalog) as catalog_error:
        _upload(tmp_path, catalogs=["FileCatalog", "Nope"])
    assert (se_error.value.se, catalog_error.value.catalog) == ("SE-X", "Nope")


def test_validation_exports_are_sorted_and_importable() -> None:
    exported = failover.validation.__all__
    assert exported == sorted(exported)
    assert all(hasattr(failover.validation, name) for name in exported)


def test_the_namespace_doctests_pass() -> None:
    assert doctest.testmod(namespace, raise_on_error=True).attempted > 0


@pytest.mark.parametrize(
    ("taken", "lfn", "clash"),
    [
        (["/vo/a/out"], "/vo/a/out/part1", "/vo/a/out/part1 is below /vo/a/out"),
        (["/vo/a"], "/vo/a/out/part1", "/vo/a/out/part1 is below /vo/a"),
        (["/vo/a/out/x/y"], "/vo/a/out", "/vo/a/out is the directory of /vo/a/out/x/y"),
        (["/vo/a/out/p1", "/vo/a/out/p2"], "/vo/a", "/vo/a is the directory of /vo/a/out/p1"),
        (["/vo/a/out"], "/vo/a/out", None),
        (["/vo/a/out"], "/vo/a/out0/x", None),
        (["/vo/a/out"], "/vo/a/ou", None),
        (["/vo/a/out/x"], "/vo/a/out/y", None),
    ],
)
def test_call_names_refuse_a_name_that_would_be_a_file_and_a_directory(
    taken: list[str], lfn: str, clash: str | None
) -> None:
    names = namespace.CallNames()
    for name in taken:
        names.add(name)
    found = names.clash(lfn)
    if clash is None:
        assert found is None
    else:
        assert found == f"{clash}, another file of this upload: a name is a file or a directory, never both"
