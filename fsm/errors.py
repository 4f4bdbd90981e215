"""
Errors raised by the state-machine engine.

::

    FsmError                  root
    ├── InvalidMachine        a machine spec is broken (unreachable states, traps, exits from finals...)
    ├── UndeclaredEmission    a decider emitted a kind its transition does not declare (a bug)
    └── TransitionNotAllowed  the trigger cannot fire from the instance's state, or every guard refused
"""

from __future__ import annotations

__all__ = ["FsmError", "InvalidMachine", "TransitionNotAllowed", "UndeclaredEmission"]


class FsmError(Exception):
    """Root of the engine's errors."""

    code = "fsm_error"


class InvalidMachine(FsmError):
    """A machine spec fails its checks; the message names the offending states."""

    code = "invalid_machine"


class UndeclaredEmission(FsmError):
    """A decider emitted a kind its transition does not declare; nothing of the transition is stored."""

    code = "undeclared_emission"


class TransitionNotAllowed(FsmError):
    """
    The trigger cannot fire: not defined from the current state, or every guard refused.

    Args:
        message: what was refused.
        machine_id: the instance.
        state: its state when the trigger was refused.
        trigger: the refused trigger.
    """

    code = "transition_not_allowed"

    def __init__(self, message: str, *, machine_id: str = "", state: str = "", trigger: str = "") -> None:
        super().__init__(message)
        self.machine_id = machine_id
        self.state = state
        self.trigger = trigger
