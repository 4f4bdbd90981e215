"""
Crash testing: scenarios re-entrant after a crash, run in real processes killed at named crash points.

The crash matrix (``tests/test_crash_matrix.py``) takes every crash point each scenario meets, kills a
run there, restarts, and requires the consistency checker to pass and the same final upload states,
storage and catalog contents as the crash-free run. The pytest plugin (:mod:`failover.pytest_plugin`)
gives users the same facility for their own job code.
"""

from __future__ import annotations

from failover.crashtest.runner import (
    Case,
    CrashPoint,
    DryRun,
    Outcome,
    dry_run,
    dry_run_all,
    matrix_cases,
    read_crash_log,
    run_all,
    run_case,
    run_double,
    run_forked,
)
from failover.crashtest.sandbox import SANDBOX_SES, Sandbox, open_sandbox
from failover.crashtest.scenarios import SCENARIOS, Scenario
from failover.crashtest.snapshot import differences, snapshot

__all__ = [
    "SANDBOX_SES",
    "SCENARIOS",
    "Case",
    "CrashPoint",
    "DryRun",
    "Outcome",
    "Sandbox",
    "Scenario",
    "differences",
    "dry_run",
    "dry_run_all",
    "matrix_cases",
    "open_sandbox",
    "read_crash_log",
    "run_all",
    "run_case",
    "run_double",
    "run_forked",
    "snapshot",
]
