"""``failover prune``: forget the uploads and requests that ended long ago (:func:`failover.prune.prune`)."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from failover.cli.app import Workspace, output_options, print_json, stdout, workspace_options
from failover.prune import prune as prune_workspace

__all__ = ["AGE", "prune"]

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class _Age(click.ParamType[timedelta]):
    """A duration written as a number and a unit: ``30d``, ``12h``, ``90m``, ``3600s``."""

    name = "AGE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        """
        Read ``value`` as a duration.

        >>> AGE.convert("30d", None, None), AGE.convert("1.5h", None, None)
        (datetime.timedelta(days=30), datetime.timedelta(seconds=5400))
        """
        if isinstance(value, timedelta):
            return value
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", str(value))
        if found is None:
            self.fail(f"{value!r} is not an age such as 30d, 12h, 90m or 3600s", param, ctx)
        return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


#: The ``--older-than`` type.
AGE = _Age()


@click.command()
@click.option(
    "--older-than",
    "older_than",
    type=AGE,
    required=True,
    help="How long ago they must have ended: 30d, 12h, 90m, 3600s.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@output_options
@workspace_options
def prune(workspace: Workspace, as_json: bool, older_than: timedelta, dry_run: bool) -> None:
    """
    Forget the uploads and requests that ended more than AGE ago, to keep the database small.

    Deletes uploads Registered, Cleaned or Failed and requests Done, Failed or Canceled, with their
    journals and operations, in one transaction; a request goes only with all its uploads, and an
    upload only with all its requests. The catalogs and the storage are not touched: a pruned file
    stays registered and stored, and fsck still explains it by its catalog entry.

    \b
    Example:
        failover prune --older-than 30d --dry-run
        failover prune --older-than 30d
    """
    report = prune_workspace(workspace.env, older_than=older_than, dry_run=dry_run)
    if as_json:
        print_json(
            {
                "before": report.before,
                "uploads": report.uploads,
                "requests": report.requests,
                "dry_run": report.dry_run,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    counts = f"{report.uploads:,} uploads and {report.requests:,} requests"
    stdout().print(f"{verb} {counts} that ended before {report.before}")
