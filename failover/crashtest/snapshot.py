"""
What a run leaves behind, in a form two runs in different directories can be compared by.

A :func:`snapshot` holds the final state of every upload, every object on every SE (LFN, size,
adler32), every catalog's entries (size, checksum, GUID, replica SEs) and each client's completed
operations (across its request generations). Paths, times and database ids are left out: they differ
between runs that did the same work. :func:`differences` lists what differs, one line each.
"""

from __future__ import annotations

import re
from typing import Any

from failover.checksum import ChecksumType
from failover.environment import Environment
from failover.fsck import fsck
from persistence.machines import iter_machines
from persistence.requests import load_operations
from states import UPLOAD_MACHINE

__all__ = ["Snapshot", "differences", "final_report", "snapshot"]

#: A JSON-able snapshot (it crosses from the child process that took it as JSON).
Snapshot = dict[str, Any]


def _uploads(env: Environment) -> dict[str, str]:
    return {row.id: str(row.state) for row in iter_machines(env.store.conn, UPLOAD_MACHINE.name)}


def _storage(env: Environment) -> list[list[Any]]:
    objects = []
    for name, se in sorted(env.storage.items()):
        for lfn in se.list_lfns():
            info = se.stat(lfn)
            size = info.size if info is not None else -1
            objects.append([name, lfn, size, se.checksum(lfn, ChecksumType.ADLER32)])
    return objects


def _catalogs(env: Environment) -> dict[str, dict[str, list[Any]]]:
    return {
        catalog.name: {
            entry.lfn: [
                entry.size,
                entry.checksum,
                entry.checksum_type,
                entry.guid,
                sorted(replica.se for replica in replicas),
            ]
            for entry, replicas in catalog.iter_files()
        }
        for catalog in env.catalogs
    }


def _requests(env: Environment) -> dict[str, list[Any]]:
    """
    Each client's completed operations, across its request generations (``key``, ``key#2``, ...).

    A crash may end a client's request earlier than a crash-free run would (resume commits the draft it
    left), so later operations open the next generation and may run (or fail) on their own rather than
    wait behind a failed one. What must not change is the work done: the same operations Done, each
    once. Nothing left unfinished where it cannot run is fsck's ``stranded-upload`` check.
    """
    conn = env.store.conn
    found: dict[str, list[Any]] = {}
    for request_id, key in conn.execute("SELECT id, client_key FROM requests ORDER BY id"):
        done = found.setdefault(re.sub(r"#\d+$", "", key), [])
        done += [
            [op.type, op.machine_id, [f.lfn for f in files]]
            for op, files in load_operations(conn, request_id)
            if op.status == "Done"
        ]
    return {client: sorted(done) for client, done in found.items()}


def snapshot(env: Environment) -> Snapshot:
    """Everything a run leaves behind that a crash must not change (see the module docstring)."""
    return {
        "uploads": _uploads(env),
        "storage": _storage(env),
        "catalogs": _catalogs(env),
        "requests": _requests(env),
    }


def final_report(env: Environment) -> dict[str, Any]:
    """The snapshot and the consistency checker's report of an environment, JSON-able."""
    return {"snapshot": snapshot(env), "fsck": fsck(env).to_dict()}


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    """What differs between two snapshots, one line per differing item (empty when equal)."""
    lines = []
    for part in sorted(set(expected) | set(actual)):
        want, got = expected.get(part), actual.get(part)
        if want == got:
            continue
        if isinstance(want, dict) and isinstance(got, dict):
            for key in sorted(set(want) | set(got)):
                if want.get(key) != got.get(key):
                    lines.append(f"{part}[{key}]: expected {want.get(key)!r}, got {got.get(key)!r}")
        else:
            lines.append(f"{part}: expected {want!r}, got {got!r}")
    return lines
