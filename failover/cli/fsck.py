"""``failover fsck``: check SPEC.md §6's invariants with :func:`failover.fsck.fsck`; exit 1 on any problem."""

from __future__ import annotations

import click

from failover.cli.app import (
    Workspace,
    output_options,
    print_json,
    print_table,
    stderr,
    stdout,
    workspace_options,
)
from failover.fsck import fsck as check_consistency

__all__ = ["fsck"]


@click.command()
@click.option(
    "--quick",
    is_flag=True,
    help="Compare replicas by size, and by the checksums their storage reports, without reading them "
    "back: for terabytes on local disks or WebDAV, minutes instead of hours.",
)
@output_options
@workspace_options
def fsck(workspace: Workspace, as_json: bool, quick: bool) -> None:
    """
    Check the database, storage and catalogs against each other; exit status 1 if anything is wrong.

    Checks the store's integrity, that every upload's journal replays to its stored state, that no
    operation is lost or duplicated, that every Registered or Cleaned upload has a good replica at its
    final SE and its catalog entries, that no temporary replica outlives its upload, and that no
    object on an SE is unexplained. What a later request did to an ended upload's file (a removal,
    a replication back to the failover SE) is not a problem: it is counted as changed later. An SE
    that does not answer (down, its storage not mounted) is named as a problem, nothing it holds is
    judged, and the rest is still checked. It may run beside uploads and executors (an in-flight
    upload or a temporary file it reports may then be a running upload's own).

    \b
    Example:
        failover fsck
        failover fsck --quick --json
    """
    report = check_consistency(workspace.env, read=not quick)
    if as_json:
        print_json(report.to_dict())
    else:
        checked = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in report.checked.items())
        if report.problems:
            rows = [[problem.code, problem.subject, problem.message] for problem in report.problems]
            print_table(("Problem", "Subject", "Message"), rows)
        stdout().print(f"checked {checked}: {'ok' if report.ok else f'{len(report.problems)} problem(s)'}")
    if not report.ok:
        stderr().print(f"fsck: {len(report.problems)} problem(s) found")
        raise click.exceptions.Exit(1)
