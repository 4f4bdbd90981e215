from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.request import (
    File,
    FileStatus,
    Operation,
    OperationStatus,
    OperationType,
    Request,
    RequestStatus,
    current_operation,
    failure_reason,
    operation_status_from_files,
    refresh_statuses,
)

W, S, D, F = FileStatus.Waiting, FileStatus.Scheduled, FileStatus.Done, FileStatus.Failed
EARLIER = datetime(2020, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def _bare(status: str) -> Operation:
    """An operation without files keeps the status it is given, as in DIRAC's state-machine tests."""
    return Operation(OperationType.RemoveFile, status=OperationStatus(status), last_update=EARLIER)


def _with_files(*statuses: FileStatus) -> Operation:
    files = [File(f"/vo/f{number}", status=status) for number, status in enumerate(statuses)]
    return Operation(OperationType.RemoveFile, files=files, last_update=EARLIER)


def _request(*operations: Operation) -> Request:
    return Request(operations=list(operations), last_update=EARLIER)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([], None),
        ([D], OperationStatus.Done),
        ([D, D], OperationStatus.Done),
        ([F], OperationStatus.Failed),
        ([F, F], OperationStatus.Failed),
        ([F, D], OperationStatus.Failed),
        ([W], OperationStatus.Queued),
        ([W, D], OperationStatus.Queued),
        ([W, F], OperationStatus.Queued),
        ([S], OperationStatus.Scheduled),
        ([S, W, F, D], OperationStatus.Scheduled),
        ([S, F], OperationStatus.Scheduled),
    ],
)
def test_operation_status_from_files(files: list[FileStatus], expected: OperationStatus | None) -> None:
    assert operation_status_from_files(files) == expected


@pytest.mark.parametrize(
    ("before", "after", "request_status"),
    [
        ([], [], "Waiting"),
        (["Queued"], ["Waiting"], "Waiting"),
        (["Queued", "Queued"], ["Waiting", "Queued"], "Waiting"),
        (["Waiting", "Waiting"], ["Waiting", "Queued"], "Waiting"),
        (["Done", "Queued"], ["Done", "Waiting"], "Waiting"),
        (["Done", "Done"], ["Done", "Done"], "Done"),
        (["Scheduled", "Queued"], ["Scheduled", "Queued"], "Scheduled"),
        (["Scheduled", "Waiting"], ["Scheduled", "Queued"], "Scheduled"),
        (["Done", "Scheduled", "Queued"], ["Done", "Scheduled", "Queued"], "Scheduled"),
        (["Failed", "Done"], ["Failed", "Done"], "Failed"),
        (["Done", "Failed", "Waiting"], ["Done", "Failed", "Waiting"], "Failed"),
        (["Queued", "Failed"], ["Waiting", "Failed"], "Waiting"),
        (["Canceled", "Queued"], ["Canceled", "Waiting"], "Waiting"),
        (["Done", "Canceled"], ["Done", "Canceled"], "Done"),
        (["Canceled", "Canceled"], ["Canceled", "Canceled"], "Canceled"),
        (["Assigned", "Queued"], ["Assigned", "Queued"], "Waiting"),
    ],
)
def test_request_derivation_from_operation_statuses(
    before: list[str], after: list[str], request_status: str
) -> None:
    request = _request(*(_bare(status) for status in before))
    refresh_statuses(request, now=NOW)
    assert [str(op.status) for op in request] == after
    assert request.status == RequestStatus(request_status)


def test_files_drive_the_request_through_a_transfer() -> None:
    """DIRAC's FTS scenario: a scheduled transfer, a registration inserted before it, then completion."""
    transfer = _with_files(W)
    request = _request(transfer)
    steps: list[tuple[str, str, str]] = []

    def step() -> None:
        refresh_statuses(request, now=NOW)
        steps.append((str(request.operations[0].status), str(transfer.status), str(request.status)))

    step()
    transfer.files[0].status = S
    step()
    register = _with_files(W)
    request.insert_before(transfer, register)
    step()
    register.files[0].status = D
    step()
    transfer.files[0].status = W
    step()
    transfer.files[0].status = D
    step()
    assert steps == [
        ("Waiting", "Waiting", "Waiting"),
        ("Scheduled", "Scheduled", "Scheduled"),
        ("Waiting", "Scheduled", "Waiting"),
        ("Done", "Scheduled", "Scheduled"),
        ("Done", "Waiting", "Waiting"),
        ("Done", "Done", "Done"),
    ]


def test_failed_operation_stops_the_request_and_later_ones_never_become_current() -> None:
    replicate, remove = _with_files(F), _with_files(W)
    request = _request(replicate, remove)
    refresh_statuses(request, now=NOW)
    assert request.status == RequestStatus.Failed
    assert replicate.status == OperationStatus.Failed
    assert remove.status == OperationStatus.Queued
    assert current_operation(request) is None


def test_why_a_request_failed_is_its_first_failed_operation_error_else_its_own() -> None:
    done, failed, later = _with_files(D), _with_files(D, F), _with_files(F)
    failed.files[1].error = "SourceMissing: gone"
    request = _request(done, failed, later)
    refresh_statuses(request, now=NOW)
    assert failure_reason(request) == "RemoveFile: SourceMissing: gone", (
        "the file's error, the operation has none"
    )
    failed.error = "the operation's own"
    assert failure_reason(request) == "RemoveFile: the operation's own"

    canceled = _request(_with_files(W))
    canceled.error = "canceled by operator"
    assert failure_reason(canceled) == "canceled by operator"
    assert failure_reason(_request(_with_files(D))) == ""


def test_partly_failed_operation_fails_once_nothing_waits() -> None:
    request = _request(_with_files(F, D))
    refresh_statuses(request, now=NOW)
    assert (request.operations[0].status, request.status) == (OperationStatus.Failed, RequestStatus.Failed)


def test_a_final_request_is_derived_again_when_a_file_is_reset() -> None:
    """Done and Failed are not sticky: an operator resetting a file makes the request run again (DIRAC)."""
    op = _with_files(F)
    request = _request(op)
    refresh_statuses(request, now=NOW)
    op.files[0].status = W
    refresh_statuses(request, now=NOW)
    assert (op.status, request.status) == (OperationStatus.Waiting, RequestStatus.Waiting)


def test_canceled_request_is_left_alone() -> None:
    op = _with_files(D)
    request = Request(operations=[op], status=RequestStatus.Canceled, last_update=EARLIER)
    refresh_statuses(request, now=NOW)
    assert (request.status, op.status, request.last_update) == (
        RequestStatus.Canceled,
        OperationStatus.Queued,
        EARLIER,
    )
    assert current_operation(request) is None


def test_canceled_operation_keeps_its_status_whatever_its_files() -> None:
    canceled = Operation(OperationType.RemoveFile, status=OperationStatus.Canceled, files=[File("/vo/a")])
    request = _request(canceled, _with_files(W))
    refresh_statuses(request, now=NOW)
    assert canceled.status == OperationStatus.Canceled
    assert current_operation(request) is request.operations[1]


def test_assigned_request_takes_the_derived_status() -> None:
    """Assigned marks the executor's hold; refreshing replaces it, as DIRAC's putRequest does."""
    request = Request(operations=[_with_files(D)], status=RequestStatus.Assigned)
    refresh_statuses(request, now=NOW)
    assert request.status == RequestStatus.Done


def test_done_clears_errors() -> None:
    op = _with_files(D)
    op.error = "transient: SE down"
    request = Request(operations=[op], error="earlier failure")
    refresh_statuses(request, now=NOW)
    assert (op.error, request.error) == ("", "")


def test_error_is_kept_while_not_done() -> None:
    op = _with_files(F)
    op.error = "source gone"
    request = Request(operations=[op], error="source gone")
    refresh_statuses(request, now=NOW)
    assert (op.error, request.error) == ("source gone", "source gone")


def test_changes_are_stamped_and_a_second_refresh_changes_nothing() -> None:
    waiting, queued = _with_files(W), _with_files(W)
    request = _request(waiting, queued)
    refresh_statuses(request, now=NOW)
    assert (waiting.last_update, queued.last_update, request.last_update) == (NOW, EARLIER, NOW)
    later = datetime(2025, 1, 1, tzinfo=UTC)
    refresh_statuses(request, now=later)
    assert (waiting.last_update, request.last_update) == (NOW, NOW)


@freeze_time("2024-03-04 05:06:07")
def test_default_stamp_is_the_current_utc_second() -> None:
    request = _request(_with_files(D))
    refresh_statuses(request)
    assert request.last_update == datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_current_operation_sees_file_changes_without_mutating() -> None:
    first, second = _with_files(W), _with_files(W)
    request = _request(first, second)
    first.files[0].status = D
    assert current_operation(request) is second
    assert (first.status, second.status, request.status) == (
        OperationStatus.Queued,
        OperationStatus.Queued,
        RequestStatus.Waiting,
    )


@pytest.mark.parametrize("files", [[], [D], [F]], ids=["empty", "done", "failed"])
def test_no_current_operation(files: list[FileStatus]) -> None:
    request = _request(*([_with_files(*files)] if files else []))
    assert current_operation(request) is None


# The incremental refresh (``changed=``) against the full one: the executor runs a request's current
# operations and tells which it changed; the result must be what looking at every operation gives.

_FILE_STATUSES = st.sampled_from([W, S, D, F])
_OPERATION = st.one_of(
    st.lists(_FILE_STATUSES, min_size=1, max_size=3).map(lambda statuses: _with_files(*statuses)),
    st.sampled_from(["Waiting", "Queued", "Done", "Canceled", "Failed", "Scheduled"]).map(_bare),
)


def _snapshot(request: Request) -> list[object]:
    operations = [(str(op.status), op.last_update, op.error) for op in request.operations]
    return [str(request.status), request.last_update, request.error, operations]


# Often what the executor does most: the operations it ran end Done.
_STEP = st.tuples(
    st.integers(0, 2),
    st.one_of(st.just([D, D, D]), st.lists(_FILE_STATUSES, min_size=3, max_size=3)),
    st.sampled_from(list(OperationStatus)),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(operations=st.lists(_OPERATION, min_size=1, max_size=8), steps=st.lists(_STEP, max_size=8))
def test_the_incremental_refresh_gives_what_the_full_one_gives(
    operations: list[Operation], steps: list[tuple[int, list[FileStatus], OperationStatus]]
) -> None:
    """
    Each step changes the current operation and up to two after it (what the executor ran: the files'
    statuses, or the status of an operation without files), then refreshes one copy with ``changed``
    and the other in full; both must agree throughout.
    """
    incremental = _request(*operations)
    full = copy.deepcopy(incremental)
    assert refresh_statuses(incremental, now=EARLIER) is current_operation(incremental)
    refresh_statuses(full, now=EARLIER)
    for number, (span, statuses, bare_status) in enumerate(steps):
        now = NOW + timedelta(minutes=number)
        current = current_operation(incremental)
        if current is None:
            break
        touched = slice(current.order, current.order + span + 1)
        for step_request in (incremental, full):
            for op in step_request.operations[touched]:
                for file, status in zip(op.files, statuses, strict=False):
                    file.status = status
                if not op.files:
                    op.status = bare_status
        found = refresh_statuses(incremental, now=now, changed=incremental.operations[touched])
        expected = refresh_statuses(full, now=now)
        assert _snapshot(incremental) == _snapshot(full)
        assert (found.order if found else None) == (expected.order if expected else None)
        assert found is current_operation(incremental)


def test_an_operation_changed_before_the_current_one_is_looked_at_in_full() -> None:
    """The hint does not hold then: the refresh falls back to looking at every operation."""
    request = _request(_with_files(D), _with_files(W), _with_files(W))
    assert refresh_statuses(request, now=EARLIER) is request.operations[1]
    request.operations[0].files[0].status = W
    assert refresh_statuses(request, now=NOW, changed=[request.operations[0]]) is request.operations[0]
    assert [str(op.status) for op in request] == ["Waiting", "Queued", "Queued"]
