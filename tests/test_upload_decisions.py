"""
The upload machine's guards and deciders, called directly with hand-built contexts: no engine, no database.

Events follow ``states.uploading``: a failed put is ``{"se", "error", "retryable"}``, a landed file is
``{"se", "pfn", "size", "checksum", "checksum_type", "registered", "unregistered"}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fsm.clock import format_time
from fsm.spec import Decision, Emission, TransitionContext
from states import UPLOAD_MACHINE, failed_over, registering, replicating, stuck, uploading
from states.names import Role, UploadState, UploadTrigger
from states.operations import REGISTER_FILE, REMOVE_REPLICA, REPLICATE_AND_REGISTER
from states.retry import RetryPolicy
from states.upload_data import current_candidate, new_upload_data, role_of

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
TRANSIENT = {"code": "storage_unavailable", "message": "SE unreachable"}
PERMANENT = {"code": "permission_denied", "message": "no write permission"}


def upload(
    destinations: Sequence[str] = (),
    failovers: Sequence[str] = (),
    *,
    targets: Sequence[str] = (),
    catalogs: Sequence[str] = ("CatA", "CatB"),
    retry_upload: bool = False,
) -> dict[str, Any]:
    return new_upload_data(
        lfn=LFN,
        local_path="/scratch/job/out.root",
        size=1234,
        checksum_type="ADLER32",
        guid=GUID,
        catalogs=catalogs,
        destinations=destinations,
        failovers=failovers,
        targets=targets,
        retry_upload=retry_upload,
    )


def context(
    data: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    trigger: str = UploadTrigger.ATTEMPT_FAILED,
    source: str = UploadState.UPLOADING,
    now: datetime = NOW,
) -> TransitionContext:
    return TransitionContext("upload-1", trigger, source, data, event, now, 1)


def failure(se: str, *, retryable: bool = True) -> dict[str, Any]:
    return {"se": se, "error": TRANSIENT if retryable else PERMANENT, "retryable": retryable}


def landing(
    se: str, *, registered: Sequence[str] = (), unregistered: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "se": se,
        "pfn": f"file:///srv/{se.lower()}{LFN}",
        "size": 1234,
        "checksum": "0a1b2c3d",
        "checksum_type": "ADLER32",
        "registered": list(registered),
        "unregistered": dict(unregistered or {}),
    }


def apply(data: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    return {**data, **decision.data}


# ---- failed attempts and retries (SPEC §2)


def test_one_se_with_retry_upload_waits_10_60_300_then_gives_up() -> None:
    """DIRAC's schedule: 4 attempts on the same SE, no wait after the last one."""
    data, now = upload(["SE-A"], retry_upload=True), NOW
    for attempt, delay in enumerate([10, 60, 300], start=1):
        ctx = context(data, failure("SE-A"), now=now)
        assert uploading.can_try_again(ctx)
        assert not uploading.is_exhausted(ctx)
        assert uploading.failure_trigger(data, ctx.event) is UploadTrigger.ATTEMPT_FAILED
        data = apply(data, uploading.decide_attempt_failed(ctx))
        assert data["index"] == 0
        assert data["attempts"] == {"SE-A": attempt}
        assert data["next_attempt_at"] == format_time(now + timedelta(seconds=delay))
        now += timedelta(seconds=delay)
    last = context(data, failure("SE-A"), trigger=UploadTrigger.EXHAUSTED, now=now)
    assert not uploading.can_try_again(last)
    assert uploading.is_exhausted(last)
    assert uploading.failure_trigger(data, last.event) is UploadTrigger.EXHAUSTED
    data = apply(data, uploading.decide_exhausted(last))
    assert data["attempts"] == {"SE-A": 4}
    assert data["next_attempt_at"] is None
    assert current_candidate(data) is None


def test_the_retry_delays_come_from_the_policy_stored_with_the_upload() -> None:
    data = new_upload_data(
        lfn=LFN,
        local_path="/scratch/job/out.root",
        size=1,
        checksum_type="ADLER32",
        guid=GUID,
        catalogs=["CatA"],
        destinations=["SE-A"],
        retry_upload=True,
        policy=RetryPolicy((1.0, 2.0)),
    )
    assert data["retry_delays"] == [1.0, 2.0]
    first = apply(data, uploading.decide_attempt_failed(context(data, failure("SE-A"))))
    assert first["next_attempt_at"] == format_time(NOW + timedelta(seconds=1))
    second = apply(first, uploading.decide_attempt_failed(context(first, failure("SE-A"))))
    assert second["next_attempt_at"] == format_time(NOW + timedelta(seconds=2))
    assert uploading.failure_trigger(second, failure("SE-A")) is UploadTrigger.EXHAUSTED


@pytest.mark.parametrize("retry_upload", [False, True])
@pytest.mark.parametrize("retryable", [False, True])
def test_several_ses_move_on_at_once(retry_upload: bool, retryable: bool) -> None:
    """With several SEs there is no waiting, whatever retryUpload says (Keep)."""
    ses = ["SE-A", "SE-B", "SE-C"]
    data = upload(ses, retry_upload=retry_upload)
    for index, se in enumerate(ses[:-1]):
        ctx = context(data, failure(se, retryable=retryable))
        assert uploading.failure_trigger(data, ctx.event) is UploadTrigger.ATTEMPT_FAILED
        assert uploading.can_try_again(ctx)
        data = apply(data, uploading.decide_attempt_failed(ctx))
        assert data["index"] == index + 1
        assert data["next_attempt_at"] is None
        assert current_candidate(data) == {"se": ses[index + 1], "role": "destination"}
    last = context(data, failure("SE-C", retryable=retryable))
    assert not uploading.can_try_again(last)
    assert uploading.failure_trigger(data, last.event) is UploadTrigger.EXHAUSTED


def test_a_permanent_error_exhausts_a_single_se_at_once() -> None:
    data = upload(["SE-A"], retry_upload=True)
    ctx = context(data, failure("SE-A", retryable=False))
    assert not uploading.can_try_again(ctx)
    assert uploading.is_exhausted(ctx)
    assert uploading.failure_trigger(data, ctx.event) is UploadTrigger.EXHAUSTED


def test_without_retry_upload_a_single_se_is_tried_once() -> None:
    data = upload(["SE-A"], retry_upload=False)
    assert uploading.failure_trigger(data, failure("SE-A")) is UploadTrigger.EXHAUSTED


def test_every_failure_is_kept_with_its_se_attempt_and_time() -> None:
    data = upload(["SE-A", "SE-B"], retry_upload=False)
    later = NOW + timedelta(seconds=7)
    data = apply(data, uploading.decide_attempt_failed(context(data, failure("SE-A"))))
    data = apply(data, uploading.decide_exhausted(context(data, failure("SE-B", retryable=False), now=later)))
    assert data["failures"] == [
        {"se": "SE-A", "attempt": 1, "at": format_time(NOW), "error": TRANSIENT},
        {"se": "SE-B", "attempt": 1, "at": format_time(later), "error": PERMANENT},
    ]
    assert data["index"] == 2


def test_no_candidate_is_exhausted_from_the_start() -> None:
    data = upload([])
    assert data["candidates"] == []
    assert uploading.is_exhausted(context(data, {}, trigger=UploadTrigger.EXHAUSTED))
    assert uploading.failure_trigger(data, {}) is UploadTrigger.EXHAUSTED
    decided = apply(data, uploading.decide_exhausted(context(data, {})))
    assert decided["failures"] == []
    assert decided["next_attempt_at"] is None


@pytest.mark.parametrize("se", ["SE-B", "SE-BOGUS"])
def test_a_failure_reported_for_another_se_than_the_current_one_is_refused(se: str) -> None:
    """SEs are tried in order: a failure at an SE not being tried must neither advance nor end the upload."""
    data = upload(["SE-A", "SE-B"])
    ctx = context(data, failure(se))
    assert not uploading.can_try_again(ctx)
    assert not uploading.is_exhausted(ctx)


def test_a_refusal_is_allowed_only_before_any_attempt() -> None:
    """A refusal happens before anything is uploaded: once a put was tried, it is too late to refuse."""
    data = upload(["SE-A", "SE-B"])
    refusal = {"error": {"code": "registration_conflict", "message": "different GUID in CatA"}}
    assert uploading.nothing_tried_yet(context(data, refusal, trigger=UploadTrigger.REFUSED))
    data = apply(data, uploading.decide_attempt_failed(context(data, failure("SE-A"))))
    assert not uploading.nothing_tried_yet(context(data, refusal, trigger=UploadTrigger.REFUSED))


def test_a_refusal_keeps_its_reason() -> None:
    error = {"code": "registration_conflict", "message": "different GUID in CatA"}
    decision = uploading.decide_refused(context(upload(["SE-A"]), {"error": error}))
    assert decision == Decision({"refusal": error})


# ---- landing: which outcome (SPEC §2-3)

LANDINGS = [
    ("SE-A", {}, UploadTrigger.UPLOADED),
    ("SE-A", {"CatB": "catalog down"}, UploadTrigger.REGISTRATION_DEFERRED),
    ("FO-1", {}, UploadTrigger.FAILED_OVER),
    ("FO-1", {"CatB": "catalog down"}, UploadTrigger.FAILED_OVER),
]
GUARDS = {
    UploadTrigger.UPLOADED: uploading.landed_at_destination_fully_registered,
    UploadTrigger.REGISTRATION_DEFERRED: uploading.landed_at_destination_partly_registered,
    UploadTrigger.FAILED_OVER: uploading.landed_at_failover,
}


@pytest.mark.parametrize(("se", "unregistered", "expected"), LANDINGS)
def test_the_outcome_follows_the_se_role_and_the_registrations(
    se: str, unregistered: dict[str, str], expected: UploadTrigger
) -> None:
    data = upload(["SE-A"], ["FO-1"], targets=["SE-T"])
    if se == "FO-1":
        data = apply(data, uploading.decide_attempt_failed(context(data, failure("SE-A"))))
    event = landing(
        se, registered=[c for c in ("CatA", "CatB") if c not in unregistered], unregistered=unregistered
    )
    assert uploading.outcome_trigger(data, event) is expected
    ctx = context(data, event, trigger=expected)
    assert {trigger for trigger, guard in GUARDS.items() if guard(ctx)} == {expected}


@pytest.mark.parametrize("se", ["SE-BOGUS", "FO-1"])
def test_a_landing_at_an_se_that_is_not_being_tried_passes_no_guard(se: str) -> None:
    data = upload(["SE-A"], ["FO-1"])
    ctx = context(data, landing(se, registered=["CatA", "CatB"]))
    assert [trigger for trigger, guard in GUARDS.items() if guard(ctx)] == []


# ---- emissions, exact payloads


def _file(*, pfn: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "lfn": LFN,
        "checksum": "0a1b2c3d",
        "checksum_type": "ADLER32",
        "size": 1234,
        "guid": GUID,
    }
    if pfn is not None:
        entry["pfn"] = pfn
    return entry


def _register_file(catalog: str, se: str) -> Emission:
    payload = {
        "type": REGISTER_FILE,
        "target_se": [se],
        "source_se": "",
        "catalog": [catalog],
        "files": [_file(pfn=f"file:///srv/{se.lower()}{LFN}")],
    }
    return Emission(REGISTER_FILE, payload)


def test_deferred_registration_emits_one_register_file_per_failed_catalog() -> None:
    data = upload(["SE-A"], catalogs=["CatA", "CatB", "CatC"])
    event = landing("SE-A", registered=["CatB"], unregistered={"CatA": "down", "CatC": "timeout"})
    decision = uploading.decide_landed(context(data, event, trigger=UploadTrigger.REGISTRATION_DEFERRED))
    assert decision.emit == (_register_file("CatA", "SE-A"), _register_file("CatC", "SE-A"))
    for emission in decision.emit:
        assert all(value for value in emission.payload["files"][0].values())
    assert decision.data["uploaded_se"] == "SE-A"
    assert decision.data["unregistered_catalogs"] == {"CatA": "down", "CatC": "timeout"}


def test_a_fully_registered_landing_emits_nothing() -> None:
    data = upload(["SE-A"])
    event = landing("SE-A", registered=["CatA", "CatB"])
    decision = uploading.decide_landed(context(data, event, trigger=UploadTrigger.UPLOADED))
    assert decision.emit == ()
    assert decision.data["registered_catalogs"] == ["CatA", "CatB"]


def _replicate(source: str, targets: list[str], catalogs: list[str]) -> Emission:
    payload = {
        "type": REPLICATE_AND_REGISTER,
        "target_se": targets,
        "source_se": source,
        "catalog": catalogs,
        "files": [_file()],
    }
    return Emission(REPLICATE_AND_REGISTER, payload)


def _remove(se: str) -> Emission:
    payload = {
        "type": REMOVE_REPLICA,
        "target_se": [se],
        "source_se": "",
        "catalog": [],
        "files": [{"lfn": LFN}],
    }
    return Emission(REMOVE_REPLICA, payload)


def test_failing_over_registered_everywhere_emits_replicate_then_remove() -> None:
    data = upload([], ["FO-1"], targets=["SE-T1", "SE-T2"], catalogs=["CatA", "CatB"])
    event = landing("FO-1", registered=["CatA", "CatB"])
    decision = uploading.decide_failed_over(context(data, event, trigger=UploadTrigger.FAILED_OVER))
    assert decision.emit == (_replicate("FO-1", ["SE-T1", "SE-T2"], ["CatA", "CatB"]), _remove("FO-1"))


def test_failing_over_with_a_catalog_down_registers_there_first() -> None:
    data = upload([], ["FO-1"], targets=["SE-T1"], catalogs=["CatA", "CatB"])
    event = landing("FO-1", registered=["CatA"], unregistered={"CatB": "down"})
    decision = uploading.decide_failed_over(context(data, event, trigger=UploadTrigger.FAILED_OVER))
    assert decision.emit == (
        _register_file("CatB", "FO-1"),
        _replicate("FO-1", ["SE-T1"], ["CatA", "CatB"]),
        _remove("FO-1"),
    )


def test_master_only_catalogs_are_the_ones_the_replica_is_registered_in() -> None:
    """Fix: DIRAC leaves Catalog empty, so a master-only upload's replica was registered everywhere."""
    data = upload([], ["FO-1"], targets=["SE-T1"], catalogs=["Master"])
    event = landing("FO-1", registered=["Master"])
    decision = uploading.decide_failed_over(context(data, event, trigger=UploadTrigger.FAILED_OVER))
    assert decision.emit[0].payload["catalog"] == ["Master"]


# ---- new upload data


@pytest.mark.parametrize(
    ("destinations", "failovers", "targets", "candidates", "expected_targets"),
    [
        ([], ["SE-T", "FO-1", "FO-2"], ["SE-T"], [("FO-1", "failover"), ("FO-2", "failover")], ["SE-T"]),
        (["SE-A", "SE-B"], [], [], [("SE-A", "destination"), ("SE-B", "destination")], ["SE-A", "SE-B"]),
        (
            ["SE-A", "SE-B"],
            ["SE-B", "FO-1"],
            [],
            [("SE-A", "destination"), ("SE-B", "destination"), ("FO-1", "failover")],
            ["SE-A", "SE-B"],
        ),
    ],
    ids=["explicit-targets", "targets-default-to-destinations", "defaulted-targets-skipped-in-failovers"],
)
def test_new_upload_data_candidates_and_targets(
    destinations: list[str],
    failovers: list[str],
    targets: list[str],
    candidates: list[tuple[str, str]],
    expected_targets: list[str],
) -> None:
    """SEs that are targets are skipped in the failover list (Fix), also when the targets are defaulted."""
    data = upload(destinations, failovers, targets=targets)
    assert [(c["se"], c["role"]) for c in data["candidates"]] == candidates
    assert data["targets"] == expected_targets
    for se, role in candidates:
        assert role_of(data, se) is Role(role)


def test_new_upload_data_starts_with_no_progress() -> None:
    data = upload(["SE-A"], retry_upload=True)
    assert data["index"] == 0
    assert data["attempts"] == {}
    assert data["failures"] == []
    assert data["next_attempt_at"] is None
    assert data["retry_delays"] == [10.0, 60.0, 300.0]


# ---- after landing


@pytest.mark.parametrize(
    ("catalogs", "expected"),
    [
        (["CatA", "CatB", "CatC"], ["CatA", "CatB", "CatC"]),
        (["CatC", "CatB", "CatA"], ["CatC", "CatB", "CatA"]),
    ],
    ids=["chosen-in-order", "chosen-reversed"],
)
def test_registered_moves_the_deferred_catalogs_to_the_registered_list(
    catalogs: list[str], expected: list[str]
) -> None:
    """Every catalog ends registered, in the order the catalogs were chosen, not the order they registered."""
    data = {
        "catalogs": catalogs,
        "registered_catalogs": ["CatB"],
        "unregistered_catalogs": {"CatA": "down", "CatC": "timeout"},
    }
    decision = registering.decide_registered(
        context(data, {}, trigger=UploadTrigger.REGISTERED, source=UploadState.REGISTERING)
    )
    assert decision == Decision({"registered_catalogs": expected, "unregistered_catalogs": {}})


def test_replication_start_and_cleaning_record_where_the_file_is() -> None:
    data = {"targets": ["SE-T1", "SE-T2"], "uploaded_se": "FO-1"}
    started = failed_over.decide_replication_started(context(data, {}, source=UploadState.FAILED_OVER))
    assert started == Decision({"replication_started_at": format_time(NOW)})
    cleaned = replicating.decide_cleaned(context(data, {}, source=UploadState.REPLICATING))
    assert cleaned == Decision({"final_ses": ["SE-T1", "SE-T2"], "temporary_se": None})


@pytest.mark.parametrize("request_id", [7, None], ids=["request-named", "request-unnamed"])
@pytest.mark.parametrize("origin", [UploadState.FAILED_OVER, UploadState.REPLICATING])
def test_stuck_remembers_its_origin_reason_and_request(origin: UploadState, request_id: int | None) -> None:
    event: dict[str, Any] = {"reason": "source gone"}
    if request_id is not None:
        event["request"] = request_id
    decided = stuck.decide_request_failed(context({}, event, source=origin))
    assert decided == Decision(
        {"stuck_from": origin.value, "stuck_reason": "source gone", "stuck_request": request_id}
    )


def test_operator_retry_is_one_transition_from_stuck_to_failed_over_guarded_by_the_removal() -> None:
    """Whatever state the upload got stuck in, a retry re-issues the replication from FailedOver."""
    (retry,) = [t for t in UPLOAD_MACHINE.transitions if t.trigger == UploadTrigger.OPERATOR_RETRY]
    assert (retry.sources, retry.dest) == ((UploadState.STUCK,), UploadState.FAILED_OVER)
    assert retry.guard is stuck.reissues_removal
    assert retry.emits == (REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA)


@pytest.mark.parametrize(
    ("kinds", "allowed"),
    [([REPLICATE_AND_REGISTER], False), ([], False), ([REPLICATE_AND_REGISTER, REMOVE_REPLICA], True)],
)
def test_a_retry_must_reissue_the_removal_of_the_temporary_replica(kinds: list[str], allowed: bool) -> None:
    """Without a RemoveReplica the upload could reach Cleaned with its failover copy still there."""
    ctx = context({}, {"request": NEW_HEADER, "operations": [_reissued(kind) for kind in kinds]})
    assert stuck.reissues_removal(ctx) is allowed


OLD_HEADER = {"client_key": "job-42", "name": "job-42", "owner": "alice", "owner_group": "vo_user"}
NEW_HEADER = {**OLD_HEADER, "client_key": "retry:upload-1:3"}


def _reissued(kind: str) -> dict[str, Any]:
    """An operation payload as ``failover.operator`` re-issues it (files carry their PFN)."""
    return {
        "type": kind,
        "target_se": ["SE-T1"] if kind == REPLICATE_AND_REGISTER else ["FO-1"],
        "source_se": "FO-1" if kind == REPLICATE_AND_REGISTER else "",
        "catalog": ["CatB"] if kind == REGISTER_FILE else ["CatA", "CatB"],
        "files": [_file(pfn=f"file:///srv/fo-1{LFN}")],
    }


@pytest.mark.parametrize(
    "kinds",
    [
        [REPLICATE_AND_REGISTER],
        [REPLICATE_AND_REGISTER, REMOVE_REPLICA],
        [REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA],
        [REMOVE_REPLICA, REPLICATE_AND_REGISTER],
    ],
    ids=["replicate", "replicate-remove", "register-replicate-remove", "as-given-order"],
)
@pytest.mark.parametrize(("before", "after"), [(None, 1), (2, 3)], ids=["first-retry", "third-retry"])
def test_operator_retry_clears_the_mark_counts_switches_request_and_emits_the_operations(
    kinds: list[str], before: int | None, after: int
) -> None:
    """The retry emits exactly the event's operations, in the event's order, into the event's request."""
    data: dict[str, Any] = {
        "stuck_from": "Replicating",
        "stuck_reason": "timeout",
        "stuck_request": 4,
        "request": OLD_HEADER,
    }
    if before is not None:
        data["operator_retries"] = before
    operations = [_reissued(kind) for kind in kinds]
    event = {"request": NEW_HEADER, "operations": operations}
    ctx = context(data, event, trigger=UploadTrigger.OPERATOR_RETRY, source=UploadState.STUCK)
    decision = stuck.decide_operator_retry(ctx)
    assert decision == Decision(
        {
            "stuck_from": None,
            "stuck_reason": None,
            "stuck_request": None,
            "operator_retries": after,
            "request": NEW_HEADER,
        },
        tuple(Emission(kind, payload) for kind, payload in zip(kinds, operations, strict=True)),
    )
    assert data["request"] == OLD_HEADER


def test_cancelling_keeps_the_reason_it_got_stuck_for() -> None:
    data = {"stuck_from": "Replicating", "stuck_reason": "target SE full"}
    decision = stuck.decide_cancelled(context(data, {}, source=UploadState.STUCK))
    assert decision == Decision({"refusal": {"code": "cancelled", "message": "cancelled: target SE full"}})
