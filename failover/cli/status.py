"""
Looking at uploads: ``failover status`` (counts, or one LFN in detail), ``history LFN`` (its journal) and
``explain LFN`` (the upload diagram with this upload's path highlighted).

They read the store only: :func:`persistence.machines.count_by_state`, the upload's machine row and
:func:`persistence.journal.read_journal`, and :func:`fsm.diagram.render` for the diagram.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from failover.cli.app import (
    Workspace,
    find_upload,
    literal,
    new_table,
    output_options,
    print_json,
    stderr,
    stdout,
    workspace_options,
)
from failover.environment import Environment
from fsm.engine import CREATE_TRIGGER
from persistence.journal import read_journal
from persistence.machines import count_by_state
from persistence.requests import later_operations_on, operations_of_machine
from persistence.rows import JournalRow, MachineRow
from states import UPLOAD_MACHINE, UploadState

if TYPE_CHECKING:
    from rich.table import Table

    from fsm.diagram import Edge

__all__ = ["STUCK_WAYS_ON", "explain", "history", "journal_table", "path_of", "status", "summarize"]


#: What to do about Stuck uploads, as ``status`` and ``executor --once`` say it after their count.
STUCK_WAYS_ON = (
    "`failover status LFN` says why; once the cause is fixed, `failover retry --all` runs them again"
)


def _request_counts(env: Environment) -> dict[str, int]:
    rows = env.store.conn.execute("SELECT status, COUNT(*) FROM requests GROUP BY status ORDER BY status")
    return {status: count for status, count in rows}


def _counts(env: Environment) -> dict[str, Any]:
    stored = count_by_state(env.store.conn, UPLOAD_MACHINE.name)
    uploads = {state.value: stored.get(state.value, 0) for state in UploadState}
    return {"uploads": uploads, "total": sum(uploads.values()), "requests": _request_counts(env)}


def _details(env: Environment, row: MachineRow) -> dict[str, Any]:
    data = row.data
    operations = [
        {"id": op.id, "request": op.request_id, "type": op.type, "status": op.status, "error": op.error}
        | {"target_se": op.target_se, "source_se": op.source_se}
        for op in operations_of_machine(env.store.conn, row.id)
    ]
    failures = [
        {"se": f["se"], "attempt": f.get("attempt"), "at": f.get("at"), "error": f["error"]["message"]}
        for f in data.get("failures", [])
    ]
    keys: tuple[str, ...] = ("uploaded_se", "final_ses", "pfn", "size", "checksum", "checksum_type", "guid")
    keys += ("targets", "next_attempt_at")
    return {
        "lfn": data["lfn"],
        "upload": row.id,
        "state": row.state,
        "updated_at": row.updated_at,
        **{key: data.get(key) for key in keys},
        "candidates": [c["se"] for c in data.get("candidates", [])],
        "attempts": dict(data.get("attempts", {})),
        "failures": failures,
        "registered": list(data.get("registered_catalogs", [])),
        "deferred": dict(data.get("unregistered_catalogs") or {}),
        "refused": (data.get("refusal") or {}).get("message"),
        "stuck": _stuck(data),
        "operations": operations,
        "later": _later(env, row),
    }


def _later(env: Environment, row: MachineRow) -> list[dict[str, Any]]:
    """What requests that are not the upload's own did to its file once it ended (as fsck weighs it)."""
    if row.state not in (UploadState.REGISTERED, UploadState.CLEANED):
        return []
    return [
        {
            "id": op.id,
            "request": op.request_id,
            "type": op.type,
            "target_se": op.target_se,
            "at": op.last_update,
        }
        for op in later_operations_on(env.store.conn, row.data["lfn"], row.id, row.updated_at)
    ]


def _stuck(data: dict[str, Any]) -> dict[str, Any] | None:
    """Why a Stuck upload is stuck: the request that failed and its reason (None when not stuck)."""
    if not data.get("stuck_reason"):
        return None
    return {"request": data.get("stuck_request"), "reason": data["stuck_reason"]}


def _stuck_lines(details: dict[str, Any]) -> list[str]:
    """What ``status`` and ``explain`` say of a Stuck upload: why, and the two ways on."""
    stuck = details["stuck"]
    if stuck is None:
        return []
    lfn = details["lfn"]
    return [
        f"stuck: request {stuck['request']} failed: {stuck['reason']}",
        f"once the cause is fixed, `failover retry {lfn}` runs it again; "
        f"`failover cancel --upload {lfn}` gives it up",
    ]


def _print_counts(counts: dict[str, Any]) -> None:
    table = new_table("Upload state", "Count")
    for state, count in counts["uploads"].items():
        table.add_row(state, str(count))
    table.add_row("total", str(counts["total"]), style="bold")
    requests = ", ".join(f"{status} {count}" for status, count in counts["requests"].items()) or "none"
    console = stdout()
    console.print(table)
    console.print(f"requests: {requests}")
    stuck = counts["uploads"].get(UploadState.STUCK.value, 0)
    if stuck:
        console.print(
            f"{stuck:,} Stuck upload{'s wait' if stuck != 1 else ' waits'} for an operator: {STUCK_WAYS_ON}"
        )


def _print_details(details: dict[str, Any]) -> None:
    console = stdout()
    lfn, upload = literal(details["lfn"]), literal(details["upload"])
    console.print(f"[bold]{lfn}[/bold]  {details['state']}  (upload {upload})", markup=True)
    for label, key in (("SE", "uploaded_se"), ("final SEs", "final_ses"), ("PFN", "pfn"), ("GUID", "guid")):
        if details[key]:
            value = details[key]
            console.print(f"  {label}: {', '.join(value) if isinstance(value, list) else value}")
    console.print(f"  candidates: {', '.join(details['candidates'])}")
    console.print(f"  failed attempts: {_attempts_text(details)}")
    if details["state"] == "Uploading" and details["next_attempt_at"]:
        console.print(
            f"  next try at: {details['next_attempt_at']} (resume, or the same upload again, goes on)"
        )
    for failure in details["failures"]:
        console.print(f"  failure: {failure['se']} attempt {failure['attempt']}: {failure['error']}")
    if details["refused"]:
        console.print(f"  refused: {details['refused']}")
    for line in _stuck_lines(details):
        console.print(f"  {line}")
    if details["deferred"]:
        console.print(f"  registration deferred: {details['deferred']}")
    for op in details["operations"]:
        error = f": {op['error']}" if op["error"] else ""
        console.print(f"  operation {op['id']} (request {op['request']}) {op['type']} {op['status']}{error}")
    for op in details["later"]:
        at = f" at {', '.join(op['target_se'])}" if op["target_se"] else ""
        console.print(f"  later: operation {op['id']} (request {op['request']}) {op['type']}{at} Done")


@click.command()
@click.argument("lfn", required=False)
@output_options
@workspace_options
def status(workspace: Workspace, as_json: bool, lfn: str | None) -> None:
    """
    Count uploads by state; with LFN, show that upload in detail.

    The detail gives the state, the SE that holds the file, attempts per SE, every failure with its
    reason, the operations the upload emitted with their statuses, and what other requests did to the
    file once the upload ended (moved or removed it).

    \b
    Example:
        failover status
        failover status /vo/user/a/alice/run42/out.root --json
    """
    env = workspace.env
    report = _counts(env) if lfn is None else _details(env, find_upload(env, lfn))
    if as_json:
        print_json(report)
    elif lfn is None:
        _print_counts(report)
    else:
        _print_details(report)


def summarize(row: JournalRow) -> str:
    """A short account of a journal row's payload: the SE and error of its event, what it emitted."""
    if row.trigger == CREATE_TRIGGER:
        candidates = [c["se"] for c in row.payload["data"].get("candidates", [])]
        return f"candidates: {', '.join(candidates)}"
    event, parts = row.payload.get("event", {}), []
    if event.get("se"):
        parts.append(f"se={event['se']}")
    if isinstance(event.get("error"), dict):
        parts.append(f"error: {event['error'].get('message', '')}")
    if event.get("reason"):
        parts.append(f"reason: {event['reason']}")
    if event.get("operation"):
        parts.append(f"operation {event['operation']}")
    if row.payload.get("emitted"):
        parts.append(f"emits {', '.join(row.payload['emitted'])}")
    return "; ".join(parts)


def journal_table(journal: list[JournalRow]) -> Table:
    """The journal as a table: seq, time, trigger, source → destination, payload summary."""
    from rich.text import Text

    table = new_table("Seq", "At", "Trigger", "Move", "Details")
    for row in journal:
        cells = (str(row.seq), row.at, row.trigger, f"{row.src or '∅'} → {row.dst}", summarize(row))
        table.add_row(*map(Text, cells))  # as they are: an LFN or an error may hold "[...]"
    return table


def _journal_json(row: JournalRow) -> dict[str, Any]:
    return {"seq": row.seq, "at": row.at, "trigger": row.trigger, "src": row.src, "dst": row.dst} | {
        "summary": summarize(row),
        "payload": row.payload,
    }


@click.command()
@click.argument("lfn")
@output_options
@workspace_options
def history(workspace: Workspace, as_json: bool, lfn: str) -> None:
    """
    Show the journal of LFN's upload: every committed transition, in order.

    \b
    Example:
        failover history /vo/user/a/alice/run42/out.root
    """
    env = workspace.env
    journal = read_journal(env.store.conn, find_upload(env, lfn).id)
    if as_json:
        print_json([_journal_json(row) for row in journal])
    else:
        stdout().print(journal_table(journal))


def path_of(journal: list[JournalRow]) -> list[Edge]:
    """The (source, trigger, destination) steps an upload took, its creation row left out."""
    return [(row.src, row.trigger, row.dst) for row in journal if row.src is not None]


@click.command()
@click.argument("lfn")
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot", "svg"]), default="mermaid", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write the diagram here."
)
@output_options
@workspace_options
def explain(workspace: Workspace, as_json: bool, lfn: str, fmt: str, output: Path | None) -> None:
    """
    Draw the upload diagram with LFN's path highlighted, and list its attempts and errors.

    The diagram goes to stdout (or --output FILE); the attempts and errors go to stderr, so that
    `failover explain LFN > upload.mmd` gives a clean diagram. Paste Mermaid into any Markdown file
    on GitHub to see it drawn.

    \b
    Example:
        failover explain /vo/user/a/alice/run42/out.root --output path.mmd
        failover explain /vo/user/a/alice/run42/out.root --format svg -o path.svg
    """
    # Here, not at the top: the renderer's graph brings networkx, which status and history do without.
    from fsm.diagram import render

    env = workspace.env
    row = find_upload(env, lfn)
    path = path_of(read_journal(env.store.conn, row.id))
    diagram = render(UPLOAD_MACHINE, fmt, highlight=path)
    details = _details(env, row)
    if output is not None:
        output.write_text(diagram, encoding="utf-8")
    if as_json:
        print_json({"lfn": lfn, "state": row.state, "path": path, "diagram": diagram} | _failures(details))
        return
    if output is None:
        click.echo(diagram, nl=False)
    console = stdout() if output is not None else stderr()
    if output is not None:
        console.print(f"diagram written to {output}")
    states = [path[0][0], *(step[2] for step in path)] if path else [row.state]
    console.print(f"{lfn}: {' → '.join(states)}")
    console.print(f"failed attempts: {_attempts_text(details)}")
    for failure in details["failures"]:
        console.print(f"error: {failure['se']} attempt {failure['attempt']}: {failure['error']}")
    if details["refused"]:
        console.print(f"refused: {details['refused']}")
    for line in _stuck_lines(details):
        console.print(line)


def _attempts_text(details: dict[str, Any]) -> str:
    return ", ".join(f"{se} {count}" for se, count in details["attempts"].items()) or "none"


def _failures(details: dict[str, Any]) -> dict[str, Any]:
    keys = ("attempts", "failures", "refused", "stuck")
    return {key: details[key] for key in keys}
