"""
SPEC.md §2 through ``FailoverTransfer.transferAndRegisterFile``: SE order, retry and error classes, deferred
registration as ``RegisterFile`` operations, the catalog pre-check, idempotent puts and calls.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from failover.catalog import FileEntry, Replica
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.request import validate_request
from failover.storage import StorageElement
from failover.testing import Fault, FaultInjector
from failover.uploads import plan_upload
from failover.workspace import open_workspace
from persistence import open_store
from states import RetryPolicy

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
OTHER_GUID = "0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9"
CATALOG = "LocalCatalog"
TOTAL_FAILURE = "Failed to upload output data file"
GUID_FORM = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
TRANSIENT = [Fault.STORAGE_UNAVAILABLE, Fault.CHECKSUM_MISMATCH, Fault.PARTIAL_WRITE]
PERMANENT = [Fault.PUT_ERROR, Fault.NAME_TOO_LONG]


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _puts(injector: FaultInjector) -> dict[str, int]:
    return {se: count for (se, op), count in injector.calls.items() if op == "put" and count}


def _fingerprint(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_ino


def _replica(env: Environment, se: str) -> Path:
    return Path(env.se(se).pfn(LFN).removeprefix("file://"))


def _operation_rows(env: Environment) -> int:
    (count,) = env.store.conn.execute("SELECT count(*) FROM operations").fetchone()
    return int(count)


@pytest.fixture
def client(client_env: Environment) -> FailoverTransfer:
    """A DIRAC-compatible client on the fault-injected workspace."""
    return FailoverTransfer(environment=client_env)


@pytest.fixture
def timed() -> Iterator[tuple[Any, list[float]]]:
    """Frozen time and the list of waits: the sleeper records each wait and moves the frozen clock on."""
    sleeps: list[float] = []
    with freeze_time("2024-05-01 12:00:00") as frozen:
        yield frozen, sleeps


def _timed_client(env: Environment, timed: tuple[Any, list[float]]) -> FailoverTransfer:
    frozen, sleeps = timed

    def sleeper(seconds: float) -> None:
        sleeps.append(seconds)
        frozen.tick(seconds)

    return FailoverTransfer(environment=dataclasses.replace(env, sleeper=sleeper))


def _upload(client: FailoverTransfer, local: Path, ses: Any, **options: Any) -> dict[str, Any]:
    meta = options.pop("meta", {})
    return client.transferAndRegisterFile("out.root", str(local), LFN, ses, meta, **options)


@pytest.mark.parametrize(
    ("ses", "failing", "uploaded", "not_tried"),
    [
        (["SE-A", "SE-B", "SE-C"], [], "SE-A", ["SE-B", "SE-C"]),
        (["SE-C", "SE-B", "SE-A"], [], "SE-C", ["SE-B", "SE-A"]),
        (["SE-A", "SE-B", "SE-C"], ["SE-A"], "SE-B", ["SE-C"]),
        (["SE-C", "SE-A", "SE-B"], ["SE-C", "SE-A"], "SE-B", []),
    ],
)
def test_first_se_that_works_wins_in_the_order_given(
    client: FailoverTransfer,
    injector: FaultInjector,
    output_file: Path,
    ses: list[str],
    failing: list[str],
    uploaded: str,
    not_tried: list[str],
) -> None:
    for se in failing:
        injector.inject(se, Fault.PUT_ERROR)
    assert _upload(client, output_file, ses) == {"OK": True, "Value": {"uploadedSE": uploaded, "lfn": LFN}}
    assert _puts(injector) == {se: 1 for se in [*failing, uploaded]}
    assert _replica(client.env, uploaded).read_bytes() == output_file.read_bytes()
    assert all(not _replica(client.env, se).exists() for se in [*failing, *not_tried])


@pytest.mark.parametrize("ses", [[], "", " , "], ids=["empty-list", "empty-string", "only-commas"])
def test_empty_destination_list_is_a_total_failure(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, ses: Any
) -> None:
    assert _upload(client, output_file, ses) == {
        "OK": False,
        "Message": TOTAL_FAILURE,
        "Errno": 0,
        "Errors": {},
    }
    assert _puts(injector) == {}


def test_total_failure_returns_per_se_errors(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """Fix: DIRAC only logs the per-SE reasons; we return each SE's last reason."""
    injector.inject("SE-A", Fault.PUT_ERROR)
    injector.inject("SE-B", Fault.STORAGE_UNAVAILABLE, operation="put")
    result = _upload(client, output_file, ["SE-A", "SE-B"])
    assert {key: result[key] for key in ("OK", "Message", "Errno")} == {
        "OK": False,
        "Message": TOTAL_FAILURE,
        "Errno": 0,
    }
    assert set(result) == {"OK", "Message", "Errno", "Errors"}
    assert set(result["Errors"]) == {"SE-A", "SE-B"}
    assert "permission denied" in result["Errors"]["SE-A"]
    assert "unreachable" in result["Errors"]["SE-B"]
    assert client.getRequest().is_empty


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_error_with_retry_upload_and_one_se_makes_four_attempts(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    timed: tuple[Any, list[float]],
    fault: Fault,
) -> None:
    """Waits of 10, 60 then 300 s between the 4 attempts, and none after the last (Fix: no 600 s)."""
    injector.inject("SE-A", fault, operation="put", times=None)
    result = _upload(_timed_client(client_env, timed), output_file, ["SE-A"], retryUpload=True)
    assert result["OK"] is False and set(result["Errors"]) == {"SE-A"}
    assert _puts(injector) == {"SE-A": 4}
    assert timed[1] == [10, 60, 300]


def test_transient_retry_stops_at_the_first_successful_attempt(
    client_env: Environment, injector: FaultInjector, output_file: Path, timed: tuple[Any, list[float]]
) -> None:
    injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=2)
    result = _upload(_timed_client(client_env, timed), output_file, "SE-A", retryUpload=True)
    assert result == {"OK": True, "Value": {"uploadedSE": "SE-A", "lfn": LFN}}
    assert _puts(injector) == {"SE-A": 3}
    assert timed[1] == [10, 60]


def test_put_retry_delays_are_configurable(
    client_env: Environment, injector: FaultInjector, output_file: Path, timed: tuple[Any, list[float]]
) -> None:
    injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    env = dataclasses.replace(client_env, put_retry=RetryPolicy((1.0, 2.0)))
    result = _upload(_timed_client(env, timed), output_file, "SE-A", retryUpload=True)
    assert result["OK"] is False
    assert _puts(injector) == {"SE-A": 3}
    assert timed[1] == [1, 2]


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_error_with_several_ses_moves_on_at_once(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    timed: tuple[Any, list[float]],
    fault: Fault,
) -> None:
    """Keep: with several SEs there is no waiting, even with ``retryUpload``."""
    injector.inject("SE-A", fault, operation="put", times=None)
    result = _upload(_timed_client(client_env, timed), output_file, ["SE-A", "SE-B"], retryUpload=True)
    assert result["Value"]["uploadedSE"] == "SE-B"
    assert _puts(injector) == {"SE-A": 1, "SE-B": 1}
    assert timed[1] == []


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_error_without_retry_upload_is_not_retried(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    timed: tuple[Any, list[float]],
    fault: Fault,
) -> None:
    injector.inject("SE-A", fault, operation="put", times=None)
    result = _upload(_timed_client(client_env, timed), output_file, ["SE-A"])
    assert result["OK"] is False and set(result["Errors"]) == {"SE-A"}
    assert _puts(injector) == {"SE-A": 1}
    assert timed[1] == []


@pytest.mark.parametrize("fault", PERMANENT)
@pytest.mark.parametrize(
    ("ses", "puts", "uploaded"),
    [(["SE-A"], {"SE-A": 1}, None), (["SE-A", "SE-B"], {"SE-A": 1, "SE-B": 1}, "SE-B")],
    ids=["one-se", "two-ses"],
)
def test_permanent_error_moves_to_the_next_se_at_once_even_with_retry_upload(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    timed: tuple[Any, list[float]],
    fault: Fault,
    ses: list[str],
    puts: dict[str, int],
    uploaded: str | None,
) -> None:
    injector.inject("SE-A", fault, times=None)
    result = _upload(_timed_client(client_env, timed), output_file, ses, retryUpload=True)
    assert result.get("Value", {}).get("uploadedSE") == uploaded
    assert _puts(injector) == puts
    assert timed[1] == []


@pytest.mark.parametrize("catalogs_down", [1, 2], ids=["one-catalog", "two-catalogs"])
def test_catalog_down_upload_succeeds_and_registration_is_deferred(
    two_catalog_env: Environment, injector: FaultInjector, output_file: Path, catalogs_down: int
) -> None:
    """Fix: no blocking on the catalog; one complete RegisterFile per catalog that did not register."""
    down = ["A", "B"][:catalogs_down]
    for name in down:
        injector.inject(name, Fault.CATALOG_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=two_catalog_env)
    meta = {"Owner": "kept"}
    result = _upload(client, output_file, ["SE-B"], meta=meta)
    data = output_file.read_bytes()
    assert result["OK"] is True
    value = result["Value"]
    assert {key: value[key] for key in ("uploadedSE", "lfn", "registration")} == {
        "uploadedSE": "SE-B",
        "lfn": LFN,
        "registration": "request",
    }
    filedict = value["filedict"]
    assert {key: filedict[key] for key in ("LFN", "Size", "Checksum", "ChecksumType", "Owner")} == {
        "LFN": LFN,
        "Size": len(data),
        "Checksum": _adler32(data),
        "ChecksumType": "ADLER32",
        "Owner": "kept",
    }
    assert GUID_FORM.fullmatch(filedict["GUID"])
    request = client.getRequest()
    assert [(op.type, op.catalog, op.target_se) for op in request] == [
        ("RegisterFile", [name], ["SE-B"]) for name in down
    ]
    pfn = two_catalog_env.se("SE-B").pfn(LFN)
    for op in request:
        (file,) = op.files
        fields = (file.lfn, file.pfn, file.checksum, file.checksum_type, file.size, file.guid)
        assert fields == (LFN, pfn, _adler32(data), "ADLER32", len(data), filedict["GUID"])
    validate_request(request)
    assert client.commitRequest()["OK"] is True


def test_filedict_carries_the_real_values_over_the_callers(
    client: FailoverTransfer, injector: FaultInjector, tmp_path: Path
) -> None:
    """The caller's dict comes back updated with what was uploaded, in canonical form."""
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    local = tmp_path / "hello.root"
    local.write_bytes(b"hello")
    meta = {
        "LFN": "/elsewhere",
        "Size": 0,
        "Checksum": "0X62C0215",
        "ChecksumType": "ad",
        "GUID": GUID.lower(),
    }
    result = client.transferAndRegisterFile("hello.root", str(local), LFN, "SE-A", meta)
    assert result["Value"]["filedict"] == {
        "LFN": LFN,
        "Size": 5,
        "Checksum": "062c0215",
        "ChecksumType": "ADLER32",
        "GUID": GUID,
    }
    (register,) = client.getRequest().operations
    (file,) = register.files
    assert (file.checksum, file.checksum_type, file.size, file.guid) == ("062c0215", "ADLER32", 5, GUID)


def test_fix_registered_in_one_catalog_only_the_other_gets_register_file(
    two_catalog_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """DIRAC re-registers in every requested catalog; we queue only the catalog that did not register."""
    injector.inject("B", Fault.CATALOG_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=two_catalog_env)
    result = _upload(client, output_file, "SE-A")
    assert result["Value"]["registration"] == "request"
    assert [(op.type, op.catalog) for op in client.getRequest()] == [("RegisterFile", ["B"])]
    entry = two_catalog_env.catalogs.get("A").get_file(LFN)
    assert entry is not None and entry.guid == result["Value"]["filedict"]["GUID"]


def test_registration_refused_by_a_catalog_is_deferred_too(
    two_catalog_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """A catalog refusing at registration time (after the put) gets a RegisterFile, never a lost file."""
    injector.inject("B", Fault.REGISTRATION_REFUSED, times=None)
    client = FailoverTransfer(environment=two_catalog_env)
    result = _upload(client, output_file, "SE-A")
    assert result["OK"] is True and result["Value"]["registration"] == "request"
    assert [(op.type, op.catalog) for op in client.getRequest()] == [("RegisterFile", ["B"])]


def _register(env: Environment, lfn: str, *, size: int, checksum: str, guid: str) -> None:
    entry = FileEntry(lfn, size, checksum, "ADLER32", guid)
    env.catalogs.get(CATALOG).register_file(entry, Replica(lfn, "SE-C", env.se("SE-C").pfn(lfn)))


@pytest.mark.parametrize("conflict", ["size", "checksum", "guid"])
def test_lfn_registered_with_other_metadata_is_refused_and_nothing_uploaded(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, conflict: str
) -> None:
    data = output_file.read_bytes()
    registered: dict[str, Any] = {"size": len(data), "checksum": _adler32(data), "guid": GUID}
    registered[conflict] = {"size": len(data) + 1, "checksum": "00000001", "guid": OTHER_GUID}[conflict]
    _register(client.env, LFN, **registered)
    before = injector.calls.copy()
    result = _upload(client, output_file, ["SE-A", "SE-B"], meta={"GUID": GUID})
    assert result["OK"] is False
    assert conflict in result["Message"].lower()
    assert _puts(injector) == {}
    assert injector.calls[(CATALOG, "register_file")] == before[(CATALOG, "register_file")]
    assert not _replica(client.env, "SE-A").exists() and not _replica(client.env, "SE-B").exists()
    assert client.getRequest().is_empty


def test_guid_held_by_another_lfn_is_refused_and_nothing_uploaded(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    data = output_file.read_bytes()
    _register(
        client.env, "/vo/user/a/alice/run41/other.root", size=len(data), checksum=_adler32(data), guid=GUID
    )
    result = _upload(client, output_file, ["SE-A", "SE-B"], meta={"GUID": GUID})
    assert result["OK"] is False
    assert "/vo/user/a/alice/run41/other.root" in result["Message"]
    assert _puts(injector) == {}
    assert not _replica(client.env, "SE-A").exists()
    assert client.env.catalogs.get(CATALOG).get_file(LFN) is None


@pytest.mark.parametrize(
    ("registered", "reason"),
    [
        ("/vo/user/a/alice/run42", "/vo/user/a/alice/run42 is a file, not a directory"),
        (f"{LFN}/part1", f"it is a directory (it holds {LFN}/part1)"),
    ],
)
def test_lfn_clashing_with_the_namespace_is_refused_and_nothing_uploaded(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, registered: str, reason: str
) -> None:
    """
    A file registered where the LFN needs a directory, or files below the LFN: refused before any put.
    Before, the destination refused the name, the file went to the failover SE and was registered there,
    and its replication to the destination could never succeed.
    """
    _register(client.env, registered, size=3, checksum="024d0127", guid=OTHER_GUID)
    result = _upload(client, output_file, ["SE-A", "SE-B"])
    assert result["OK"] is False
    assert result["Message"].endswith(f"catalog {CATALOG!r} refuses {LFN}: {reason}")
    assert _puts(injector) == {}
    assert client.env.catalogs.get(CATALOG).get_file(LFN) is None
    assert client.getRequest().is_empty


def test_same_content_already_at_the_se_counts_as_put_without_rewriting(
    client: FailoverTransfer, output_file: Path
) -> None:
    StorageElement("SE-A", client.env.se("SE-A").url).put(output_file, LFN)
    replica = _replica(client.env, "SE-A")
    before = replica.stat()
    result = _upload(client, output_file, "SE-A")
    assert result == {"OK": True, "Value": {"uploadedSE": "SE-A", "lfn": LFN}}
    after = replica.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert client.env.catalogs.get(CATALOG).get_file(LFN) is not None


def test_registered_identical_and_present_elsewhere_resumes_without_rewriting(
    tmp_path: Path, output_file: Path
) -> None:
    """A first process uploaded and registered; a second one (new database) finds the upload done."""
    first = FailoverTransfer(environment=open_workspace(tmp_path / "ws"))
    meta = {"GUID": GUID}
    assert first.transferAndRegisterFile("o", str(output_file), LFN, "LOCAL-DISK", meta)["OK"]
    replica = _replica(first.env, "LOCAL-DISK")
    before = replica.stat()
    fresh = dataclasses.replace(first.env, store=open_store(tmp_path / "second.db"))
    second = FailoverTransfer(environment=fresh)
    result = second.transferAndRegisterFile("o", str(output_file), LFN, "LOCAL-DISK", meta)
    assert result == {"OK": True, "Value": {"uploadedSE": "LOCAL-DISK", "lfn": LFN}}
    assert (replica.stat().st_ino, replica.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.getRequest().is_empty


def test_different_content_under_the_name_is_refused_and_kept(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, tmp_path: Path
) -> None:
    """The DIRAC methods never overwrite: the SE refuses, the next SE takes the file."""
    other = tmp_path / "other.root"
    other.write_bytes(b"someone else's bytes")
    StorageElement("SE-A", client.env.se("SE-A").url).put(other, LFN)
    alone = _upload(client, output_file, "SE-A")
    assert alone["OK"] is False and set(alone["Errors"]) == {"SE-A"}
    assert _replica(client.env, "SE-A").read_bytes() == b"someone else's bytes"


def test_different_content_under_the_name_moves_on_to_the_next_se(
    client: FailoverTransfer, output_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.root"
    other.write_bytes(b"someone else's bytes")
    StorageElement("SE-A", client.env.se("SE-A").url).put(other, LFN)
    result = _upload(client, output_file, ["SE-A", "SE-B"])
    assert result["Value"]["uploadedSE"] == "SE-B"
    assert _replica(client.env, "SE-A").read_bytes() == b"someone else's bytes"


@pytest.mark.parametrize("catalog_down", [False, True], ids=["registered", "deferred"])
def test_calling_again_returns_the_same_result_without_a_second_put(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, catalog_down: bool
) -> None:
    if catalog_down:
        injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    first = _upload(client, output_file, ["SE-A", "SE-B"])
    operations = _operation_rows(client.env)
    again = _upload(client, output_file, ["SE-A", "SE-B"])
    assert again == first
    assert _puts(injector) == {"SE-A": 1}
    assert _operation_rows(client.env) == operations == int(catalog_down)
    assert len(client.getRequest()) == int(catalog_down)


def test_another_process_on_the_same_database_continues_the_upload(
    tmp_path: Path, client_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    """A new client (new key, same database) calling for the same LFN gets the result, no put, no op."""
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    first = _upload(FailoverTransfer(environment=client_env), output_file, "SE-A")
    again_env = injector.wrap(open_workspace(tmp_path / "ws", ses=tuple(client_env.storage)))
    again = _upload(FailoverTransfer(environment=again_env), output_file, "SE-A")
    again_env.store.close()
    assert again == first
    assert _puts(injector) == {"SE-A": 1}
    assert _operation_rows(client_env) == 1


@pytest.mark.parametrize("change", ["longer", "same-size", "same-size-checksum-given"])
@pytest.mark.parametrize("catalog_down", [False, True], ids=["registered", "deferred"])
def test_calling_again_after_the_file_changed_is_refused_and_nothing_uploaded(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, change: str, catalog_down: bool
) -> None:
    """
    SPEC §2: an LFN that landed with other content is refused. Reporting the first result would tell the
    caller the new file is stored while the SE and the catalog hold the old one.
    """
    if catalog_down:
        injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    original = output_file.read_bytes()
    first = _upload(client, output_file, "SE-A")
    assert first["OK"] is True
    operations = _operation_rows(client.env)
    changed = original + b"more events" if change == "longer" else bytes([original[0] ^ 1]) + original[1:]
    output_file.write_bytes(changed)
    meta = {"Checksum": _adler32(changed)} if change == "same-size-checksum-given" else {}
    refused = _upload(client, output_file, "SE-A", meta=meta)
    assert refused["OK"] is False
    assert f"{LFN} was already uploaded" in refused["Message"]
    expected = f"{len(changed):,} bytes" if change == "longer" else f"ADLER32 {_adler32(changed)}"
    assert f"{output_file} has {expected}, what landed " in refused["Message"]
    assert _puts(injector) == {"SE-A": 1}
    assert _replica(client.env, "SE-A").read_bytes() == original
    assert _operation_rows(client.env) == operations
    assert client.env.uploads.load(LFN).data["checksum"] == _adler32(original)
    output_file.write_bytes(original)
    assert _upload(client, output_file, "SE-A") == first


@pytest.mark.parametrize("same_content", [True, False], ids=["same-content", "other-content"])
def test_a_landed_upload_called_again_from_another_path_is_judged_by_its_content(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, tmp_path: Path, same_content: bool
) -> None:
    """A job run again in a new directory: the same bytes get the same result; other bytes are refused."""
    first = _upload(client, output_file, "SE-A")
    rerun = tmp_path / "rerun" / "out.root"
    rerun.parent.mkdir()
    rerun.write_bytes(output_file.read_bytes() if same_content else b"another run's output\n")
    again = _upload(client, rerun, "SE-A")
    if same_content:
        assert again == first
    else:
        assert again["OK"] is False and f"{LFN} was already uploaded" in again["Message"]
        assert f"{rerun} has " in again["Message"]
    assert _puts(injector) == {"SE-A": 1}
    assert _replica(client.env, "SE-A").read_bytes() == output_file.read_bytes()


def test_an_upload_left_in_flight_goes_on_from_its_own_path_and_refuses_another(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, tmp_path: Path
) -> None:
    """
    Not landed yet (created, then the process died): the upload puts the file it recorded, so a call
    naming another file, even with the same bytes, is refused.
    """
    env = client.env
    machine_id, data = plan_upload(env, output_file, LFN, destinations=["SE-A"], request=env.default_request)
    assert data is not None
    env.uploads.create(machine_id, data)
    copy = tmp_path / "copy.root"
    copy.write_bytes(output_file.read_bytes())
    refused = _upload(client, copy, "SE-A")
    assert refused["OK"] is False
    assert refused["Message"] == f"{LFN} is already being uploaded from {output_file}"
    assert _puts(injector) == {}
    assert _upload(client, output_file, "SE-A")["OK"] is True
    assert _puts(injector) == {"SE-A": 1}


def _fail_everywhere(injector: FaultInjector) -> None:
    injector.inject("SE-A", Fault.PUT_ERROR, times=None)


def _catalog_down(injector: FaultInjector) -> None:
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)


def _conflict(injector: FaultInjector, env: Environment) -> None:
    _register(env, LFN, size=1, checksum="00000001", guid=OTHER_GUID)


@pytest.mark.parametrize(
    "scenario", ["success", "catalog-down", "total-failure", "refused", "already-there", "retried"]
)
def test_local_file_is_never_modified(
    client_env: Environment,
    injector: FaultInjector,
    output_file: Path,
    timed: tuple[Any, list[float]],
    scenario: str,
) -> None:
    """Bytes, modification time and inode of the local file stay as they were, whatever happens."""
    if scenario == "catalog-down":
        _catalog_down(injector)
    elif scenario == "total-failure":
        _fail_everywhere(injector)
    elif scenario == "refused":
        _conflict(injector, client_env)
    elif scenario == "already-there":
        StorageElement("SE-A", client_env.se("SE-A").url).put(output_file, LFN)
    elif scenario == "retried":
        injector.inject("SE-A", Fault.PARTIAL_WRITE, times=2)
    before = _fingerprint(output_file)
    result = _upload(_timed_client(client_env, timed), output_file, "SE-A", retryUpload=True)
    assert result["OK"] is (scenario not in ("total-failure", "refused"))
    assert _fingerprint(output_file) == before
