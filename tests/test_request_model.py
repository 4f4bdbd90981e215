from __future__ import annotations

import doctest
from datetime import UTC, datetime
from enum import StrEnum
from types import ModuleType

import pytest
from freezegun import freeze_time

import failover.request
from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
    dirac_json,
    model,
    status,
    validation,
)


def _op(lfn: str = "/vo/a") -> Operation:
    return Operation(OperationType.RemoveFile, files=[File(lfn)])


def test_all_is_sorted_and_complete() -> None:
    """The package's public surface is pinned: sorted, and every name importable."""
    exported = failover.request.__all__
    assert exported == sorted(exported)
    assert exported == [
        "File",
        "FileStatus",
        "Operation",
        "OperationStatus",
        "OperationType",
        "Request",
        "RequestStatus",
        "current_operation",
        "failure_reason",
        "find_problems",
        "operation_status_from_files",
        "refresh_statuses",
        "request_from_dirac_json",
        "request_to_dirac_json",
        "validate_request",
    ]
    for name in exported:
        assert getattr(failover.request, name) is not None


@pytest.mark.parametrize("module", [model, status, validation, dirac_json], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failures == 0


@pytest.mark.parametrize(
    ("enum", "names"),
    [
        (RequestStatus, ["Waiting", "Scheduled", "Assigned", "Done", "Failed", "Canceled"]),
        (OperationStatus, ["Queued", "Waiting", "Scheduled", "Assigned", "Done", "Failed", "Canceled"]),
        (FileStatus, ["Waiting", "Scheduled", "Done", "Failed"]),
        (
            OperationType,
            ["ReplicateAndRegister", "RemoveReplica", "RegisterFile", "RegisterReplica", "RemoveFile"],
        ),
    ],
)
def test_enum_values_are_dirac_names(enum: type[StrEnum], names: list[str]) -> None:
    assert [str(member) for member in enum] == names
    assert all(enum(name) == name for name in names)


@pytest.mark.parametrize(
    ("member", "final"),
    [
        (RequestStatus.Waiting, False),
        (RequestStatus.Scheduled, False),
        (RequestStatus.Assigned, False),
        (RequestStatus.Done, True),
        (RequestStatus.Failed, True),
        (RequestStatus.Canceled, True),
        (OperationStatus.Queued, False),
        (OperationStatus.Assigned, False),
        (OperationStatus.Done, True),
        (OperationStatus.Canceled, True),
        (FileStatus.Scheduled, False),
        (FileStatus.Failed, True),
    ],
)
def test_is_final(member: RequestStatus | OperationStatus | FileStatus, final: bool) -> None:
    assert member.is_final is final


@freeze_time("2024-05-06 07:08:09.654321")
def test_request_defaults() -> None:
    """A new request is DIRAC's: named noname_request, Waiting, stamped now in UTC to the second."""
    request = Request()
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert (request.name, request.status, request.job_id, request.request_id) == (
        "noname_request",
        RequestStatus.Waiting,
        0,
        None,
    )
    assert request.creation_time == request.submit_time == request.last_update == now
    assert request.not_before is None
    assert request.is_empty


def test_file_and_operation_defaults() -> None:
    file = File("/vo/a")
    operation = Operation(OperationType.RegisterFile)
    assert (file.status, file.attempt, file.errors, file.file_id) == (FileStatus.Waiting, 0, [], None)
    assert (operation.status, operation.target_se, operation.catalog) == (OperationStatus.Queued, [], [])
    assert operation.idempotency_key is None
    assert operation.machine_id is None


@pytest.mark.parametrize(
    ("obj", "dirac_name"),
    [(Request(), "RequestName"), (Request(), "JobID"), (_op(), "TargetSE"), (File("/vo/a"), "Checksum")],
    ids=["RequestName", "JobID", "TargetSE", "Checksum"],
)
def test_setting_a_dirac_attribute_name_fails_loudly(obj: object, dirac_name: str) -> None:
    """DIRAC code sets ``request.RequestName``: an error here, not a new attribute silently ignored."""
    with pytest.raises(AttributeError, match=dirac_name):
        setattr(obj, dirac_name, "x")


def test_mutable_defaults_are_not_shared() -> None:
    first, second = Operation(OperationType.RemoveFile), Operation(OperationType.RemoveFile)
    first.add_file(File("/vo/a"))
    first.target_se.append("SE-A")
    assert second.files == [] and second.target_se == []


def test_add_operation_sets_order_and_iterates_in_order() -> None:
    request = Request()
    ops = [_op("/vo/a"), _op("/vo/b"), _op("/vo/c")]
    for op in ops:
        request.add_operation(op)
    assert [op.order for op in ops] == [0, 1, 2]
    assert list(request) == ops
    assert len(request) == 3
    assert not request.is_empty


def test_constructor_numbers_operations() -> None:
    request = Request(operations=[_op(), _op(), _op()])
    assert [op.order for op in request] == [0, 1, 2]


@pytest.mark.parametrize(("method", "expected"), [("insert_after", [0, 2, 1]), ("insert_before", [1, 2, 0])])
def test_insert_renumbers(method: str, expected: list[int]) -> None:
    first, last, new = _op("/vo/a"), _op("/vo/b"), _op("/vo/new")
    request = Request(operations=[first, last])
    getattr(request, method)(first, new)
    assert [first.order, last.order, new.order] == expected


def test_insert_finds_the_very_object_not_an_equal_one() -> None:
    """Two equal operations are still two steps: insertion goes after the one passed."""
    first, twin = _op(), _op()
    new = Operation(OperationType.RegisterReplica)
    request = Request(operations=[first, twin])
    request.insert_after(twin, new)
    assert request.operations[2] is new


def test_adding_the_same_operation_twice_is_refused() -> None:
    op = _op()
    request = Request(operations=[op])
    with pytest.raises(ValueError, match="already in"):
        request.add_operation(op)


def test_inserting_next_to_a_foreign_operation_is_refused() -> None:
    request = Request(operations=[_op()])
    with pytest.raises(ValueError, match="not in"):
        request.insert_after(_op(), _op())


def test_adding_the_same_file_twice_is_refused() -> None:
    file = File("/vo/a")
    operation = Operation(OperationType.RemoveFile, files=[file])
    with pytest.raises(ValueError, match="already in"):
        operation.add_file(file)


def test_empty_containers_are_still_truthy() -> None:
    """``if request:`` must not mean "if it has operations" (DIRAC defines __bool__ for the same reason)."""
    operation = Operation(OperationType.RemoveFile)
    assert len(operation) == 0 and bool(operation)
    assert len(Request()) == 0 and bool(Request())


def test_operation_iterates_over_files() -> None:
    files = [File("/vo/a"), File("/vo/b")]
    operation = Operation(OperationType.RemoveFile)
    for file in files:
        operation.add_file(file)
    assert list(operation) == files
    assert len(operation) == 2
