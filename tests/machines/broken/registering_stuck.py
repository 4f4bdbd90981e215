"""
The upload machine, plus a Registering upload allowed into Stuck and Stuck allowed back to Replicating.

This is why the real machine sends a failed registration request to Failed: with these two edges, the
path Uploading → Registering → Stuck → Replicating → Cleaned reaches Cleaned without the transition
that emits the removal of the temporary replica, and the obligation check refuses the machine.
"""

from __future__ import annotations

from dataclasses import replace

from fsm.spec import Transition
from states.machine import UPLOAD_MACHINE
from states.names import UploadState as S
from states.names import UploadTrigger as T

MACHINE = replace(
    UPLOAD_MACHINE,
    name="registering_stuck",
    transitions=(
        *UPLOAD_MACHINE.transitions,
        Transition(T.REQUEST_FAILED, (S.REGISTERING,), S.STUCK),
        Transition(T.OPERATOR_RETRY, (S.STUCK,), S.REPLICATING),
    ),
)
