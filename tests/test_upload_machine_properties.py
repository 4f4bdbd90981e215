"""
Random trigger sequences, valid and invalid, fired at the upload machine through the real engine and at a
small reference interpreter built from the same spec: both must agree on every step.

The reference knows nothing of ``transitions`` or SQLite. It walks ``spec.transitions_from(state)`` in
declared order, takes the first transition with the right trigger whose guard passes, and applies its
decider; no such transition means the trigger is refused. The engine must store exactly that state, data,
version and those emissions, and refuse exactly when the reference refuses, storing nothing then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from fsm.engine import Engine, idempotency_key
from fsm.errors import TransitionNotAllowed
from fsm.replay import verify_replay
from fsm.spec import Decision, Emission, MachineSpec, TransitionContext
from persistence import open_store
from persistence.emitted import read_emitted
from persistence.journal import read_journal
from states import UPLOAD_MACHINE
from states.names import UploadTrigger
from states.operations import (
    REGISTER_FILE,
    REMOVE_REPLICA,
    REPLICATE_AND_REGISTER,
    register_file_operations,
    remove_replica_operation,
    replicate_operation,
)
from states.upload_data import new_upload_data

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOGS = ("CatA", "CatB")
MACHINE_ID = "upload-1"
#: Every trigger name the upload knows, plus one no machine defines.
TRIGGERS = [*UploadTrigger, "explode"]
#: Triggers that end an upload without moving it along its happy or failover path.
ENDING = {UploadTrigger.REFUSED, UploadTrigger.CANCELLED, UploadTrigger.EXHAUSTED}
#: Headers of the new request an operator retry names.
HEADERS = [
    {"client_key": f"retry:{MACHINE_ID}:{n}", "name": "job-42", "owner": "alice", "owner_group": "vo_user"}
    for n in (1, 2)
]


@dataclass
class Reference:
    """The spec, interpreted by hand: guards and deciders are pure, so this is all a transition is."""

    spec: MachineSpec
    data: dict[str, Any]
    state: str = ""
    version: int = 0
    emitted: list[Emission] = field(default_factory=list)
    keys: list[tuple[str, int, int]] = field(default_factory=list)
    moves: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.state or self.spec.initial

    def fire(self, trigger: str, event: Mapping[str, Any], now: datetime) -> tuple[Emission, ...] | None:
        """Apply ``trigger``; return what it emits, or None when it is refused (nothing changes)."""
        ctx = TransitionContext(MACHINE_ID, trigger, self.state, self.data, event, now, self.version + 1)
        for transition in self.spec.transitions_from(self.state):
            if transition.trigger != trigger or (transition.guard is not None and not transition.guard(ctx)):
                continue
            decision = transition.decide(ctx) if transition.decide is not None else Decision()
            assert {e.kind for e in decision.emit} <= set(transition.emits)
            self.moves.append((trigger, self.state, transition.dest))
            self.state, self.version = transition.dest, self.version + 1
            self.data = {**self.data, **decision.data}
            self.emitted += decision.emit
            self.keys += [
                (idempotency_key(MACHINE_ID, self.version, i, e.kind), self.version, i)
                for i, e in enumerate(decision.emit)
            ]
            return decision.emit
        return None


class StepClock:
    """The engine's clock; the test moves it between triggers so the reference sees the same time."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@st.composite
def uploads(draw: st.DrawFn) -> dict[str, Any]:
    """New uploads with destination SEs, failover SEs, both or none; targets may overlap the failovers."""
    shape = draw(st.sampled_from(["destinations", "failovers", "both", "none"]))
    some = st.lists(st.sampled_from(["SE-A", "SE-B"]), unique=True, min_size=1, max_size=2)
    destinations = draw(some) if shape in ("destinations", "both") else []
    some = st.lists(st.sampled_from(["FO-1", "FO-2", "SE-T"]), unique=True, min_size=1, max_size=2)
    failovers = draw(some) if shape in ("failovers", "both") else []
    return new_upload_data(
        lfn=LFN,
        local_path="/scratch/job/out.root",
        size=1234,
        checksum_type="ADLER32",
        guid=GUID,
        catalogs=CATALOGS,
        destinations=destinations,
        failovers=failovers,
        targets=draw(st.sampled_from([[], ["SE-T"], ["SE-T", "SE-B"]])),
        retry_upload=draw(st.booleans()),
    )


def _operation(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """One operation payload as the upload machine emits it, from whatever the upload knows so far."""
    upload = {**data, "uploaded_se": data.get("uploaded_se", "FO-1"), "pfn": data.get("pfn", "")}
    if kind == REGISTER_FILE:
        emission = register_file_operations(upload, [CATALOGS[-1]])[0]
    elif kind == REPLICATE_AND_REGISTER:
        emission = replicate_operation(upload)
    else:
        emission = remove_replica_operation(upload)
    return dict(emission.payload)


@st.composite
def events(draw: st.DrawFn, data: Mapping[str, Any], trigger: str) -> dict[str, Any]:
    """
    One plausible event carrying every key any trigger reads: an SE, an error, catalogs, a request.

    The SE is the one being tried half the time, else any candidate or a bogus one. The request is the
    header of a new request for ``operator_retry`` (with the operations to re-issue, any of the kinds it
    may emit in any order), else the id of the request that failed (or none).
    """
    index = data["index"]
    current = [c["se"] for c in data["candidates"][index : index + 1]]
    anything = st.sampled_from([c["se"] for c in data["candidates"]] + ["SE-BOGUS"])
    se = draw(st.one_of(st.sampled_from(current), anything) if current else anything)
    retryable = draw(st.booleans())
    # Any subset in any order: deciders must not depend on how the store orders a dict's keys.
    order = draw(st.permutations(CATALOGS))
    unregistered = order[: draw(st.integers(0, len(order)))]
    evt: dict[str, Any] = {
        "se": se,
        "retryable": retryable,
        "error": {
            "code": "storage_unavailable" if retryable else "permission_denied",
            "message": f"{se} failed",
        },
        "pfn": f"file:///srv/{se.lower()}{LFN}",
        "size": 1234,
        "checksum": "0a1b2c3d",
        "checksum_type": "ADLER32",
        "registered": [c for c in CATALOGS if c not in unregistered],
        "unregistered": {c: "catalog down" for c in unregistered},
        "reason": "max attempts reached",
    }
    if trigger == UploadTrigger.OPERATOR_RETRY:
        kinds = draw(
            st.lists(st.sampled_from([REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA]), max_size=4)
        )
        evt["request"] = draw(st.sampled_from(HEADERS))
        evt["operations"] = [_operation(data, kind) for kind in kinds]
    else:
        evt["request"] = draw(st.one_of(st.none(), st.integers(1, 3)))
    return evt


def _trigger(steps: st.DataObject, reference: Reference) -> str:
    """Mostly a trigger the current state defines (so walks go deep), else any trigger at all."""
    defined = list(dict.fromkeys(t.trigger for t in UPLOAD_MACHINE.transitions_from(reference.state)))
    # Refusals and cancellations end walks early: the moving triggers get the larger share.
    moving = [t for t in defined if t not in ENDING] or defined
    choices = st.sampled_from(TRIGGERS)
    if defined:
        choices = st.one_of(st.sampled_from(moving), st.sampled_from(moving), choices)
    return str(steps.draw(choices, label="trigger"))


# No explain phase: on a failure it re-runs hundreds of variants (15 s) to annotate the report.
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)
@given(upload=uploads(), steps=st.data())
def test_the_engine_agrees_with_the_reference_interpreter(
    upload: dict[str, Any], steps: st.DataObject
) -> None:
    clock = StepClock()
    with open_store(":memory:") as store:
        engine = Engine(UPLOAD_MACHINE, store, clock=clock)
        engine.create(MACHINE_ID, upload)
        reference = Reference(UPLOAD_MACHINE, dict(upload))
        for _ in range(steps.draw(st.integers(3, 14), label="length")):
            trigger = _trigger(steps, reference)
            evt = steps.draw(events(reference.data, trigger), label="event")
            clock.now += timedelta(seconds=steps.draw(st.integers(0, 400), label="wait"))
            before = reference.state
            expected = reference.fire(trigger, evt, clock.now)
            try:
                fired = engine.fire(MACHINE_ID, trigger, evt)
            except TransitionNotAllowed:
                fired = None
            assert (fired is None) == (expected is None), (before, trigger, evt)
            row = engine.load(MACHINE_ID)
            assert (row.state, row.version) == (reference.state, reference.version)
            event(f"visited {row.state}")
            assert row.data == reference.data
            stored = read_emitted(store.conn, MACHINE_ID)
            assert [(r.kind, r.payload) for r in stored] == [
                (e.kind, dict(e.payload)) for e in reference.emitted
            ]
            assert [(r.idem_key, r.seq, r.position) for r in stored] == reference.keys
            if fired is not None:
                assert fired.emissions == expected
                event(f"fired {trigger}")
        event(f"ended in {reference.state}")
        journal = read_journal(store.conn, MACHINE_ID)
        assert [(j.trigger, j.src, j.dst) for j in journal[1:]] == reference.moves
        verify_replay(UPLOAD_MACHINE, engine.load(MACHINE_ID), journal)
