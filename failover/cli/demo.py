"""``failover demo``: :func:`failover.demo.run_demo` in a throwaway workspace, told with rich."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from failover.cli.app import literal, stdout
from failover.cli.status import journal_table
from failover.demo import run_demo

__all__ = ["demo"]


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="An empty directory for the demo's workspace [default: a new temporary one].",
)
def demo(directory: Path | None) -> None:
    """
    Watch files fail over while their target SE is down, then end Cleaned once it is back.

    Needs no configuration: a throwaway workspace with a target SE (made unreachable by a fault
    injector) and a failover SE; a handful of uploads fail over; the target comes back; the
    executor replicates and cleans up. Prints one upload's history and where its diagram is, and
    keeps the workspace so that you can look around with --home.

    \b
    Example:
        failover demo
        failover demo --dir /tmp/failover-demo
    """
    home = directory or Path(tempfile.mkdtemp(prefix="failover-demo-"))
    console = stdout()
    console.rule("failover demo")
    report = run_demo(home, console)
    lfn = next(iter(report.states))
    console.print(f"[bold]5.[/bold] The history of {literal(lfn)}:", markup=True)
    console.print(journal_table(report.history))
    console.print(f"    Its path through the upload machine: {report.diagram}")
    console.print(f"    Look around: failover status --home {report.home}")
    console.print(f"                 failover explain {lfn} --home {report.home}")
    if not report.all_cleaned:
        states = ", ".join(f"{lfn}: {state}" for lfn, state in report.states.items())
        click.echo(f"demo failed: {states}; fsck: {'; '.join(report.problems) or 'ok'}", err=True)
        raise click.exceptions.Exit(1)
    console.print(
        f"[bold green]All {len(report.states)} uploads Cleaned[/bold green] in {report.seconds:.1f} s.",
        markup=True,
    )
