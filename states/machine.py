"""
The upload machine, declared as data (DESIGN.md, "The upload machine").

::

    Uploading ──uploaded──► Registered (final)
    Uploading ──registration_deferred──► Registering ──registered──► Registered
    Uploading ──failed_over──► FailedOver ──replication_started──► Replicating ──cleaned──► Cleaned (final)
    Uploading ──attempt_failed──► Uploading          (same SE after a wait, or the next SE)
    Uploading ──exhausted / refused──► Failed (final)
    Registering ──registration_failed──► Failed
    FailedOver / Replicating ──request_failed──► Stuck ──operator_retry──► FailedOver
    Stuck ──cancelled──► Failed

Stuck hangs off the failover branch only: a Registering upload whose request fails ends Failed (the
reason kept, the replica at its destination SE recorded): a registration that a catalog refuses
needs a person, not a retry of the same request. Stuck always returns to FailedOver (the replication
is re-issued; it is idempotent), so the graph shows no move a guard would have to forbid; its guard
requires the re-issued operations to include the temporary replica's removal.

Checked when imported: every state reachable, no trap, no exit from a final state, and no path to
Cleaned that skips the transition emitting the removal of the temporary replica.
"""

from __future__ import annotations

from fsm.spec import MachineSpec, Obligation, Transition
from states import failed_over, registering, replicating, stuck, uploading
from states.names import UploadState as S
from states.names import UploadTrigger as T
from states.operations import REGISTER_FILE, REMOVE_REPLICA, REPLICATE_AND_REGISTER

__all__ = ["UPLOAD_MACHINE"]

_STUCKABLE = (S.FAILED_OVER, S.REPLICATING)

_TRANSITIONS = (
    Transition(
        T.ATTEMPT_FAILED,
        (S.UPLOADING,),
        S.UPLOADING,
        uploading.decide_attempt_failed,
        uploading.can_try_again,
        doc="a put failed: wait and retry the same SE, or try the next SE",
    ),
    Transition(
        T.EXHAUSTED,
        (S.UPLOADING,),
        S.FAILED,
        uploading.decide_exhausted,
        uploading.is_exhausted,
        doc="no SE took the file",
    ),
    Transition(
        T.REFUSED,
        (S.UPLOADING,),
        S.FAILED,
        uploading.decide_refused,
        uploading.nothing_tried_yet,
        doc="refused before any put (conflicting catalog entry)",
    ),
    Transition(
        T.UPLOADED,
        (S.UPLOADING,),
        S.REGISTERED,
        uploading.decide_landed,
        uploading.landed_at_destination_fully_registered,
        doc="at a destination SE and in every catalog",
    ),
    Transition(
        T.REGISTRATION_DEFERRED,
        (S.UPLOADING,),
        S.REGISTERING,
        uploading.decide_landed,
        uploading.landed_at_destination_partly_registered,
        emits=(REGISTER_FILE,),
        doc="at a destination SE; RegisterFile per catalog that did not register",
    ),
    Transition(
        T.FAILED_OVER,
        (S.UPLOADING,),
        S.FAILED_OVER,
        uploading.decide_failed_over,
        uploading.landed_at_failover,
        emits=(REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA),
        doc="at a failover SE; ReplicateAndRegister to the target, then RemoveReplica",
    ),
    Transition(
        T.REGISTERED,
        (S.REGISTERING,),
        S.REGISTERED,
        registering.decide_registered,
        doc="the deferred registrations are done",
    ),
    Transition(
        T.REPLICATION_STARTED,
        (S.FAILED_OVER,),
        S.REPLICATING,
        failed_over.decide_replication_started,
        doc="the executor is copying to the target",
    ),
    Transition(
        T.CLEANED,
        (S.REPLICATING,),
        S.CLEANED,
        replicating.decide_cleaned,
        doc="target verified and registered, temporary replica removed",
    ),
    Transition(
        T.REGISTRATION_FAILED,
        (S.REGISTERING,),
        S.FAILED,
        registering.decide_registration_failed,
        doc="a deferred registration was refused or ran out of retries",
    ),
    Transition(
        T.REQUEST_FAILED,
        _STUCKABLE,
        S.STUCK,
        stuck.decide_request_failed,
        doc="the request ran out of retries",
    ),
    Transition(
        T.OPERATOR_RETRY,
        (S.STUCK,),
        S.FAILED_OVER,
        stuck.decide_operator_retry,
        stuck.reissues_removal,
        emits=(REGISTER_FILE, REPLICATE_AND_REGISTER, REMOVE_REPLICA),
        doc="an operator retries: the replication and unfinished operations, re-issued in a new request",
    ),
    Transition(T.CANCELLED, (S.STUCK,), S.FAILED, stuck.decide_cancelled, doc="an operator gives up"),
)

#: The upload lifecycle. One persisted instance per file upload.
UPLOAD_MACHINE = MachineSpec(
    name="upload",
    states=tuple(S),
    initial=S.UPLOADING,
    finals=frozenset({S.REGISTERED, S.CLEANED, S.FAILED}),
    transitions=_TRANSITIONS,
    obligations=(Obligation(S.CLEANED, REMOVE_REPLICA),),
    # The fingerprint of the last checks passed (tests/test_graph_checks.py proves it); edit the machine
    # and the checks run at import again, and that test prints the new value.
    checked="6eda7baec4a6af7e5dc3b33092d4f84d4ff703cf067285356220e729cfc8d05d",
)
