"""
The pytest plugin (issue 5): a user's crash test, written as in the README, run by pytest itself.

The plugin is loaded through its ``pytest11`` entry point when the package is installed with it, and
explicitly with ``-p failover.pytest_plugin`` otherwise.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: A test file as a user would write it: the README's example, plus checks of what the fixtures give.
USER_TEST = """
import pytest
from failover import Executor, ExecutorPolicy, FailoverTransfer, fsck, resume
from failover.testing import Fault


def stage_out(env, path):
    ft = FailoverTransfer(environment=env, client_key="job-42")
    ft.transferAndRegisterFileWithFailover("out.root", str(path), "/vo/user/a/out.root", "SE-A", "FAIL-1", {})
    ft.commitRequest()


@pytest.mark.parametrize(
    "point", ["before-put@2", "after-put", "after-commit:upload:failed_over", "after-commit-request"]
)
def test_output_survives_a_crash(failover_sandbox, fault_injector, crash_at, tmp_path, point):
    path = tmp_path / "out.root"
    path.write_bytes(b"grid job output\\n" * 100)
    fault_injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
    met = crash_at(point, stage_out, failover_sandbox, path)
    assert met[-1] == point.partition("@")[0]
    resume(failover_sandbox)
    fault_injector.clear()
    Executor(failover_sandbox, ExecutorPolicy(backoff_base=0, jitter=0)).run_once()
    assert fsck(failover_sandbox).ok
    assert failover_sandbox.se("SE-A").exists("/vo/user/a/out.root")
    assert not failover_sandbox.se("FAIL-1").exists("/vo/user/a/out.root")
    assert failover_sandbox.uploads.load("/vo/user/a/out.root").state == "Cleaned"


def test_a_crash_after_work_done_in_the_test_process(failover_sandbox, crash_at, tmp_path):
    first, second = tmp_path / "a.root", tmp_path / "b.root"
    first.write_bytes(b"a\\n" * 100)
    second.write_bytes(b"b\\n" * 100)
    ft = FailoverTransfer(environment=failover_sandbox, client_key="job-7")
    ft.transferAndRegisterFile("a.root", str(first), "/vo/user/a/a.root", "SE-A", {})
    upload = ft.transferAndRegisterFile
    crash_at("after-register", upload, "b.root", str(second), "/vo/user/a/b.root", "SE-A", {})
    resume(failover_sandbox)
    assert fsck(failover_sandbox).ok
    lfns = ("/vo/user/a/a.root", "/vo/user/a/b.root")
    assert [failover_sandbox.uploads.load(lfn).state for lfn in lfns] == ["Registered", "Registered"]


def test_sandbox_has_its_ses_and_a_master_catalog(failover_sandbox, tmp_path):
    assert sorted(failover_sandbox.storage) == ["FAIL-1", "FAIL-2", "SE-A", "SE-B"]
    assert [c.name for c in failover_sandbox.catalogs.masters()] == ["LocalCatalog"]
    assert failover_sandbox.store.path.startswith(str(tmp_path))


def test_fault_injector_wraps_the_sandbox(failover_sandbox, fault_injector, tmp_path):
    path = tmp_path / "out.root"
    path.write_bytes(b"data\\n" * 10)
    fault_injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, times=None)
    ft = FailoverTransfer(environment=failover_sandbox)
    result = ft.transferAndRegisterFile("out.root", str(path), "/vo/user/a/f", ["SE-A", "SE-B"], {})
    assert result["Value"]["uploadedSE"] == "SE-B"
    assert fault_injector.calls[("SE-A", "put")] == 1


def test_a_fault_for_one_lfn_fails_only_that_file(failover_sandbox, fault_injector, tmp_path):
    bad = "/vo/user/a/bad"
    fault_injector.inject("SE-A", Fault.STORAGE_UNAVAILABLE, operation="put", times=None, lfn=bad)
    ft = FailoverTransfer(environment=failover_sandbox)
    landed = {}
    for name in ("good", "bad"):
        path = tmp_path / name
        path.write_bytes(name.encode() * 10)
        result = ft.transferAndRegisterFile(name, str(path), f"/vo/user/a/{name}", ["SE-A", "SE-B"], {})
        landed[name] = result["Value"]["uploadedSE"]
    assert landed == {"good": "SE-A", "bad": "SE-B"}
"""

#: Misuses of ``crash_at`` that must fail the user's test with a clear message.
MISUSE_TEST = """
def never_crashes():
    pass


def raises():
    raise RuntimeError("boom in the job")


def test_point_never_reached(crash_at):
    crash_at("after-put", never_crashes)


def test_job_raises_first(crash_at):
    crash_at("after-put", raises)
"""


def _plugin_args() -> list[str]:
    """Load the plugin explicitly unless its entry point is installed (loading it twice is an error)."""
    installed = any(ep.value == "failover.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "failover.pytest_plugin"]


def test_a_user_crash_test_passes_with_the_plugin_fixtures(pytester: pytest.Pytester) -> None:
    """The README example: crash a job at each point, resume, run the executor, fsck clean."""
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


def test_crash_at_fails_the_test_when_the_point_is_not_reached(pytester: pytest.Pytester) -> None:
    """A crash test that never crashes, or whose job raises first, proves nothing: it fails, saying why."""
    pytester.makepyfile(test_misuse=MISUSE_TEST)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*never_crashes returned without reaching crash point after-put; it met []*",
            "*raises failed before reaching crash point after-put:*",
            "*RuntimeError: boom in the job*",
        ]
    )


def test_fixtures_are_listed_by_pytest(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` shows the three fixtures with their docstrings."""
    result = pytester.runpytest(*_plugin_args(), "--fixtures")
    for fixture in ("failover_sandbox", "fault_injector", "crash_at"):
        result.stdout.fnmatch_lines([f"{fixture} -- *failover/pytest_plugin.py:*"])


def test_the_readme_example_passes_as_written(pytester: pytest.Pytester) -> None:
    """The README's plugin example, copied from the README itself, passes under pytest."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "failover_sandbox" in b]
    pytester.makepyfile(test_stage_out=example)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
