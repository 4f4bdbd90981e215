"""
The request executor (SPEC.md §5): runs committed requests under leases, with idempotent handlers,
retries with backoff, and drives the upload machines to their final states.
"""

from __future__ import annotations

from failover.executor.leases import Lease, LeaseLost
from failover.executor.operations import MAX_ATTEMPTS_SUFFIX
from failover.executor.policy import ExecutorPolicy
from failover.executor.report import PassReport
from failover.executor.runner import Executor

__all__ = ["MAX_ATTEMPTS_SUFFIX", "Executor", "ExecutorPolicy", "Lease", "LeaseLost", "PassReport"]
