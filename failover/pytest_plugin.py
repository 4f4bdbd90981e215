"""
A pytest plugin to crash-test job code: a sandbox, scripted faults, and a crash at a named point.

Installed with failover (entry point ``pytest11``: ``failover = "failover.pytest_plugin"``), or loaded
with ``pytest -p failover.pytest_plugin``. Fixtures:

- ``failover_sandbox``: an :class:`~failover.environment.Environment` in the test's ``tmp_path``: a
  database, a master catalog (``LocalCatalog``) and the SEs ``SE-A``, ``SE-B``, ``FAIL-1``, ``FAIL-2``.
  Every SE and catalog call goes through ``fault_injector``.
- ``fault_injector``: the sandbox's :class:`~failover.testing.FaultInjector`; script faults on it.
- ``crash_at``: ``crash_at(point, fn, *args, **kwargs)`` runs ``fn`` in a forked child process armed
  to die at crash point ``point`` (``name`` or ``name@n``, see :mod:`fsm.crashpoints`), and fails the
  test unless the child died there. The test then restarts, as a real job would, on the same sandbox.

A test a user would write::

    import pytest
    from failover import Executor, ExecutorPolicy, FailoverTransfer, fsck, resume
    from failover.testing import Fault

    def stage_out(env, path):
        ft = FailoverTransfer(environment=env, client_key="job-42")
        ft.transferAndRegisterFileWithFailover(
            "out.root", str(path), "/vo/user/a/out.root", "SE-A", "FAIL-1", {}
        )
        ft.commitRequest()

    @pytest.mark.parametrize("point", ["after-put", "after-commit:upload:failed_over"])
    def test_output_survives_a_crash(failover_sandbox, fault_injector, crash_at, tmp_path, point):
        path = tmp_path / "out.root"
        path.write_bytes(b"grid job output\\n" * 100)
        fault_injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
        crash_at(point, stage_out, failover_sandbox, path)
        resume(failover_sandbox)
        fault_injector.clear()
        Executor(failover_sandbox, ExecutorPolicy(backoff_base=0, jitter=0)).run_once()
        assert fsck(failover_sandbox).ok
        assert failover_sandbox.se("SE-A").exists("/vo/user/a/out.root")

The child is a fork of the test process, so ``fn`` and its arguments need not be picklable and it may
use the sandbox (the test process waits meanwhile). What the child changes in memory, such as the
fault injector's call counts, stays in the child; what it stored stays stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failover.crashtest.runner import CrashPoint, read_crash_log, run_forked
from failover.crashtest.sandbox import open_sandbox
from failover.environment import Environment
from failover.testing import FaultInjector
from fsm.crashpoints import CRASH_EXIT_CODE

__all__ = ["CrashAt", "crash_at", "failover_sandbox", "fault_injector"]


class CrashAt:
    """The ``crash_at`` fixture's helper: run a function in a child process killed at a crash point."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs = 0

    def __call__(
        self, point: str, fn: Callable[..., object], /, *args: object, **kwargs: object
    ) -> list[str]:
        """
        Run ``fn(*args, **kwargs)`` in a forked child armed to die at ``point``; fail unless it did.

        Args:
            point: a crash point name, or ``name@n`` for its n-th hit (counted from the child's start).
            fn: the work, e.g. the job code under test.

        Returns:
            The crash points the child met, in order, the fatal one last.
        """
        self.runs += 1
        log, errors = self.workdir / f"crash-{self.runs}.log", self.workdir / f"error-{self.runs}.txt"
        crash = CrashPoint.parse(point)
        code = run_forked(lambda: fn(*args, **kwargs), crash=crash, log=log, errors=errors)
        met = [str(hit.name) for hit in read_crash_log(log)]
        name = getattr(fn, "__name__", repr(fn))
        if code == 0:
            pytest.fail(f"{name} returned without reaching crash point {point}; it met {met}", pytrace=False)
        if code != CRASH_EXIT_CODE:
            detail = errors.read_text(encoding="utf-8") if errors.exists() else f"exit code {code}"
            pytest.fail(f"{name} failed before reaching crash point {point}:\n{detail}", pytrace=False)
        return met


@pytest.fixture
def fault_injector() -> FaultInjector:
    """The sandbox's fault injector: every call of ``failover_sandbox``'s SEs and catalog goes through it."""
    return FaultInjector()


@pytest.fixture
def failover_sandbox(tmp_path: Path, fault_injector: FaultInjector) -> Iterator[Environment]:
    """
    A throw-away environment in ``tmp_path``: database, master catalog ``LocalCatalog``, SEs ``SE-A``,
    ``SE-B``, ``FAIL-1`` and ``FAIL-2``, wrapped by ``fault_injector`` so that tests can script failures.
    """
    box = open_sandbox(tmp_path / "failover-sandbox", faults=fault_injector)
    yield box.env
    box.close()


@pytest.fixture
def crash_at(tmp_path: Path) -> CrashAt:
    """
    ``crash_at(point, fn, *args)``: run ``fn`` in a real child process killed at a named crash point.

    A forked child, not a thread or a mock: it dies with ``os._exit`` as a power cut would kill a job,
    so what it committed is all the restart finds. Its crash logs stay in ``tmp_path/crash-at``.
    """
    workdir = tmp_path / "crash-at"
    workdir.mkdir(exist_ok=True)
    return CrashAt(workdir)
