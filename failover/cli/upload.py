"""
``failover upload``: upload one or many files with :func:`failover.batch.upload_many` (the same machines
as :func:`failover.upload`, one commit per batch of files), then commit their request.

Each file is uploaded on its own: a bad file is reported and the others are still processed; the exit
status is 1 if any file failed. The operations of every upload (deferred registrations, replication
to the target, removal of the temporary replica) go into one request, committed at the end, which
``failover executor`` runs.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from failover import uploads
from failover.batch import BatchItem, upload_many
from failover.cli.app import (
    Workspace,
    error_line,
    output_options,
    print_json,
    print_table,
    stopping_on_signals,
    workspace_options,
)
from failover.cli.bar import UploadBar, file_size, upload_bar
from failover.environment import Environment
from failover.errors import FailoverError, InvalidInput, UploadFailed, UploadInterrupted
from failover.parallel import BATCH_FILES, MAX_AUTO_JOBS, auto_jobs, upload_in_processes
from failover.storage.progress import reporting_bytes
from failover.validation import parse_name_list, select_catalogs, validate_lfn, validate_ses
from persistence.errors import StoreUnavailable
from persistence.requests import RequestHeader

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["FileOutcome", "upload"]

#: How the table shows a file that was not uploaded.
_STYLES = {"Failed": "red", "Interrupted": "yellow"}


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: its result, or the error that stopped it."""

    file: Path
    lfn: str
    result: uploads.UploadResult | None = None
    error: FailoverError | None = None

    @property
    def state(self) -> str:
        """The upload's state; for an error, ``Interrupted`` (not uploaded, or cut short) or ``Failed``."""
        if self.result is not None:
            return str(self.result.state)
        return "Interrupted" if isinstance(self.error, UploadInterrupted) else "Failed"

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON-able dict."""
        head: dict[str, Any] = {"file": str(self.file), "lfn": self.lfn}
        if self.error is not None:
            error: dict[str, Any] = {"type": type(self.error).__name__, "message": str(self.error)}
            if isinstance(self.error, UploadFailed):
                error["errors"] = dict(self.error.errors)
            return {**head, "state": self.state, "error": error}
        result = self.result
        assert result is not None
        return {
            **head,
            "state": str(result.state),
            "se": result.se,
            "pfn": result.pfn,
            "size": result.size,
            "checksum": result.checksum,
            "checksum_type": result.checksum_type,
            "guid": result.guid,
            "registered": list(result.registered),
            "deferred": dict(result.deferred),
            "operations": [op.type for op in result.operations],
        }


def _names(values: Sequence[str]) -> list[str]:
    return parse_name_list(",".join(values))


def _check_names(
    workspace: Workspace, ses: list[str], catalogs: Sequence[str] | None, master_only: bool
) -> None:
    """
    An unknown SE or catalog is one error, naming what is configured, not one error per file. Checked
    against the configuration: nothing is opened before the worker processes are forked.
    """
    try:
        validate_ses(ses, workspace.storage_names)
    except InvalidInput as err:
        raise type(err)(f"{err} (configured: {', '.join(workspace.storage_names)})", se=err.se) from None
    try:
        select_catalogs(catalogs or None, workspace.catalog_choices, master_only)
    except InvalidInput as err:
        known = ", ".join(choice.name for choice in workspace.catalog_choices)
        raise type(err)(f"{err} (configured: {known})", catalog=err.catalog) from None


def _listed(stream: BinaryIO | None, null: bool) -> list[Path]:
    """
    The paths named in ``stream``: one per line, or ending with NUL (``null``); empty entries skipped.
    Read as bytes, so that any file name the system allows comes through as the system names it.
    """
    if stream is None:
        if null:
            raise click.UsageError("--null describes the list of --files-from, which is not given")
        return []
    separator = b"\0" if null else b"\n"
    return [Path(os.fsdecode(entry)) for entry in stream.read().split(separator) if entry]


def _lfns(files: Sequence[Path], lfn: str | None, prefix: str | None) -> list[str]:
    if (lfn is None) == (prefix is None):
        raise click.UsageError("give exactly one of --lfn (one file) or --lfn-prefix")
    if lfn is not None:
        if len(files) != 1:
            raise click.UsageError("--lfn names one file; use --lfn-prefix for several")
        return [lfn]
    assert prefix is not None
    directory = prefix.rstrip("/")
    if directory:  # "/" alone is the root; anything else must be an LFN itself, checked once, not per file
        try:
            validate_lfn(directory)
        except InvalidInput as err:
            raise type(err)(f"--lfn-prefix: {err}", lfn=err.lfn) from None
    lfns = [f"{directory}/{file.name}" for file in files]
    twice = sorted(lfn for lfn, count in Counter(lfns).items() if count > 1)
    if twice:
        raise click.UsageError(f"several files would be uploaded as {', '.join(twice)}")
    return lfns


def _upload_all(
    workspace: Workspace,
    pairs: list[tuple[Path, str]],
    header: RequestHeader,
    progress: Progress | None,
    jobs: int,
    stopping: threading.Event,
    **where: Any,
) -> list[FileOutcome]:
    """
    Upload every file, in this process or in ``jobs`` worker processes. In this process the bar moves as
    the bytes are written; with workers, as their batches end.
    """
    # The sizes only feed the bar: not read at all when it is not shown (--json, no terminal).
    bar = UploadBar(progress, {lfn: file_size(file) for file, lfn in pairs}) if progress is not None else None

    def advance(item: BatchItem, _: object = None) -> None:
        if bar is not None:
            bar.finished(item.lfn)

    def advance_batch(finished: Sequence[tuple[BatchItem, object]]) -> None:
        for item, _ in finished:
            advance(item)

    items = [BatchItem(file, lfn) for file, lfn in pairs]
    if jobs == 1:
        with reporting_bytes(bar.wrote) if bar is not None else nullcontext():
            results = upload_many(
                workspace.env, items, request=header, on_result=advance, stopping=stopping, **where
            )
    else:
        # Nothing is opened here before the workers are forked: they open their own environments.
        opener = workspace.opener()
        results = upload_in_processes(
            opener, items, jobs=jobs, request=header, on_batch=advance_batch, stopping=stopping, **where
        )
    return [
        FileOutcome(file, lfn, error=result)
        if isinstance(result, FailoverError)
        else FileOutcome(file, lfn, result)
        for (file, lfn), result in zip(pairs, results, strict=True)
    ]


def _commit(env: Environment, header: RequestHeader) -> int | None:
    row = env.requests.find(header.client_key)
    if row is None:
        return None
    env.requests.commit(row.id)
    return row.id


def _registration(result: uploads.UploadResult | None) -> str:
    if result is None:
        return "-"
    if result.deferred:
        return "deferred: " + "; ".join(f"{name} ({why})" for name, why in result.deferred.items())
    return "registered in " + ", ".join(result.registered) if result.registered else "-"


def _print_table(outcomes: list[FileOutcome], request_id: int | None) -> None:
    rows = [
        [o.lfn, o.state, o.result.se, _registration(o.result)]
        if o.result is not None
        else [o.lfn, o.state, "-", "-"]
        for o in outcomes
    ]
    styles = [_STYLES.get(o.state) for o in outcomes]
    print_table(("LFN", "State", "SE", "Registration"), rows, styles=styles)
    if len(outcomes) > 1:
        counts = Counter(row[1] for row in rows)
        click.echo(f"{len(outcomes):,} files: " + ", ".join(f"{state} {n:,}" for state, n in counts.items()))
    if request_id is not None:
        click.echo(f"request {request_id} committed: `failover executor --once` runs it")


@click.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--files-from",
    type=click.File("rb"),
    metavar="LIST",
    help="Also upload the files named in LIST, one path per line ('-': standard input), "
    "for more files than a command line holds.",
)
@click.option(
    "--null", "-0", is_flag=True, help="The paths in LIST end with a NUL, as `find -print0` writes them."
)
@click.option("--lfn", help="The LFN of the file (one file only).")
@click.option("--lfn-prefix", help="LFN directory: each file gets PREFIX/<its file name>.")
@click.option(
    "--dest", "destinations", multiple=True, help="Destination SEs, tried in order (comma-separated)."
)
@click.option("--failover", "failovers", multiple=True, help="Failover SEs, tried after the destinations.")
@click.option(
    "--target", "targets", multiple=True, help="Where a failed-over file must end up [default: --dest]."
)
@click.option("--catalog", "catalogs", multiple=True, help="Catalogs to register in [default: all].")
@click.option("--master-only", is_flag=True, help="Register in the master catalogs only.")
@click.option("--retry-upload", is_flag=True, help="With one SE, retry transient failures with waits.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"Upload in N processes [default: one per {BATCH_FILES} files and per usable CPU, "
    f"at most {MAX_AUTO_JOBS}; 1 uploads in this process].",
)
@output_options
@workspace_options
def upload(
    workspace: Workspace,
    as_json: bool,
    files: tuple[Path, ...],
    files_from: BinaryIO | None,
    null: bool,
    lfn: str | None,
    lfn_prefix: str | None,
    destinations: tuple[str, ...],
    failovers: tuple[str, ...],
    targets: tuple[str, ...],
    catalogs: tuple[str, ...],
    master_only: bool,
    retry_upload: bool,
    jobs: int | None,
) -> None:
    """
    Upload FILES: destination SEs in order, then failover SEs; register them or defer registration.

    Prints each file's LFN, state, SE and whether its registration was deferred (past 100 files, as
    aligned plain text), then the count of files by state. Exit status 1 if any file failed (the
    others are still uploaded). With --retry-upload, the files that must wait before trying their SE
    again wait together. Ctrl-C or SIGTERM stops it cleanly: the files being uploaded are finished and
    reported (a wait for a retry is cut short), the others are left alone (Interrupted) for the same
    command to upload again; exit status 130 or 143. A second signal aborts at once (`failover resume`
    finishes).
    Without --dest and --failover, the configuration's upload defaults are used (the embedded
    default: LOCAL-DISK, then FAILOVER-DISK).

    \b
    Example:
        failover upload out.root --lfn /vo/user/a/alice/run42/out.root --dest LOCAL-DISK
        failover upload run42/*.root --lfn-prefix /vo/user/a/alice/run42 \\
            --dest SE-A,SE-B --failover FAILOVER-1 --json
        find run42 -name '*.root' -print0 | failover upload --files-from - -0 \\
            --lfn-prefix /vo/user/a/alice/run42
    """
    files = (*files, *_listed(files_from, null))
    if not files:
        raise click.UsageError("no files to upload: give FILES, or --files-from a list that names some")
    lfns = _lfns(files, lfn, lfn_prefix)
    defaults = workspace.upload_defaults
    dest, fail = _names(destinations), _names(failovers)
    if not dest and not fail:
        dest, fail = list(defaults.destinations), list(defaults.failovers)
    aims = _names(targets) or dest
    if not dest and not aims:
        raise click.UsageError("--failover needs --dest or --target: where the file must end up")
    chosen_catalogs, masters = _names(catalogs) or defaults.catalogs, master_only or defaults.master_only
    _check_names(workspace, [*dest, *fail, *aims], chosen_catalogs, masters)
    where = {
        "destinations": dest,
        "failovers": fail,
        "targets": aims,
        "catalogs": chosen_catalogs,
        "master_only": masters,
        "retry_upload": retry_upload,
    }
    owner, group = workspace.request_owner
    header = RequestHeader(uuid.uuid4().hex, "failover-upload", owner, group, "failover-cli")
    pairs = list(zip(files, lfns, strict=True))
    jobs = jobs or auto_jobs(len(pairs))
    try:
        with stopping_on_signals() as stop, upload_bar(files, quiet=as_json) as progress:
            outcomes = _upload_all(workspace, pairs, header, progress, jobs, stop.event, **where)
        request_id = _commit(workspace.env, header)
    except StoreUnavailable as err:
        # The database went away mid-way (disk full, I/O error): say what becomes of the work done.
        raise StoreUnavailable(
            f"{err}; what was committed is kept: once the database can be written again, `failover resume` "
            f"finishes the uploads left in flight and the same command uploads the rest"
        ) from err
    if as_json:
        print_json({"uploads": [o.to_json() for o in outcomes], "request": request_id})
    else:
        _print_table(outcomes, request_id)
    left = 0  # after a stop, the files not uploaded are counted, not listed
    for outcome in outcomes:
        if stop.signum is not None and isinstance(outcome.error, UploadInterrupted):
            left += 1
        elif outcome.error is not None:
            click.echo(f"{outcome.file}: {error_line(outcome.error)}", err=True)
    stop.exit_if_stopped(f"{left:,} files not uploaded; the same command again uploads them")
    if any(o.error is not None for o in outcomes):
        raise click.exceptions.Exit(1)
