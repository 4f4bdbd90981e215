from __future__ import annotations

from collections.abc import Callable

import pytest

from failover.errors import InvalidInput, InvalidRequest
from failover.request import (
    File,
    Operation,
    OperationType,
    Request,
    find_problems,
    validate_request,
)
from failover.request.validation import MAX_FILES

GUID = "6F3C2A9B-1D4E-4F5A-8B7C-0123456789AB"


def _full_file(lfn: str = "/vo/out.root") -> File:
    return File(
        lfn,
        pfn="file:///srv/se-a/vo/out.root",
        checksum="062c0215",
        checksum_type="ADLER32",
        size=5,
        guid=GUID,
    )


def _request(*operations: Operation) -> Request:
    return Request(name="job42_request", owner="alice", owner_group="vo_user", operations=list(operations))


def _op(
    op_type: OperationType, file: File | None = None, target_se: tuple[str, ...] = ("SE-A",)
) -> Operation:
    return Operation(op_type, target_se=list(target_se), files=[file or _full_file()])


@pytest.mark.parametrize("op_type", list(OperationType))
def test_complete_operation_of_every_type_is_valid(op_type: OperationType) -> None:
    request = _request(_op(op_type))
    assert find_problems(request) == []
    validate_request(request)


@pytest.mark.parametrize(
    ("op_type", "file", "target_se"),
    [
        (OperationType.ReplicateAndRegister, File("/vo/a"), ("SE-A",)),
        (OperationType.RemoveReplica, File("/vo/a"), ("SE-A",)),
        (OperationType.RemoveFile, File("/vo/a"), ()),
        (OperationType.RegisterReplica, File("/vo/a", pfn="file:///se/vo/a"), ("SE-A",)),
        (OperationType.RegisterFile, _full_file(), ()),
    ],
)
def test_minimal_operations_are_valid(op_type: OperationType, file: File, target_se: tuple[str, ...]) -> None:
    """Only the attributes of SPEC §4's table are required."""
    assert find_problems(_request(_op(op_type, file, target_se))) == []


def _set(attr: str, value: object) -> Callable[[Request], None]:
    def mutate(request: Request) -> None:
        setattr(request, attr, value)

    return mutate


def _set_file(attr: str, value: object) -> Callable[[Request], None]:
    def mutate(request: Request) -> None:
        setattr(request.operations[0].files[0], attr, value)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (_set("name", ""), "RequestName not set"),
        (_set("owner", ""), "Request 'job42_request' is missing Owner value"),
        (_set("owner_group", ""), "Request 'job42_request' is missing OwnerGroup value"),
        (_set("operations", []), "Operations not present in request 'job42_request'"),
        (
            _set_file("checksum", ""),
            "Operation #0 of type 'RegisterFile' is missing Checksum attribute for file /vo/out.root",
        ),
        (
            _set_file("guid", ""),
            "Operation #0 of type 'RegisterFile' is missing GUID attribute for file /vo/out.root",
        ),
        (
            _set_file("pfn", ""),
            "Operation #0 of type 'RegisterFile' is missing PFN attribute for file /vo/out.root",
        ),
        (_set_file("lfn", ""), "Operation #0 of type 'RegisterFile' is missing LFN attribute for file #0"),
        (
            _set_file("checksum_type", "CRC32"),
            "File /vo/out.root in operation #0 has unknown ChecksumType 'CRC32' (use ADLER32, MD5 or SHA1)",
        ),
        (
            _set_file("lfn", "vo/relative"),
            "File vo/relative in operation #0 has an LFN that is not an absolute path",
        ),
        (
            _set_file("guid", "not-a-guid"),
            "File /vo/out.root in operation #0 has GUID 'not-a-guid', not 8-4-4-4-12 hex",
        ),
    ],
)
def test_problem_is_reported_in_dirac_words(mutate: Callable[[Request], None], problem: str) -> None:
    request = _request(_op(OperationType.RegisterFile))
    mutate(request)
    assert problem in find_problems(request)
    with pytest.raises(InvalidRequest) as raised:
        validate_request(request)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("checksum", "checksum_type"),
    [("062c0215", ""), ("", "ADLER32")],
    ids=["type-missing", "value-missing"],
)
def test_checksum_and_type_go_together(checksum: str, checksum_type: str) -> None:
    file = File("/vo/a", checksum=checksum, checksum_type=checksum_type)
    problems = find_problems(_request(_op(OperationType.RemoveFile, file)))
    assert problems == [
        f"File /vo/a in operation #0 is missing Checksum ({checksum!r}) or ChecksumType ({checksum_type!r})"
    ]


@pytest.mark.parametrize("checksum_type", ["adler32", "AD", "md5", "SHA1"])
def test_checksum_type_aliases_dirac_accepts_are_valid(checksum_type: str) -> None:
    file = File("/vo/a", checksum="00000001", checksum_type=checksum_type)
    assert find_problems(_request(_op(OperationType.RemoveFile, file))) == []


@pytest.mark.parametrize("op_type", [OperationType.ReplicateAndRegister, OperationType.RegisterReplica])
@pytest.mark.parametrize("target_se", [(), ("",), ("  ",)], ids=["none", "empty", "blank"])
def test_target_se_required(op_type: OperationType, target_se: tuple[str, ...]) -> None:
    file = File("/vo/a", pfn="file:///se/vo/a")
    problems = find_problems(_request(_op(op_type, file, target_se)))
    assert problems == [f"Operation #0 of type '{op_type}' is missing TargetSE attribute."]


def test_operation_without_files() -> None:
    request = _request(Operation(OperationType.RemoveReplica, target_se=["SE-A"]))
    assert find_problems(request) == ["Operation #0 of type 'RemoveReplica' hasn't got files to process."]


def test_operation_without_type() -> None:
    request = _request(Operation("", files=[File("/vo/a")]))  # type: ignore[arg-type]
    assert find_problems(request) == ["Operation #0 in request 'job42_request' hasn't got Type set"]


def test_unknown_type_is_rejected_and_later_operations_are_still_checked() -> None:
    """DIRAC stops checking files at an unknown type; here every check runs on every operation."""
    unknown = Operation("ForwardDISET", files=[File("/vo/a")])  # type: ignore[arg-type]
    incomplete = Operation(OperationType.RegisterFile, files=[File("/vo/b")])
    problems = find_problems(_request(unknown, incomplete))
    assert problems == [
        "Operation #0 in request 'job42_request' has unknown Type 'ForwardDISET'",
        "Operation #1 of type 'RegisterFile' is missing PFN attribute for file /vo/b",
        "Operation #1 of type 'RegisterFile' is missing ChecksumType attribute for file /vo/b",
        "Operation #1 of type 'RegisterFile' is missing Checksum attribute for file /vo/b",
        "Operation #1 of type 'RegisterFile' is missing GUID attribute for file /vo/b",
    ]


def test_plain_string_type_of_a_known_kind_is_accepted() -> None:
    """A type given as DIRAC's string (not the enum) still validates."""
    request = _request(Operation("RemoveFile", files=[File("/vo/a")]))  # type: ignore[arg-type]
    assert find_problems(request) == []


def test_every_problem_is_in_the_error() -> None:
    request = Request(name="r", owner="", owner_group="")
    with pytest.raises(InvalidRequest) as raised:
        validate_request(request)
    assert str(raised.value) == (
        "Request 'r' is missing Owner value; Request 'r' is missing OwnerGroup value;"
        " Operations not present in request 'r'"
    )
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.code == "invalid_request"


def test_problems_of_each_file_name_that_file() -> None:
    request = _request(
        Operation(OperationType.RegisterReplica, target_se=["SE-A"], files=[File("/vo/a"), File("/vo/b")])
    )
    assert find_problems(request) == [
        "Operation #0 of type 'RegisterReplica' is missing PFN attribute for file /vo/a",
        "Operation #0 of type 'RegisterReplica' is missing PFN attribute for file /vo/b",
    ]


def test_operation_with_more_files_than_dirac_loads() -> None:
    files = [File(f"/vo/f{number}") for number in range(MAX_FILES + 1)]
    request = _request(Operation(OperationType.RemoveFile, files=files))
    assert find_problems(request) == ["Operation #0 of type 'RemoveFile' has more than 10000 files."]
