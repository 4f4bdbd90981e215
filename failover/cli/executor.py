"""
Running and steering the work: ``failover executor`` (:class:`~failover.Executor`), ``resume``
(:func:`~failover.resume`), ``retry`` (:func:`~failover.retry_upload`) and ``cancel``
(:func:`~failover.cancel_request`, :func:`~failover.cancel_upload`).
"""

from __future__ import annotations

import logging
import signal

import click

from failover.cli.app import (
    Workspace,
    error_line,
    find_upload,
    output_options,
    print_json,
    stdout,
    stopping_on_signals,
    workspace_options,
)
from failover.cli.status import STUCK_WAYS_ON
from failover.executor import Executor, PassReport
from failover.executor.processes import run_forever_in_processes, run_pass_in_processes
from failover.executor.report import failed_requests
from failover.executor.runner import new_executor_name
from failover.operator import cancel_request, cancel_upload, retry_upload, retry_uploads
from failover.resume import resume as resume_uploads
from failover.resume import upload_ids_in
from states import UploadState

__all__ = ["cancel", "executor", "resume", "retry"]


@click.command()
@click.option(
    "--once", "mode", flag_value="once", default=True, help="Run what is due now, then stop (default)."
)
@click.option("--loop", "mode", flag_value="loop", help="Keep polling until SIGTERM or Ctrl-C.")
@click.option(
    "--poll", type=click.FloatRange(min=0, min_open=True), help="Seconds between polls with --loop."
)
@click.option("--name", help="This executor's lease owner name [default: a random one].")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Run N executors in worker processes (lease owners NAME-1 to NAME-N).",
)
@output_options
@workspace_options
def executor(
    workspace: Workspace, as_json: bool, mode: str, poll: float | None, name: str | None, jobs: int
) -> None:
    """
    Run committed requests: replicate, register, remove temporary replicas; move uploads on.

    Several executors may run at once: each request is taken under a lease. With --jobs N, this
    command runs N of them in worker processes, to use N CPUs. Retries and backoff follow the
    configuration's [executor] table. Ctrl-C or SIGTERM stops it after the current file and puts its
    requests back, for the next run to take at once. With --once, it says how it left the requests it
    took; a request that ended Failed is reported on stderr with why, exit status 1. With --loop, each
    pass that took requests, each retry scheduled, each file failed for good and each request failed
    (with the uploads it left Stuck) is logged on stderr with the time.

    \b
    Example:
        failover executor --once
        failover executor --once --jobs 4
        failover executor --loop --poll 5
    """
    if mode == "loop":
        _log_each_pass()
    if jobs > 1:
        _run_in_processes(workspace, as_json, mode, poll, name or new_executor_name(), jobs)
        return
    runner = Executor(workspace.env, workspace.policy, name=name)
    if mode == "loop":
        # run_forever installs the same handlers; before it does, a SIGTERM must not kill us either.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stopping.set())
        stdout().print(f"{runner.name}: polling every {poll or workspace.poll_interval:g} s; Ctrl-C stops")
        runner.run_forever(poll or workspace.poll_interval)
        return
    with stopping_on_signals() as stop:
        runner.stopping = stop.event  # stops after the current file, and puts its requests back
        report = runner.run_pass()
    _report(workspace, as_json, runner.name, report, jobs)
    stop.exit_if_stopped("the requests not finished are put back; run again to go on")
    if report.failed:
        raise click.exceptions.Exit(1)


def _log_each_pass() -> None:
    """
    ``--loop`` runs as a service: what each pass did and each retry scheduled are logged on stderr, with
    the time (workers forked later inherit this).
    """
    logging.getLogger("failover.executor").setLevel(logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


def _run_in_processes(
    workspace: Workspace, as_json: bool, mode: str, poll: float | None, name: str, jobs: int
) -> None:
    """``--jobs N``: N executors in worker processes; no environment is opened here before they fork."""
    opener, policy = workspace.opener(), workspace.policy
    if mode == "loop":
        interval = poll or workspace.poll_interval
        banner = f"{name}: {jobs} executors polling every {interval:g} s; Ctrl-C stops"
        run_forever_in_processes(
            opener, jobs, interval, policy=policy, name=name, on_start=lambda: stdout().print(banner)
        )
        return
    report = run_pass_in_processes(opener, jobs, policy=policy, name=name)
    _report(workspace, as_json, name, report, jobs)
    if report.failed:
        raise click.exceptions.Exit(1)


def _report(workspace: Workspace, as_json: bool, name: str, report: PassReport, jobs: int) -> None:
    """
    How the pass left the requests it took; each request it left Failed, with why, and the uploads
    those left Stuck, on stderr.
    """
    failed = failed_requests(workspace.env, report)
    stuck = sum(each.stuck for each in failed)
    if as_json:
        print_json(
            {
                "executor": name,
                "processes": jobs,
                "requests": report.taken,
                "left": report.left,
                "failed": [{"id": each.request_id, "error": each.reason} for each in failed],
                "stuck": stuck,
            }
        )
        return
    workers = f" in {jobs} processes" if jobs > 1 else ""
    left = ", ".join(f"{status} {count}" for status, count in sorted(report.left.items()))
    taken = f"processed {report.taken} request{'s' if report.taken != 1 else ''}"
    stdout().print(f"{name}: {taken}{workers}" + (f"; left {left}" if left else ""), highlight=False)
    for each in failed:
        click.echo(click.style(f"request {each.request_id} failed: {each.reason}", fg="red"), err=True)
    if stuck:
        click.echo(
            f"{stuck:,} upload{'s' if stuck != 1 else ''} left Stuck: {STUCK_WAYS_ON}",
            err=True,
        )


@click.command()
@click.option("--no-commit", is_flag=True, help="Leave draft requests alone (clients may still be running).")
@click.option(
    "--remove-temporary",
    is_flag=True,
    help="First delete the temporary files interrupted puts left on the SEs (only while nothing else "
    "uploads to them: a running put's temporary file looks the same).",
)
@output_options
@workspace_options
def resume(workspace: Workspace, as_json: bool, no_commit: bool, remove_temporary: bool) -> None:
    """
    After a crash: drive every unfinished upload on, and commit the requests left as drafts.

    Nothing is uploaded twice: a put that finds the same file at the SE counts as done. An upload that
    ends Failed is reported on stderr, exit status 1. Ctrl-C or SIGTERM stops it once the batch at hand
    (256 uploads) is done: the others stay in flight for the next resume; exit status 130 or 143.

    \b
    Example:
        failover resume
        failover resume --remove-temporary   # nothing else uploading: clean what crashed puts left
    """
    with stopping_on_signals() as stop:
        report = resume_uploads(
            workspace.env, commit_drafts=not no_commit, remove_temporary=remove_temporary, stopping=stop.event
        )
    if as_json:
        print_json(
            {
                "finished": [{"lfn": r.lfn, "state": str(r.state), "se": r.se} for r in report.finished],
                "failed": {upload: error_line(err) for upload, err in report.failed.items()},
                "left": report.left,
                "committed": report.committed,
                "temporary_removed": report.temporary_removed,
                "temporary_not_removed": report.temporary_not_removed,
            }
        )
    else:
        # One line per upload, through click: rich takes ~0.2 ms a line, 20 s for a backlog of 100,000.
        lines = (f"{result.lfn}: {result.state} at {result.se}\n" for result in report.finished)
        click.echo("".join(lines), nl=False)
        for upload, err in report.failed.items():
            click.echo(click.style(f"{upload}: {error_line(err)}", fg="red"), err=True)
        committed = ", ".join(map(str, report.committed)) or "none"
        resumed = len(report.finished) + len(report.failed)
        removed = f"; temporary files removed: {report.temporary_removed}" if remove_temporary else ""
        click.echo(f"resumed {resumed:,} uploads; committed requests: {committed}{removed}")
    stop.exit_if_stopped(f"{report.left:,} uploads left in flight; resume again finishes them")
    if report.failed:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("lfns", nargs=-1, metavar="[LFN]...")
@click.option("--all", "every", is_flag=True, help="Retry every Stuck upload.")
@output_options
@workspace_options
def retry(workspace: Workspace, as_json: bool, lfns: tuple[str, ...], every: bool) -> None:
    """
    Retry Stuck uploads: each one's operations go into a new committed request, the upload back to FailedOver.

    A request that fails on one file leaves every upload after it Stuck; --all (or several LFNs) retries
    them at once, each in a request of its own, so that a file that fails again holds up no other.

    \b
    Example:
        failover retry /vo/user/a/alice/run42/out.root
        failover retry --all
        failover executor --once
    """
    if every == bool(lfns):
        raise click.UsageError("give the LFNs of Stuck uploads, or --all")
    env = workspace.env
    if len(lfns) == 1:
        request_id = retry_upload(env, find_upload(env, lfns[0]).id)
        if as_json:
            print_json({"lfn": lfns[0], "request": request_id})
        else:
            click.echo(f"{lfns[0]}: back to FailedOver; its operations are in request {request_id}")
        return
    machine_ids = (
        [find_upload(env, lfn).id for lfn in lfns] if lfns else upload_ids_in(env, UploadState.STUCK)
    )
    requests = retry_uploads(env, machine_ids)
    if as_json:
        print_json({"uploads": len(requests), "requests": requests})
    elif not requests:
        click.echo("no upload is Stuck")
    else:
        span = f"request {requests[0]}" if len(requests) == 1 else f"requests {requests[0]} to {requests[-1]}"
        click.echo(
            f"{len(requests):,} uploads back to FailedOver, each with its operations in a new request: {span}"
        )


@click.command()
@click.argument("request_id", type=int, required=False)
@click.option("--upload", "lfn", help="Give up on this Stuck upload instead (it ends Failed).")
@click.option(
    "--reason", default="canceled by operator", show_default=True, help="Recorded with the request."
)
@workspace_options
def cancel(workspace: Workspace, request_id: int | None, lfn: str | None, reason: str) -> None:
    """
    Cancel a request that has not ended (its uploads become Stuck or Failed), or a Stuck upload.

    \b
    Example:
        failover cancel 3
        failover cancel --upload /vo/user/a/alice/run42/out.root
    """
    if (request_id is None) == (lfn is None):
        raise click.UsageError("give a REQUEST_ID or --upload LFN (one of them)")
    env = workspace.env
    if lfn is not None:
        cancel_upload(env, find_upload(env, lfn).id)
        stdout().print(f"{lfn}: canceled, the upload is Failed")
    else:
        assert request_id is not None
        cancel_request(env, request_id, reason)
        stdout().print(f"request {request_id} canceled")
