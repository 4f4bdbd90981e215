"""
SPEC.md §1 through the DIRAC-compatible methods: bad input comes back as ``{"OK": False, ...}``, before any
SE is tried and with the local file untouched; good input is canonicalised (GUID, checksum, names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import zlib
from pathlib import Path
from typing import Any

import pytest

from failover.catalog import CatalogSet, SQLiteCatalog
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.testing import Fault, FaultInjector

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
SES = ("SE-A", "SE-B", "SE-C", "FAIL-1", "FAIL-2")
METHODS = (
    "transferAndRegisterFile",
    "transferAndRegisterFileFailover",
    "transferAndRegisterFileWithFailover",
)
UPPER_UUID4 = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}")


def _call(
    client: FailoverTransfer,
    method: str,
    local: Any,
    lfn: Any = LFN,
    meta: dict[str, Any] | None = None,
    *,
    ses: Any = "SE-A",
    catalog: Any = None,
    master: bool = False,
) -> dict[str, Any]:
    """Call one DIRAC method; ``ses`` are the SEs it uploads to (the failover list for the failover form)."""
    meta = {} if meta is None else meta
    local = str(local) if isinstance(local, Path) else local
    if method == "transferAndRegisterFileFailover":
        return client.transferAndRegisterFileFailover(
            "out.root", local, lfn, "SE-C", ses, meta, catalog, master
        )
    if method == "transferAndRegisterFileWithFailover":
        return client.transferAndRegisterFileWithFailover(
            "out.root", local, lfn, ses, "FAIL-2", meta, catalog, master
        )
    return client.transferAndRegisterFile("out.root", local, lfn, ses, meta, catalog, master)


def _se_calls(injector: FaultInjector) -> dict[tuple[str, str], int]:
    return {key: count for key, count in injector.calls.items() if key[0] in SES}


def _fingerprint(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_ino


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _assert_refused(result: dict[str, Any], injector: FaultInjector) -> None:
    assert result["OK"] is False
    assert isinstance(result["Message"], str) and result["Message"]
    assert isinstance(result["Errno"], int)
    assert _se_calls(injector) == {}


@pytest.fixture
def client(client_env: Environment) -> FailoverTransfer:
    """A DIRAC-compatible client on the fault-injected workspace."""
    return FailoverTransfer(environment=client_env)


# Each case: (LFN, fileMetaDict, SEs, fileCatalog); the local file is the valid ``output_file``.
BAD_INPUTS = {
    "relative-lfn": ("vo/user/out.root", {}, "SE-A", None),
    "dot-dot-segment": ("/vo/user/../out.root", {}, "SE-A", None),
    "dot-segment": ("/vo/./out.root", {}, "SE-A", None),
    "empty-segment": ("/vo//out.root", {}, "SE-A", None),
    "trailing-slash": ("/vo/user/", {}, "SE-A", None),
    "control-character": ("/vo/user/out\n.root", {}, "SE-A", None),
    "lfn-over-1024": ("/" + "d" * 1020 + "/out.root", {}, "SE-A", None),
    "guid-not-hex": (LFN, {"GUID": "not-a-guid"}, "SE-A", None),
    "guid-wrong-groups": (LFN, {"GUID": "6F1A2B3C4D5E-4F60-8172-839405A6B7C8"}, "SE-A", None),
    "checksum-type-unknown": (LFN, {"ChecksumType": "CRC32"}, "SE-A", None),
    "checksum-mismatch": (LFN, {"Checksum": "12345678"}, "SE-A", None),
    "checksum-malformed": (LFN, {"Checksum": "xyz"}, "SE-A", None),
    "size-mismatch": (LFN, {"Size": 3}, "SE-A", None),
    "size-negative": (LFN, {"Size": -5}, "SE-A", None),
    "size-not-a-number": (LFN, {"Size": "big"}, "SE-A", None),
    "unknown-se": (LFN, {}, "SE-X", None),
    "unknown-se-in-list": (LFN, {}, ["SE-A", "SE-X"], None),
    "unknown-catalog": (LFN, {}, "SE-A", "NoSuchCatalog"),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("lfn", "meta", "ses", "catalog"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_invalid_input_is_returned_as_error_dict_before_any_se_is_tried(
    client: FailoverTransfer,
    injector: FaultInjector,
    output_file: Path,
    method: str,
    lfn: str,
    meta: dict[str, Any],
    ses: Any,
    catalog: Any,
) -> None:
    """Every SPEC §1 violation is returned (never raised) and nothing touches an SE or the local file."""
    before = _fingerprint(output_file)
    result = _call(client, method, output_file, lfn, meta, ses=ses, catalog=catalog)
    _assert_refused(result, injector)
    assert set(result) == {"OK", "Message", "Errno"}
    assert _fingerprint(output_file) == before
    assert client.getRequest().is_empty


WRONG_TYPES = {
    "lfn-none": dict(lfn=None),
    "lfn-int": dict(lfn=42),
    "local-none": dict(local=None),
    "local-int": dict(local=7),
    "meta-list": dict(meta=["GUID"]),
    "ses-int": dict(ses=42),
    "ses-list-of-int": dict(ses=[1, 2]),
    "catalog-int": dict(catalog=5),
    "guid-int": dict(meta={"GUID": 123}),
    "checksum-int": dict(meta={"Checksum": 123}),
    "checksum-type-int": dict(meta={"ChecksumType": 5}),
    "size-bool": dict(meta={"Size": True}),
    "size-fraction": dict(meta={"Size": 1.5}),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("wrong", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_argument_types_are_returned_as_errors_not_raised(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, method: str, wrong: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {"local": output_file, **wrong}
    local = arguments.pop("local")
    _assert_refused(_call(client, method, local, **arguments), injector)


@pytest.mark.parametrize("method", METHODS)
def test_basename_over_128_characters_returns_errno_36_and_tries_no_se(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, method: str
) -> None:
    result = _call(client, method, output_file, "/vo/user/" + "b" * 129)
    _assert_refused(result, injector)
    assert result["Errno"] == 36


def test_basename_of_exactly_128_characters_is_accepted(client: FailoverTransfer, output_file: Path) -> None:
    lfn = "/vo/user/" + "b" * 128
    assert client.transferAndRegisterFile("out.root", str(output_file), lfn, "SE-A", {}) == {
        "OK": True,
        "Value": {"uploadedSE": "SE-A", "lfn": lfn},
    }


@pytest.mark.parametrize(
    "make",
    [lambda p: p.write_bytes(b""), lambda p: p.mkdir(), lambda p: None, lambda p: os.mkfifo(p)],
    ids=["zero-size", "directory", "missing", "not-a-regular-file"],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_local_file_is_refused_and_nothing_uploaded(
    client: FailoverTransfer, injector: FaultInjector, tmp_path: Path, method: str, make: Any
) -> None:
    """Keep: DIRAC refuses zero-size files; so are missing, directory and special files."""
    local = tmp_path / "bad.root"
    make(local)
    _assert_refused(_call(client, method, local), injector)
    assert not [p for p in (tmp_path / "ws" / "se").rglob("*") if p.is_file()]


def test_first_violation_in_spec_order_is_reported(
    client: FailoverTransfer, injector: FaultInjector, tmp_path: Path
) -> None:
    """The LFN is checked before the local file, which is checked before the metadata and the SEs."""
    empty = tmp_path / "empty.root"
    empty.write_bytes(b"")
    too_long = client.transferAndRegisterFile("o", str(empty), "/vo/" + "x" * 129, "SE-X", {"GUID": "bad"})
    assert too_long["Errno"] == 36
    zero = client.transferAndRegisterFile("o", str(empty), LFN, "SE-X", {"GUID": "bad"})
    assert "zero size" in zero["Message"]
    _assert_refused(zero, injector)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"GUID": "not-a-guid"}, "GUID"),
        ({"GUID": GUID, "ChecksumType": "CRC32"}, "CRC32"),
        ({"GUID": GUID, "Checksum": "0badbeef"}, "0badbeef"),
        ({"GUID": GUID, "Size": 1}, "1"),
    ],
    ids=["guid", "checksum-type", "checksum", "size"],
)
def test_fix_bad_metadata_is_rejected_before_upload(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, meta: dict[str, Any], reason: str
) -> None:
    """DIRAC raises after the upload; we refuse before anything reaches an SE or a catalog."""
    result = client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)
    _assert_refused(result, injector)
    assert reason in result["Message"]
    assert injector.calls == {}
    assert client.env.catalogs.get("LocalCatalog").get_file(LFN) is None


@pytest.mark.parametrize("guid", [None, "", "   "], ids=["none", "empty", "blank"])
def test_missing_guid_is_generated_as_upper_case_uuid4(
    client: FailoverTransfer, output_file: Path, guid: str | None
) -> None:
    meta = {} if guid is None else {"GUID": guid}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and UPPER_UUID4.fullmatch(entry.guid)


def test_given_guid_is_kept_upper_cased(client: FailoverTransfer, output_file: Path) -> None:
    meta = {"GUID": GUID.lower()}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and entry.guid == GUID


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("ADLER32", "ADLER32"),
        ("AD", "ADLER32"),
        ("Adler32", "ADLER32"),
        ("adler32", "ADLER32"),
        ("ad", "ADLER32"),
        ("MD5", "MD5"),
        ("md5", "MD5"),
        ("SHA1", "SHA1"),
        ("sha1", "SHA1"),
        (None, "ADLER32"),
        ("", "ADLER32"),
    ],
)
def test_checksum_type_aliases_register_the_canonical_type_and_value(
    client: FailoverTransfer, output_file: Path, given: str | None, kind: str
) -> None:
    """ADLER32 values are written as 8 lowercase hex digits; MD5 and SHA1 as lowercase hex."""
    meta = {} if given is None else {"ChecksumType": given}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    data = output_file.read_bytes()
    expected = {
        "ADLER32": _adler32(data),
        "MD5": hashlib.md5(data).hexdigest(),
        "SHA1": hashlib.sha1(data).hexdigest(),
    }[kind]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None
    assert (entry.checksum_type, entry.checksum) == (kind, expected)


@pytest.mark.parametrize(("default", "kind"), [("MD5", "MD5"), ("sha1", "SHA1"), (None, "ADLER32")])
def test_default_checksum_type_applies_when_meta_names_none(
    client_env: Environment, output_file: Path, default: str | None, kind: str
) -> None:
    client = FailoverTransfer(environment=client_env, defaultChecksumType=default)
    meta = {"ChecksumType": ""}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    entry = client_env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and entry.checksum_type == kind


@pytest.mark.parametrize("supplied", ["062c0215", "062C0215", "62c0215", "0x62c0215", "0X062C0215"])
def test_supplied_adler32_checksum_is_verified_tolerantly(
    client: FailoverTransfer, tmp_path: Path, supplied: str
) -> None:
    """Case, leading zeros and ``0x`` do not matter; the canonical form is registered."""
    local = tmp_path / "hello.root"
    local.write_bytes(b"hello")
    assert _adler32(b"hello") == "062c0215"
    meta = {"Checksum": supplied, "ChecksumType": "ADLER32"}
    assert client.transferAndRegisterFile("h", str(local), LFN, "SE-A", meta)["OK"]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and entry.checksum == "062c0215"


@pytest.mark.parametrize("kind", ["MD5", "SHA1"])
def test_supplied_md5_and_sha1_are_compared_case_insensitively(
    client: FailoverTransfer, output_file: Path, kind: str
) -> None:
    digest = hashlib.new(kind.lower(), output_file.read_bytes()).hexdigest()
    meta = {"Checksum": digest.upper(), "ChecksumType": kind}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and entry.checksum == digest


@pytest.mark.parametrize(
    ("kind", "wrong"),
    [("ADLER32", "00000001"), ("MD5", "0" * 32), ("SHA1", "f" * 40)],
)
@pytest.mark.parametrize("method", METHODS)
def test_fix_supplied_checksum_mismatch_is_an_input_error_no_se_tried(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, method: str, kind: str, wrong: str
) -> None:
    """DIRAC never verifies a supplied checksum; we compare it with the file's before any put."""
    meta = {"Checksum": wrong, "ChecksumType": kind}
    _assert_refused(_call(client, method, output_file, meta=meta), injector)


@pytest.mark.parametrize("size", [0, None, "", "0"], ids=["zero", "none", "empty", "zero-text"])
def test_size_zero_or_absent_means_unknown(client: FailoverTransfer, output_file: Path, size: object) -> None:
    meta = {"Size": size}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]
    entry = client.env.catalogs.get("LocalCatalog").get_file(LFN)
    assert entry is not None and entry.size == output_file.stat().st_size


def test_size_equal_to_the_file_is_accepted(client: FailoverTransfer, output_file: Path) -> None:
    meta = {"Size": output_file.stat().st_size}
    assert client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", meta)["OK"]


@pytest.mark.parametrize(
    ("ses", "uploaded"),
    [
        (" SE-B ", "SE-B"),
        ("SE-B , SE-A", "SE-B"),
        ([" SE-B", "SE-A "], "SE-B"),
        (" SE-A,SE-B ", "SE-A"),
    ],
)
def test_fix_destination_se_names_are_stripped_and_comma_strings_are_lists(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, ses: Any, uploaded: str
) -> None:
    result = client.transferAndRegisterFile("out.root", str(output_file), LFN, ses, {})
    assert result == {"OK": True, "Value": {"uploadedSE": uploaded, "lfn": LFN}}
    assert sum(count for (se, op), count in injector.calls.items() if op == "put") == 1


def test_fix_comma_string_destinations_are_tried_in_order(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """``"SE-A, SE-B"`` is two SEs, not one SE called ``"SE-A, SE-B"``: SE-A fails, SE-B takes the file."""
    injector.inject("SE-A", Fault.PUT_ERROR)
    result = client.transferAndRegisterFile("out.root", str(output_file), LFN, " SE-A, SE-B ", {})
    assert result["Value"]["uploadedSE"] == "SE-B"
    assert (injector.calls[("SE-A", "put")], injector.calls[("SE-B", "put")]) == (1, 1)


@pytest.mark.parametrize(
    ("target", "failovers"),
    [(" SE-C ", " FAIL-1 "), ("SE-C", "SE-C , FAIL-1"), ([" SE-C "], [" SE-C", "FAIL-1 "])],
)
def test_fix_failover_and_target_se_names_are_stripped(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, target: Any, failovers: Any
) -> None:
    result = client.transferAndRegisterFileFailover("out.root", str(output_file), LFN, target, failovers, {})
    assert result["Value"] == {"uploadedSE": "FAIL-1", "lfn": LFN}
    (replicate,) = [op for op in client.getRequest() if op.type == "ReplicateAndRegister"]
    assert replicate.target_se == ["SE-C"]
    assert replicate.source_se == "FAIL-1"
    assert injector.calls[("SE-C", "put")] == 0


@pytest.mark.parametrize(
    ("method", "destinations", "failovers", "targets"),
    [
        ("transferAndRegisterFile", "SE-A, SE-NOWHERE", None, None),
        ("transferAndRegisterFileFailover", None, "FAIL-1, SE-NOWHERE", "SE-C"),
        ("transferAndRegisterFileFailover", None, "FAIL-1", " SE-NOWHERE"),
        ("transferAndRegisterFileWithFailover", "SE-NOWHERE", "FAIL-1", None),
        ("transferAndRegisterFileWithFailover", "SE-A", "SE-NOWHERE ", None),
    ],
    ids=["destination", "failover", "target", "one-call-destination", "one-call-failover"],
)
def test_unknown_se_is_an_input_error_wherever_it_is_named(
    client: FailoverTransfer,
    injector: FaultInjector,
    output_file: Path,
    method: str,
    destinations: Any,
    failovers: Any,
    targets: Any,
) -> None:
    if method == "transferAndRegisterFile":
        result = client.transferAndRegisterFile("o", str(output_file), LFN, destinations, {})
    elif method == "transferAndRegisterFileFailover":
        result = client.transferAndRegisterFileFailover("o", str(output_file), LFN, targets, failovers, {})
    else:
        result = client.transferAndRegisterFileWithFailover(
            "o", str(output_file), LFN, destinations, failovers, {}
        )
    _assert_refused(result, injector)
    assert "SE-NOWHERE" in result["Message"]


@pytest.fixture
def catalogs_client(two_catalog_env: Environment) -> FailoverTransfer:
    """A client whose environment has master catalog ``A`` and plain catalog ``B``."""
    return FailoverTransfer(environment=two_catalog_env)


def _registered_in(env: Environment) -> list[str]:
    return [catalog.name for catalog in env.catalogs if catalog.get_file(LFN) is not None]


@pytest.mark.parametrize(
    ("requested", "master", "chosen"),
    [
        (None, False, ["A", "B"]),
        ("", False, ["A", "B"]),
        ("B", False, ["B"]),
        (" B ", False, ["B"]),
        (["B", "A"], False, ["B", "A"]),
        ("B, A ,B", False, ["B", "A"]),
        (["B", "A, B"], False, ["B", "A"]),
        ("B", True, ["A"]),
        (None, True, ["A"]),
    ],
)
def test_catalog_selection(
    catalogs_client: FailoverTransfer,
    injector: FaultInjector,
    output_file: Path,
    requested: Any,
    master: bool,
    chosen: list[str],
) -> None:
    """
    None/"" = all configured; a name, list or comma string de-duplicated in first-appearance order;
    ``masterCatalogOnly`` replaces the selection by the master catalogs. With every catalog down, the
    RegisterFile operations show the chosen catalogs in order.
    """
    for name in ("A", "B"):
        injector.inject(name, Fault.CATALOG_UNAVAILABLE, times=None)
    result = catalogs_client.transferAndRegisterFile(
        "out.root", str(output_file), LFN, "SE-A", {}, requested, master
    )
    assert result["OK"] and result["Value"]["registration"] == "request"
    assert [op.catalog for op in catalogs_client.getRequest()] == [[name] for name in chosen]


@pytest.mark.parametrize(("requested", "master"), [("B", True), (None, True), ("A,B", False)])
def test_selected_catalogs_are_the_ones_registered(
    catalogs_client: FailoverTransfer, output_file: Path, requested: Any, master: bool
) -> None:
    result = catalogs_client.transferAndRegisterFile(
        "out.root", str(output_file), LFN, "SE-A", {}, requested, master
    )
    assert result == {"OK": True, "Value": {"uploadedSE": "SE-A", "lfn": LFN}}
    assert _registered_in(catalogs_client.env) == (["A"] if master else ["A", "B"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("requested", ["C", "A,C", ["B", "nope"]])
def test_unknown_catalog_is_an_input_error(
    catalogs_client: FailoverTransfer, injector: FaultInjector, output_file: Path, method: str, requested: Any
) -> None:
    result = _call(catalogs_client, method, output_file, catalog=requested)
    _assert_refused(result, injector)
    assert _registered_in(catalogs_client.env) == []


@pytest.mark.parametrize("method", METHODS)
def test_fix_master_catalog_only_without_master_is_an_input_error(
    tmp_path: Path, injector: FaultInjector, output_file: Path, two_catalog_env: Environment, method: str
) -> None:
    """DIRAC silently queues nothing; we refuse before anything is uploaded."""
    no_master = CatalogSet([SQLiteCatalog("B", tmp_path / "b.db"), SQLiteCatalog("C", tmp_path / "c.db")])
    client = FailoverTransfer(environment=dataclasses.replace(two_catalog_env, catalogs=no_master))
    _assert_refused(_call(client, method, output_file, master=True), injector)
    assert client.getRequest().is_empty


def test_unknown_file_meta_keys_are_returned_unchanged_in_filedict(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """Unknown keys (other casings included) are not interpreted and come back as given."""
    injector.inject("LocalCatalog", Fault.CATALOG_UNAVAILABLE, times=None)
    extra = {"Extra": [1, 2], "checksum": "not-a-checksum", "guid": "not-a-guid", "Status": "Waiting"}
    result = client.transferAndRegisterFile(
        "out.root", str(output_file), LFN, "SE-A", {**extra, "GUID": GUID}
    )
    filedict = result["Value"]["filedict"]
    assert {key: filedict[key] for key in extra} == extra
    assert filedict["GUID"] == GUID
    assert filedict["Checksum"] == _adler32(output_file.read_bytes())
