from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.errors import InvalidRequest
from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
    request_from_dirac_json,
    request_to_dirac_json,
)

T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
T1 = datetime(2024, 5, 6, 8, 0, 0, tzinfo=UTC)
GUID = "6F3C2A9B-1D4E-4F5A-8B7C-0123456789AB"

# DIRAC's _getJSONData attribute lists (8.1+: Owner replaced OwnerDN), in DIRAC's order.
REQUEST_KEYS = [
    "RequestID",
    "RequestName",
    "Owner",
    "OwnerGroup",
    "Status",
    "Error",
    "SourceComponent",
    "JobID",
    "CreationTime",
    "SubmitTime",
    "LastUpdate",
    "NotBefore",
    "Operations",
]
OPERATION_KEYS = [
    "OperationID",
    "RequestID",
    "Type",
    "Status",
    "Arguments",
    "Order",
    "SourceSE",
    "TargetSE",
    "Catalog",
    "Error",
    "CreationTime",
    "SubmitTime",
    "LastUpdate",
    "Files",
]
FILE_KEYS = [
    "FileID",
    "OperationID",
    "Status",
    "LFN",
    "PFN",
    "ChecksumType",
    "Checksum",
    "GUID",
    "Attempt",
    "Size",
    "Error",
]


def _failover_request(request_id: int | None = None, operation_id: int | None = None) -> Request:
    replicate = Operation(
        OperationType.ReplicateAndRegister,
        target_se=["CERN-USER", "RAL-USER"],
        source_se="CERN-FAILOVER",
        catalog=["DIRACFileCatalog"],
        files=[File("/vo/user/a/out.root", checksum="062c0215", checksum_type="ADLER32", size=5, guid=GUID)],
        operation_id=operation_id,
        creation_time=T0,
        submit_time=T0,
        last_update=T1,
    )
    remove = Operation(
        OperationType.RemoveReplica,
        target_se=["CERN-FAILOVER"],
        files=[File("/vo/user/a/out.root", attempt=2, error="SE down", file_id=9)],
        creation_time=T0,
        submit_time=T0,
        last_update=None,
    )
    return Request(
        name="job42_request",
        owner="alice",
        owner_group="vo_user",
        source_component="FailoverTransfer",
        job_id=42,
        creation_time=T0,
        submit_time=T0,
        last_update=T1,
        operations=[replicate, remove],
        request_id=request_id,
    )


def test_export_is_what_dirac_writes() -> None:
    assert request_to_dirac_json(_failover_request()) == {
        "RequestName": "job42_request",
        "Owner": "alice",
        "OwnerGroup": "vo_user",
        "Status": "Waiting",
        "Error": "",
        "SourceComponent": "FailoverTransfer",
        "JobID": 42,
        "CreationTime": "2024-05-06 07:08:09",
        "SubmitTime": "2024-05-06 07:08:09",
        "LastUpdate": "2024-05-06 08:00:00",
        "NotBefore": None,
        "Operations": [
            {
                "Type": "ReplicateAndRegister",
                "Status": "Queued",
                "Arguments": "",
                "Order": 0,
                "SourceSE": "CERN-FAILOVER",
                "TargetSE": "CERN-USER,RAL-USER",
                "Catalog": "DIRACFileCatalog",
                "Error": "",
                "CreationTime": "2024-05-06 07:08:09",
                "SubmitTime": "2024-05-06 07:08:09",
                "LastUpdate": "2024-05-06 08:00:00",
                "Files": [
                    {
                        "Status": "Waiting",
                        "LFN": "/vo/user/a/out.root",
                        "PFN": "",
                        "ChecksumType": "ADLER32",
                        "Checksum": "062c0215",
                        "GUID": GUID,
                        "Attempt": 0,
                        "Size": 5,
                        "Error": "",
                    }
                ],
            },
            {
                "Type": "RemoveReplica",
                "Status": "Queued",
                "Arguments": "",
                "Order": 1,
                "SourceSE": "",
                "TargetSE": "CERN-FAILOVER",
                "Catalog": "",
                "Error": "",
                "CreationTime": "2024-05-06 07:08:09",
                "SubmitTime": "2024-05-06 07:08:09",
                "LastUpdate": None,
                "Files": [
                    {
                        "FileID": 9,
                        "Status": "Waiting",
                        "LFN": "/vo/user/a/out.root",
                        "PFN": "",
                        "ChecksumType": "",
                        "Checksum": "",
                        "GUID": "",
                        "Attempt": 2,
                        "Size": 0,
                        "Error": "SE down",
                    }
                ],
            },
        ],
    }


def test_stored_ids_are_written_with_dirac_key_order() -> None:
    """Once stored, ids appear, and children repeat their parent's id, as DIRAC's database objects do."""
    data = request_to_dirac_json(_failover_request(request_id=7, operation_id=70))
    assert list(data) == REQUEST_KEYS
    first, second = data["Operations"]
    assert list(first) == OPERATION_KEYS
    assert list(second) == [key for key in OPERATION_KEYS if key != "OperationID"]
    assert list(first["Files"][0]) == [key for key in FILE_KEYS if key != "FileID"]
    assert list(second["Files"][0]) == [key for key in FILE_KEYS if key != "OperationID"]
    assert (first["RequestID"], first["Files"][0]["OperationID"]) == (7, 70)


def test_export_has_only_plain_json_values() -> None:
    """Enums become plain strings, and no private "_" key is written (DIRAC's encoder writes none)."""
    text = json.dumps(request_to_dirac_json(_failover_request(request_id=1)))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            assert not any(key.startswith("_") for key in value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert type(value) in (str, int, type(None))

    walk(json.loads(text))
    walk(request_to_dirac_json(_failover_request(request_id=1)))


def test_reads_what_a_dirac_installation_writes() -> None:
    """A document as DIRAC writes it: nulls for unset fields, fractions of seconds, keys of older versions."""
    text = json.dumps(
        {
            "RequestID": 12,
            "RequestName": "job42_request",
            "OwnerDN": "/DC=ch/CN=alice",
            "Owner": "alice",
            "OwnerGroup": "vo_user",
            "Status": "Waiting",
            "Error": None,
            "DIRACSetup": "Production",
            "SourceComponent": "FailoverTransfer",
            "JobID": 42,
            "CreationTime": "2024-05-06 07:08:09",
            "SubmitTime": "2024-05-06 07:08:09.123456",
            "LastUpdate": "2024-05-06 08:00:00",
            "NotBefore": "2024-05-06 07:08:09",
            "Operations": [
                {
                    "OperationID": 120,
                    "RequestID": 12,
                    "Type": "ReplicateAndRegister",
                    "Status": "Waiting",
                    "Arguments": None,
                    "Order": 0,
                    "SourceSE": "CERN-FAILOVER",
                    "TargetSE": "CERN-USER, RAL-USER,",
                    "Catalog": "",
                    "Error": None,
                    "CreationTime": "2024-05-06 07:08:09",
                    "SubmitTime": "2024-05-06 07:08:09",
                    "LastUpdate": "2024-05-06 07:08:09",
                    "Files": [
                        {
                            "FileID": 1200,
                            "OperationID": 120,
                            "Status": "Waiting",
                            "LFN": "/vo/user/a/out.root",
                            "PFN": None,
                            "ChecksumType": "AD",
                            "Checksum": "062c0215",
                            "GUID": GUID,
                            "Attempt": 0,
                            "Size": 5,
                            "Error": None,
                        }
                    ],
                }
            ],
        }
    )
    request = request_from_dirac_json(text)
    assert (request.request_id, request.name, request.owner, request.error) == (
        12,
        "job42_request",
        "alice",
        "",
    )
    assert request.submit_time == T0
    assert request.not_before == T0
    (operation,) = request.operations
    assert operation.operation_id == 120
    assert operation.target_se == ["CERN-USER", "RAL-USER"]
    assert (operation.catalog, operation.arguments, operation.status) == ([], "", OperationStatus.Waiting)
    (file,) = operation.files
    assert (file.file_id, file.pfn, file.checksum_type, file.size) == (1200, "", "ADLER32", 5)


def test_reading_keeps_the_stated_statuses() -> None:
    """DIRAC re-derives on load and would lose Canceled; reading here keeps it."""
    request = _failover_request()
    request.status = RequestStatus.Canceled
    request.operations[0].files[0].status = FileStatus.Done
    copy = request_from_dirac_json(request_to_dirac_json(request))
    assert copy.status == RequestStatus.Canceled
    assert copy.operations[0].status == OperationStatus.Queued


def test_operations_are_taken_in_list_order() -> None:
    """DIRAC numbers operations by position and ignores a stale Order."""
    data = request_to_dirac_json(_failover_request())
    data["Operations"][0]["Order"], data["Operations"][1]["Order"] = 5, 3
    request = request_from_dirac_json(data)
    assert [(op.type, op.order) for op in request] == [
        (OperationType.ReplicateAndRegister, 0),
        (OperationType.RemoveReplica, 1),
    ]


def test_missing_times_default_like_dirac() -> None:
    """DIRAC stamps creation and submission with the load time when absent; the rest stays unset."""
    request = request_from_dirac_json({"RequestName": "r", "Operations": [{"Type": "RemoveFile"}]})
    assert request.creation_time.tzinfo is UTC
    assert (request.last_update, request.not_before, request.operations[0].last_update) == (None, None, None)
    assert request.status == RequestStatus.Waiting
    assert request.operations[0].status == OperationStatus.Queued


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))), "2024-05-06 07:08:09"),
        (datetime(2024, 5, 6, 7, 8, 9), "2024-05-06 07:08:09"),
        (datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=UTC), "2024-05-06 07:08:09"),
    ],
    ids=["other-zone", "naive-is-utc", "sub-second-dropped"],
)
def test_times_are_written_in_utc_to_the_second(value: datetime, expected: str) -> None:
    request = Request(creation_time=value)
    assert request_to_dirac_json(request)["CreationTime"] == expected


@pytest.mark.parametrize("checksum_type", ["adler32", "AD", "Adler32"])
def test_checksum_type_is_written_as_dirac_normalises_it(checksum_type: str) -> None:
    file = File("/vo/a", checksum="1", checksum_type=checksum_type)
    request = Request(operations=[Operation(OperationType.RemoveFile, files=[file])])
    assert request_to_dirac_json(request)["Operations"][0]["Files"][0]["ChecksumType"] == "ADLER32"


def test_blank_names_are_dropped_when_joining() -> None:
    operation = Operation(OperationType.RemoveReplica, target_se=[" SE-A ", "", "SE-B"], catalog=["  "])
    data = request_to_dirac_json(Request(operations=[operation]))["Operations"][0]
    assert (data["TargetSE"], data["Catalog"]) == ("SE-A,SE-B", "")


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (
            Operation(OperationType.RemoveReplica, target_se=["SE-A,SE-B"]),
            "Operations[0].TargetSE: name 'SE-A,SE-B' contains a comma",
        ),
        (
            Operation(
                OperationType.RemoveReplica, files=[File("/vo/a", checksum="1", checksum_type="CRC32")]
            ),
            "Operations[0].Files[0].ChecksumType: unknown checksum type 'CRC32'",
        ),
    ],
    ids=["comma", "checksum-type"],
)
def test_export_refuses_what_dirac_cannot_hold(operation: Operation, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        request_to_dirac_json(Request(operations=[operation]))


def _valid_document() -> dict[str, Any]:
    return request_to_dirac_json(_failover_request(request_id=7))


def _put(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    document = _valid_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "request JSON is not valid JSON"),
        ("[]", "request: expected a JSON object, got array"),
        (_put(("JobID",), "42"), "JobID: expected a non-negative integer, got string '42'"),
        (_put(("JobID",), True), "JobID: expected a non-negative integer, got boolean True"),
        (_put(("RequestID",), -1), "RequestID: expected a non-negative integer, got number -1"),
        (_put(("Owner",), 5), "Owner: expected a string, got number"),
        (_put(("Status",), "Running"), "Status: unknown value 'Running' (expected one of Waiting, "),
        (_put(("CreationTime",), "2024-05-06T07:08:09Z"), "CreationTime: time '2024-05-06T07:08:09Z' is not"),
        (_put(("Operations",), {}), "Operations: expected a list, got object"),
        (_put(("Operations", 1), "RemoveReplica"), "Operations[1]: expected a JSON object, got string"),
        (_put(("Operations", 0, "Type"), "ForwardDISET"), "Operations[0].Type: unknown value 'ForwardDISET'"),
        (_put(("Operations", 0, "Type"), None), "Operations[0].Type: missing, and it is required"),
        (_put(("Operations", 1, "Status"), "Bogus"), "Operations[1].Status: unknown value 'Bogus'"),
        (_put(("Operations", 0, "TargetSE"), 3), "Operations[0].TargetSE: expected a string, got number"),
        (_put(("Operations", 0, "Files"), "x"), "Operations[0].Files: expected a list, got string"),
        (
            _put(("Operations", 0, "Files", 0, "Status"), "Queued"),
            "Operations[0].Files[0].Status: unknown value",
        ),
        (
            _put(("Operations", 0, "Files", 0, "Size"), 1.5),
            "Operations[0].Files[0].Size: expected a non-negative",
        ),
        (
            _put(("Operations", 0, "Files", 0, "ChecksumType"), "CRC"),
            "Operations[0].Files[0].ChecksumType: unknown",
        ),
    ],
)
def test_malformed_documents_name_the_field(document: dict[str, Any] | str, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        request_from_dirac_json(document)
    assert str(raised.value).startswith(message)


_names = st.text(
    st.characters(blacklist_characters=",", blacklist_categories=["Cs", "Zs", "Zl", "Zp", "Cc"]), min_size=1
)
_text = st.text(st.characters(blacklist_categories=["Cs"]))
_counts = st.integers(min_value=0, max_value=2**53)
_ids = st.none() | st.integers(min_value=1, max_value=2**31)
_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@st.composite
def _files(draw: st.DrawFn) -> File:
    return File(
        lfn=draw(_text),
        pfn=draw(_text),
        checksum=draw(_text),
        checksum_type=draw(st.sampled_from(["", "ADLER32", "MD5", "SHA1"])),
        size=draw(_counts),
        guid=draw(_text),
        status=draw(st.sampled_from(FileStatus)),
        attempt=draw(_counts),
        error=draw(_text),
        file_id=draw(_ids),
    )


@st.composite
def _operations(draw: st.DrawFn) -> Operation:
    return Operation(
        type=draw(st.sampled_from(OperationType)),
        target_se=draw(st.lists(_names, max_size=3)),
        source_se=draw(_text),
        catalog=draw(st.lists(_names, max_size=3)),
        arguments=draw(_text),
        status=draw(st.sampled_from(OperationStatus)),
        error=draw(_text),
        files=draw(st.lists(_files(), max_size=3)),
        operation_id=draw(_ids),
        creation_time=draw(_times),
        submit_time=draw(_times),
        last_update=draw(st.none() | _times),
    )


@st.composite
def _requests(draw: st.DrawFn) -> Request:
    return Request(
        name=draw(_text),
        owner=draw(_text),
        owner_group=draw(_text),
        source_component=draw(_text),
        job_id=draw(_counts),
        status=draw(st.sampled_from(RequestStatus)),
        error=draw(_text),
        creation_time=draw(_times),
        submit_time=draw(_times),
        last_update=draw(st.none() | _times),
        not_before=draw(st.none() | _times),
        operations=draw(st.lists(_operations(), max_size=3)),
        request_id=draw(_ids),
    )


@given(_requests())
def test_round_trip_is_lossless(request: Request) -> None:
    """Everything DIRAC carries survives export, JSON text, and import."""
    text = json.dumps(request_to_dirac_json(request))
    assert request_from_dirac_json(text) == request
    assert request_from_dirac_json(json.loads(text)) == request


def test_fields_dirac_cannot_carry_are_dropped() -> None:
    request = _failover_request()
    request.operations[0].idempotency_key = "upload-1:replicate"
    request.operations[0].machine_id = "/vo/a/upload-1"
    request.operations[0].files[0].errors = ["timeout", "refused"]
    copy = request_from_dirac_json(request_to_dirac_json(request))
    assert copy.operations[0].idempotency_key is None
    assert copy.operations[0].machine_id is None
    assert copy.operations[0].files[0].errors == []
