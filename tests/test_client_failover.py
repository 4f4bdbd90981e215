"""
SPEC.md §3 through ``transferAndRegisterFileFailover`` and the one-call form
``transferAndRegisterFileWithFailover``: which SEs are tried, the operations queued after a failover (in
order, complete), and what is returned.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any

import pytest

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.request import Operation, validate_request
from failover.testing import Fault, FaultInjector

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"


def _adler32(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _puts(injector: FaultInjector) -> dict[str, int]:
    return {se: count for (se, op), count in injector.calls.items() if op == "put" and count}


def _failover(
    client: FailoverTransfer, local: Path, targets: Any, failovers: Any, **options: Any
) -> dict[str, Any]:
    meta = options.pop("meta", {"GUID": GUID})
    return client.transferAndRegisterFileFailover(
        "out.root", str(local), LFN, targets, failovers, meta, **options
    )


def _summary(operation: Operation) -> tuple[str, list[str], str, list[str]]:
    return (str(operation.type), operation.target_se, operation.source_se, operation.catalog)


def _file_fields(operation: Operation) -> list[tuple[str, str, str, int, str]]:
    return [(f.lfn, f.checksum, f.checksum_type, f.size, f.guid) for f in operation.files]


@pytest.fixture
def client(client_env: Environment) -> FailoverTransfer:
    """A DIRAC-compatible client on the fault-injected workspace."""
    return FailoverTransfer(environment=client_env)


def test_failover_success_queues_replicate_then_remove(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """Registered at F: no RegisterFile; ReplicateAndRegister F→target, then RemoveReplica at F."""
    data = output_file.read_bytes()
    result = _failover(client, output_file, "SE-A", ["FAIL-1", "FAIL-2"])
    assert result == {"OK": True, "Value": {"uploadedSE": "FAIL-1", "lfn": LFN}}
    replicate, remove = client.getRequest().operations
    assert _summary(replicate) == ("ReplicateAndRegister", ["SE-A"], "FAIL-1", [CATALOG])
    assert _file_fields(replicate) == [(LFN, _adler32(data), "ADLER32", len(data), GUID)]
    assert _summary(remove) == ("RemoveReplica", ["FAIL-1"], "", [])
    assert [f.lfn for f in remove.files] == [LFN]
    assert _puts(injector) == {"FAIL-1": 1}
    validate_request(client.getRequest())


def test_failover_with_registration_failed_at_f_queues_register_file_first(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """Fix: the result carries ``registration`` and ``filedict`` when a RegisterFile was queued."""
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    data = output_file.read_bytes()
    result = _failover(client, output_file, "SE-A", "FAIL-1", meta={"GUID": GUID, "Extra": 7})
    assert result == {
        "OK": True,
        "Value": {
            "uploadedSE": "FAIL-1",
            "lfn": LFN,
            "registration": "request",
            "filedict": {
                "GUID": GUID,
                "Extra": 7,
                "LFN": LFN,
                "Size": len(data),
                "Checksum": _adler32(data),
                "ChecksumType": "ADLER32",
            },
        },
    }
    register, replicate, remove = client.getRequest().operations
    assert _summary(register) == ("RegisterFile", ["FAIL-1"], "", [CATALOG])
    (file,) = register.files
    assert (file.lfn, file.pfn, file.checksum, file.checksum_type, file.size, file.guid) == (
        LFN,
        client.env.se("FAIL-1").pfn(LFN),
        _adler32(data),
        "ADLER32",
        len(data),
        GUID,
    )
    assert _summary(replicate) == ("ReplicateAndRegister", ["SE-A"], "FAIL-1", [CATALOG])
    assert _summary(remove) == ("RemoveReplica", ["FAIL-1"], "", [])
    validate_request(client.getRequest())
    assert client.commitRequest()["OK"] is True


def test_failover_registered_in_one_catalog_queues_register_file_for_the_other_only(
    two_catalog_env: Environment, injector: FaultInjector, output_file: Path
) -> None:
    injector.inject("B", Fault.CATALOG_UNAVAILABLE, times=None)
    client = FailoverTransfer(environment=two_catalog_env)
    assert _failover(client, output_file, "SE-A", "FAIL-1")["Value"]["registration"] == "request"
    assert [_summary(op) for op in client.getRequest()] == [
        ("RegisterFile", ["FAIL-1"], "", ["B"]),
        ("ReplicateAndRegister", ["SE-A"], "FAIL-1", ["A", "B"]),
        ("RemoveReplica", ["FAIL-1"], "", []),
    ]


@pytest.mark.parametrize("targets", [["SE-A", "SE-B"], "SE-A,SE-B", " SE-A , SE-B "])
def test_target_se_may_name_several_ses(client: FailoverTransfer, output_file: Path, targets: Any) -> None:
    assert _failover(client, output_file, targets, "FAIL-1")["OK"]
    replicate, _ = client.getRequest().operations
    assert replicate.target_se == ["SE-A", "SE-B"]


@pytest.mark.parametrize(
    ("targets", "failovers"),
    [
        ("SE-A", ["SE-A", "FAIL-1"]),
        ("SE-A, SE-B", "SE-B, SE-A, FAIL-1"),
        (["SE-B"], [" SE-B ", "FAIL-1"]),
    ],
)
def test_fix_failover_skips_target_ses(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path, targets: Any, failovers: Any
) -> None:
    """DIRAC would "fail over" onto the target itself, then replicate it onto itself and remove it."""
    result = _failover(client, output_file, targets, failovers)
    assert result["Value"]["uploadedSE"] == "FAIL-1"
    assert _puts(injector) == {"FAIL-1": 1}
    assert not Path(client.env.se("SE-A").pfn(LFN).removeprefix("file://")).exists()


def test_failover_list_of_only_targets_is_a_total_failure(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    result = _failover(client, output_file, "SE-A, SE-B", "SE-B,SE-A")
    assert result["OK"] is False and result["Message"] == "Failed to upload output data file"
    assert _puts(injector) == {}
    assert client.getRequest().is_empty


@pytest.mark.parametrize("fault", [Fault.STORAGE_UNAVAILABLE, Fault.PUT_ERROR])
def test_failover_moves_to_the_next_failover_se_without_retry(
    client_env: Environment, injector: FaultInjector, output_file: Path, fault: Fault
) -> None:
    """``retryUpload`` is not used for failover uploads: a transient error moves on at once."""
    sleeps: list[float] = []
    client = FailoverTransfer(environment=dataclasses.replace(client_env, sleeper=sleeps.append))
    injector.inject("FAIL-1", fault, operation="put", times=None)
    result = _failover(client, output_file, "SE-A", ["FAIL-1", "FAIL-2"])
    assert result["Value"]["uploadedSE"] == "FAIL-2"
    assert _puts(injector) == {"FAIL-1": 1, "FAIL-2": 1}
    assert sleeps == []


def test_all_failover_ses_fail_is_a_total_failure_with_per_se_errors(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    injector.inject("FAIL-1", Fault.PUT_ERROR, times=None)
    injector.inject("FAIL-2", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    result = _failover(client, output_file, "SE-A", ["FAIL-1", "FAIL-2"])
    assert {key: result[key] for key in ("OK", "Message", "Errno")} == {
        "OK": False,
        "Message": "Failed to upload output data file",
        "Errno": 0,
    }
    assert set(result["Errors"]) == {"FAIL-1", "FAIL-2"}
    assert all(isinstance(reason, str) and reason for reason in result["Errors"].values())
    assert client.getRequest().is_empty


@pytest.mark.parametrize(
    ("requested", "master", "catalogs"),
    [
        (None, True, ["A"]),
        ("B", True, ["A"]),
        (None, False, ["A", "B"]),
        ("B", False, ["B"]),
        ("B, A", False, ["B", "A"]),
    ],
)
def test_fix_replicate_and_register_carries_the_chosen_catalogs(
    two_catalog_env: Environment, output_file: Path, requested: Any, master: bool, catalogs: list[str]
) -> None:
    """DIRAC leaves Catalog empty, so a master-only upload gets its replica registered everywhere."""
    client = FailoverTransfer(environment=two_catalog_env)
    result = _failover(client, output_file, "SE-A", "FAIL-1", fileCatalog=requested, masterCatalogOnly=master)
    assert result["Value"] == {"uploadedSE": "FAIL-1", "lfn": LFN}
    replicate, _ = client.getRequest().operations
    assert replicate.type == "ReplicateAndRegister"
    assert replicate.catalog == catalogs


def _with_failover(
    client: FailoverTransfer, local: Path, destinations: Any, failovers: Any
) -> dict[str, Any]:
    return client.transferAndRegisterFileWithFailover(
        "out.root", str(local), LFN, destinations, failovers, {"GUID": GUID}
    )


def test_one_call_form_uploads_to_a_destination_when_one_works(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    result = _with_failover(client, output_file, ["SE-A", "SE-B"], ["FAIL-1"])
    assert result == {"OK": True, "Value": {"uploadedSE": "SE-A", "lfn": LFN}}
    assert _puts(injector) == {"SE-A": 1}
    assert client.getRequest().is_empty


def test_one_call_form_falls_back_to_failover_after_every_destination(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """DIRAC issue 4700: destinations in order, then the failover SEs; the targets are the destinations."""
    injector.inject("SE-A", Fault.PUT_ERROR, times=None)
    injector.inject("SE-B", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    result = _with_failover(client, output_file, "SE-A, SE-B", ["FAIL-1", "FAIL-2"])
    assert result == {"OK": True, "Value": {"uploadedSE": "FAIL-1", "lfn": LFN}}
    assert _puts(injector) == {"SE-A": 1, "SE-B": 1, "FAIL-1": 1}
    assert [_summary(op) for op in client.getRequest()] == [
        ("ReplicateAndRegister", ["SE-A", "SE-B"], "FAIL-1", [CATALOG]),
        ("RemoveReplica", ["FAIL-1"], "", []),
    ]


def test_one_call_form_total_failure_lists_every_se(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    for se in ("SE-A", "FAIL-1"):
        injector.inject(se, Fault.PUT_ERROR, times=None)
    result = _with_failover(client, output_file, "SE-A", "FAIL-1")
    assert result["OK"] is False and set(result["Errors"]) == {"SE-A", "FAIL-1"}


def test_one_call_form_does_not_retry_a_destination_named_again_as_failover(
    client: FailoverTransfer, injector: FaultInjector, output_file: Path
) -> None:
    """The destinations are the targets, so they are skipped in the failover list."""
    injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=None)
    result = _with_failover(client, output_file, "SE-A", ["SE-A", "FAIL-1"])
    assert result["Value"]["uploadedSE"] == "FAIL-1"
    assert _puts(injector) == {"SE-A": 1, "FAIL-1": 1}
