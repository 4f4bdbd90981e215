"""
The durable engine: fire a trigger on a persisted instance in one transaction.

``transitions`` is the rule book, not the store. One ``transitions.Machine`` per engine (auto
transitions off) decides whether a trigger may fire and which guarded branch is taken. Exactly one
carrier model is ever attached to it: before each trigger the carrier is set to the stored state of
the instance being fired (``set_state`` runs no callbacks), so the machine never holds a model per
instance (attaching many is quadratic in ``transitions``) and no fire pays for an attach and detach
(60 µs, a third of a transition's CPU). The decider runs in the ``before`` callback, where an
exception still leaves the state unchanged. The rule book's transitions are internal ones: the
destination is the spec's, so ``transitions`` need not move the carrier. Firing is:

    BEGIN IMMEDIATE
      load row → carrier at row.state → trigger → decision
      UPDATE machines ... WHERE id = ? AND version = ?     (compare-and-swap: must touch one row)
      INSERT journal row (seq = version + 1)
      INSERT every emission, each under a deterministic idempotency key
    COMMIT

Any exception rolls all of it back. Loading an instance never runs callbacks and never resets its
state. This module is the only one that touches ``transitions``' dynamic attributes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from transitions import Machine, MachineError

from fsm.clock import Clock, format_time, utc_now
from fsm.crashpoints import crash_point
from fsm.errors import TransitionNotAllowed, UndeclaredEmission
from fsm.spec import Decision, Emission, MachineSpec, Transition, TransitionContext
from persistence.codec import dumps_one_key
from persistence.db import Store
from persistence.emitted import insert_emitted
from persistence.errors import ConcurrentUpdate, NotFound
from persistence.journal import append_journal
from persistence.machines import insert_machine, load_machine, load_machines, load_versions, update_machine
from persistence.rows import JournalRow, MachineRow

# transitions logs every callback at INFO; an application logging at INFO would drown in it.
logging.getLogger("transitions").setLevel(logging.WARNING)

__all__ = ["CREATE_TRIGGER", "EmissionSink", "Engine", "Fired", "OutboxSink", "idempotency_key"]

#: The trigger name of every instance's first journal row.
CREATE_TRIGGER = "create"


def idempotency_key(machine_id: str, seq: int, position: int, kind: str) -> str:
    """The key an emission is stored under: the same transition can never store it twice."""
    return f"{machine_id}/{seq}/{position}/{kind}"


class EmissionSink(Protocol):
    """Where a transition's emissions are written, inside the transition's transaction."""

    def write(self, store: Store, machine_id: str, seq: int, emissions: Sequence[Emission], at: str) -> None:
        """Store ``emissions`` of transition ``seq`` of ``machine_id``; raise to abort the transition."""


class OutboxSink:
    """The generic sink: every emission becomes a row of the ``emitted`` table."""

    def write(self, store: Store, machine_id: str, seq: int, emissions: Sequence[Emission], at: str) -> None:
        """Insert one ``emitted`` row per emission."""
        for position, emission in enumerate(emissions):
            insert_emitted(
                store.conn,
                idem_key=idempotency_key(machine_id, seq, position, emission.kind),
                machine_id=machine_id,
                seq=seq,
                position=position,
                kind=emission.kind,
                payload=dict(emission.payload),
                at=at,
            )


@dataclass(frozen=True)
class Fired:
    """The result of a committed transition: the new row, its journal row and what it emitted."""

    row: MachineRow
    journal: JournalRow
    emissions: tuple[Emission, ...]


#: The decision of a transition without a decider (frozen, so one instance serves every firing).
_NO_CHANGE = Decision()


class _Firing:
    """What one trigger run decided: the context it saw, the transition taken, its dest and decision."""

    __slots__ = ("ctx", "decision", "dest", "taken")

    def __init__(self, ctx: TransitionContext) -> None:
        self.ctx = ctx
        self.taken: Transition | None = None
        self.dest = ""
        self.decision = _NO_CHANGE


class _Carrier:
    """The single model attached to an engine's rule book; holds the state of the instance being fired."""

    state: str


def _rule_book(spec: MachineSpec) -> Machine:
    # Plain strings: transitions names Enum states by member name, not value.
    machine = Machine(
        model=None,
        states=[str(s) for s in spec.states],
        initial=str(spec.initial),
        auto_transitions=False,
        send_event=False,
    )
    for transition in spec.transitions:
        # Internal (dest None): the rule book checks the source and picks the guarded branch, but skips
        # exit/enter/set_state, which would only move the carrier (40% of a trigger's cost). The
        # destination is the spec's, recorded by the decide callback.
        machine.add_transition(
            str(transition.trigger),
            [str(s) for s in transition.sources],
            None,
            conditions=[_guard_callback(transition)] if transition.guard else None,
            before=[_decide_callback(transition)],
        )
    return machine


def _guard_callback(transition: Transition) -> Any:
    guard = transition.guard
    assert guard is not None
    return lambda firing: guard(firing.ctx)


def _decide_callback(transition: Transition) -> Any:
    decide, dest, declared = transition.decide, str(transition.dest), frozenset(transition.emits)

    def run(firing: _Firing) -> None:
        firing.taken, firing.dest = transition, dest
        if decide is not None:
            firing.decision = decide(firing.ctx)
        if any(emission.kind not in declared for emission in firing.decision.emit):
            _refuse_undeclared(transition, firing.decision)

    return run


def _refuse_undeclared(transition: Transition, decision: Decision) -> None:
    undeclared = sorted({e.kind for e in decision.emit} - set(transition.emits))
    raise UndeclaredEmission(f"transition {transition.trigger!r} emitted undeclared kinds {undeclared}")


class Engine:
    """
    Creates, loads and moves persisted instances of one machine spec.

    Args:
        spec: the machine.
        store: the database.
        clock: where every stored time comes from.
        sink: where emissions are written (default: the ``emitted`` table).
    """

    def __init__(
        self, spec: MachineSpec, store: Store, *, clock: Clock = utc_now, sink: EmissionSink | None = None
    ) -> None:
        self.spec = spec
        self.store = store
        self.clock = clock
        self.sink: EmissionSink = sink or OutboxSink()
        self._machine = _rule_book(spec)
        self._carrier = _Carrier()
        self._machine.add_model(self._carrier)
        # The carrier is shared, so triggers on one engine run one at a time.
        self._lock = threading.Lock()

    def create(self, machine_id: str, data: Mapping[str, Any]) -> MachineRow:
        """
        Create an instance in the initial state, with its creation journal row (seq 0).

        Raises:
            AlreadyExists: an instance with that id exists.
        """
        at = format_time(self.clock())
        row = MachineRow(machine_id, self.spec.name, str(self.spec.initial), 0, dict(data), at, at)
        outermost = not self.store.conn.in_transaction
        with self.store.transaction() as conn:
            data_text = insert_machine(conn, row)
            journal = JournalRow(machine_id, 0, at, CREATE_TRIGGER, None, row.state, {"data": row.data})
            append_journal(conn, journal, payload_text=dumps_one_key("data", data_text))
            self._crash_point("before", CREATE_TRIGGER, outermost)
        self._crash_point("after", CREATE_TRIGGER, outermost)
        return row

    def _crash_point(self, when: str, trigger: str, outermost: bool) -> None:
        # Inside a caller's transaction nothing commits here: the caller marks its own commit.
        if outermost:
            crash_point(f"{when}-commit:{self.spec.name}:{trigger}")

    def load(self, machine_id: str) -> MachineRow:
        """
        Load an instance as stored; runs no callback.

        Raises:
            NotFound: no such instance.
        """
        return load_machine(self.store.conn, machine_id)

    def load_many(self, machine_ids: Collection[str]) -> dict[str, MachineRow]:
        """Load the instances that exist among ``machine_ids``, by id; runs no callback."""
        return load_machines(self.store.conn, machine_ids)

    def versions(self, machine_ids: Collection[str]) -> dict[str, int]:
        """
        The stored version of each instance that exists among ``machine_ids``, by id.

        Read inside a write transaction, it tells which rows loaded earlier are still current, so that a
        batch fires from those only (a row that moved on would fail its compare-and-swap).
        """
        return load_versions(self.store.conn, machine_ids)

    def find(self, machine_id: str) -> MachineRow | None:
        """Load an instance, or return None when there is none."""
        try:
            return self.load(machine_id)
        except NotFound:
            return None

    def fire(
        self,
        machine_id: str,
        trigger: str,
        event: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        known: MachineRow | None = None,
    ) -> Fired:
        """
        Fire ``trigger`` on an instance and commit the result, all or nothing.

        Args:
            machine_id: the instance.
            trigger: the event name.
            event: the event's arguments, passed to guards and deciders and journaled.
            expected_version: the version the caller based its decision on; a different stored version
                means another writer moved first.
            known: the instance as the caller has just loaded or stored it, to fire from without loading
                it again. It is stored only if the instance is still at that version (compare-and-swap);
                otherwise nothing is stored and ConcurrentUpdate is raised.

        Raises:
            NotFound: no such instance.
            TransitionNotAllowed: the trigger cannot fire from the current state, or every guard refused.
            ConcurrentUpdate: the instance moved on since ``expected_version`` (nothing stored).
        """
        if known is not None and known.id != machine_id:
            raise ValueError(f"the row of machine {known.id!r} was given to fire {machine_id!r}")
        outermost = not self.store.conn.in_transaction
        with self.store.transaction() as conn:
            row = known if known is not None else load_machine(conn, machine_id)
            if expected_version is not None and row.version != expected_version:
                raise ConcurrentUpdate(
                    f"machine {machine_id!r} is at version {row.version}, not {expected_version}"
                )
            at_time = self.clock()
            ctx = TransitionContext(
                machine_id, trigger, row.state, row.data, dict(event or {}), at_time, row.version + 1
            )
            firing = self._run_trigger(row, ctx)
            fired = self._record(conn, row, firing, format_time(at_time))
            self._crash_point("before", trigger, outermost)
        self._crash_point("after", trigger, outermost)
        return fired

    def _run_trigger(self, row: MachineRow, ctx: TransitionContext) -> _Firing:
        event = self._machine.events.get(ctx.trigger)
        if event is None:
            raise self._refusal(row, ctx, f"unknown trigger {ctx.trigger!r} for machine {self.spec.name!r}")
        firing = _Firing(ctx)
        with self._lock:
            if self._carrier.state != row.state:
                self._machine.set_state(row.state, model=self._carrier)
            try:
                taken = event.trigger(self._carrier, firing)
            except MachineError as exc:
                raise self._refusal(row, ctx, f"{ctx.trigger!r} cannot fire from {row.state!r}") from exc
        if not taken or firing.taken is None:
            raise self._refusal(row, ctx, f"every guard of {ctx.trigger!r} refused in {row.state!r}")
        return firing

    @staticmethod
    def _refusal(row: MachineRow, ctx: TransitionContext, message: str) -> TransitionNotAllowed:
        return TransitionNotAllowed(message, machine_id=row.id, state=row.state, trigger=ctx.trigger)

    def _record(self, conn: Any, row: MachineRow, firing: _Firing, at: str) -> Fired:
        ctx, decision, dest = firing.ctx, firing.decision, firing.dest
        data = {**row.data, **decision.data}
        update_machine(conn, row.id, row.version, dest, data, at)
        payload = {
            "event": dict(ctx.event),
            "changes": dict(decision.data),
            "emitted": [e.kind for e in decision.emit],
        }
        journal = JournalRow(row.id, ctx.seq, at, ctx.trigger, row.state, dest, payload)
        append_journal(conn, journal)
        self.sink.write(self.store, row.id, ctx.seq, decision.emit, at)
        new_row = MachineRow(row.id, row.kind, dest, ctx.seq, data, row.created_at, at)
        return Fired(new_row, journal, decision.emit)

    def allowed_triggers(self, state: str) -> list[str]:
        """The triggers defined from ``state`` (guards not evaluated)."""
        return list(dict.fromkeys(t.trigger for t in self.spec.transitions_from(state)))
