"""
``failover requests``: list, show, export and import requests.

Export and import speak DIRAC's request JSON (:func:`~failover.request.request_to_dirac_json` and
:func:`~failover.request.request_from_dirac_json`), so a request can be handed to a DIRAC installation
or taken from one. An imported request is stored and committed, ready for ``failover executor``;
importing the same document again finds the same request.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from failover.cli.app import (
    FailoverGroup,
    Workspace,
    literal,
    output_options,
    print_json,
    print_table,
    stdout,
    workspace_options,
)
from failover.environment import Environment
from failover.errors import InvalidRequest
from failover.request import Request, RequestStatus, failure_reason, request_to_dirac_json

__all__ = ["import_request", "list_requests", "requests"]


@click.group(cls=FailoverGroup)
def requests() -> None:
    """
    List, show, export and import requests (DIRAC request JSON).

    \b
    Example:
        failover requests list --status Waiting
        failover requests export 3 > request-3.json
        failover requests import request-3.json
    """


def list_requests(env: Environment, status: str | None = None) -> list[Request]:
    """Every stored request (drafts included), optionally only those with ``status``, by id."""
    rows = env.store.conn.execute(
        "SELECT id FROM requests WHERE ? IS NULL OR status = ? ORDER BY id", (status, status)
    )
    return [env.requests.load(request_id) for (request_id,) in rows.fetchall()]


def _committed(env: Environment, request_id: int) -> bool:
    row = env.store.conn.execute("SELECT committed_at FROM requests WHERE id = ?", (request_id,)).fetchone()
    return bool(row and row[0])


def _summary(env: Environment, request: Request) -> dict[str, Any]:
    assert request.request_id is not None
    return {
        "id": request.request_id,
        "name": request.name,
        "owner": request.owner,
        "status": str(request.status),
        "committed": _committed(env, request.request_id),
        "operations": [f"{op.type}:{op.status}" for op in request.operations],
        "error": failure_reason(request),
        "last_update": request.last_update,
    }


@requests.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in RequestStatus]), help="Only requests with this status."
)
@output_options
@workspace_options
def list_command(workspace: Workspace, as_json: bool, status: str | None) -> None:
    """
    List requests: id, status, whether committed, their operations, and why a failed one failed.

    \b
    Example:
        failover requests list
        failover requests list --status Failed --json
    """
    env = workspace.env
    summaries = [_summary(env, request) for request in list_requests(env, status)]
    if as_json:
        print_json(summaries)
        return
    rows = [
        [
            str(s["id"]),
            s["name"],
            s["status"],
            "yes" if s["committed"] else "draft",
            _counted(s["operations"]),
            s["error"],
        ]
        for s in summaries
    ]
    print_table(("ID", "Name", "Status", "Committed", "Operations", "Error"), rows)


def _counted(operations: list[str]) -> str:
    """
    ``type:status`` of each operation, each distinct one once with its count when above one.

    Example:
        >>> _counted(["ReplicateAndRegister:Done", "RemoveReplica:Done", "ReplicateAndRegister:Done"])
        'ReplicateAndRegister:Done (2), RemoveReplica:Done'
    """
    return ", ".join(f"{kind} ({n:,})" if n > 1 else kind for kind, n in Counter(operations).items())


def _print_request(request: Request) -> None:
    console = stdout()
    console.print(
        f"[bold]request {request.request_id}[/bold] {literal(request.name)} {request.status}", markup=True
    )
    console.print(f"  owner: {request.owner}/{request.owner_group}  source: {request.source_component}")
    if request.error:
        console.print(f"  error: {request.error}")
    # Then plain lines, through click: one operation may hold 100,000 files, and rich takes ~0.2 ms a line.
    for op in request.operations:
        where = f" → {','.join(op.target_se)}" if op.target_se else ""
        source = f" from {op.source_se}" if op.source_se else ""
        click.echo(
            f"  {op.order}. {op.type} {op.status}{source}{where}" + (f": {op.error}" if op.error else "")
        )
        lines = (
            f"       {file.lfn} {file.status} (attempt {file.attempt})"
            + (f": {file.error}" if file.error else "")
            for file in op.files
        )
        click.echo("".join(f"{line}\n" for line in lines), nl=False)


@requests.command()
@click.argument("request_id", type=int)
@output_options
@workspace_options
def show(workspace: Workspace, as_json: bool, request_id: int) -> None:
    """
    Show a request: its operations and their files, with statuses and errors.

    --json prints DIRAC's request JSON (as `requests export` does).

    \b
    Example:
        failover requests show 3
    """
    request = workspace.env.requests.load(request_id)
    if as_json:
        print_json(request_to_dirac_json(request))
    else:
        _print_request(request)


@requests.command()
@click.argument("request_id", type=int)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@workspace_options
def export(workspace: Workspace, request_id: int, output: Path | None) -> None:
    """
    Export a request as DIRAC request JSON (what DIRAC's Request.toJSON() writes).

    \b
    Example:
        failover requests export 3 > request-3.json
    """
    text = json.dumps(request_to_dirac_json(workspace.env.requests.load(request_id)), indent=2)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


def import_request(env: Environment, document: str) -> tuple[int, bool]:
    """
    Store a DIRAC request JSON document as a committed request (see :meth:`RequestStore.import_dirac`);
    one that names an SE or a catalog not configured in ``env`` is refused.
    """
    return env.requests.import_dirac(
        document, owner=env.request_owner, ses=list(env.storage), catalogs=env.catalogs.names()
    )


@requests.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_options
@workspace_options
def import_command(workspace: Workspace, as_json: bool, file: Path) -> None:
    """
    Import a DIRAC request JSON file as a committed request, ready for the executor.

    A request that names an SE or a catalog not configured here is refused: the executor could only
    fail it. Importing the same file again stores nothing.

    \b
    Example:
        failover requests import request-3.json
    """
    try:
        document = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{file} is not UTF-8 text: {exc}") from exc
    request_id, new = import_request(workspace.env, document)
    if as_json:
        print_json({"request": request_id, "imported": new})
    else:
        stdout().print(f"request {request_id} {'imported and committed' if new else 'was imported before'}")
