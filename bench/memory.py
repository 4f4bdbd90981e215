"""
Peak memory: one small against one big upload, and 1,000 against 100,000 machines.

Every figure is the peak RSS of a fresh interpreter that does one thing and exits, so nothing is shared
between measurements. It is read from ``VmHWM`` in ``/proc/self/status``, not ``ru_maxrss``: Linux
carries ``ru_maxrss`` over ``fork`` and ``exec``, so a child would report at least its parent's size.

- ``imports``: imports failover and opens an empty workspace (the floor every other figure includes).
- ``upload SIZE``: :func:`failover.upload` of one random file of SIZE to ``LOCAL-DISK`` in a fresh
  full-durability workspace (files written by the parent, not timed). Issue 8: 1 MiB and 1 GiB, goal
  within 10 MB of each other (streaming in fixed chunks keeps the peak flat).
- ``create N``: creates N upload machines left in Uploading, with ``env.uploads.create`` on
  :func:`failover.uploads.plan_upload` data, in transactions of 1,000 (as a crash would leave them).
- ``find N``: :func:`failover.resume.unfinished_uploads` on that workspace: every unfinished row loaded
  into a list, what a caller that wants them all at once holds.
- ``resume N``: :func:`failover.resume.resume` of those N uploads, the recovery itself (``failover
  resume`` without its report): it finds their ids and drives them in batches to their final state
  (every file put to ``LOCAL-DISK``, N small files written).

No goal is stated for the machine counts; the per-machine growth is printed.

Usage: ``python bench/memory.py [--small BYTES] [--big BYTES] [--machines N N ...] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

# Run as a script, this directory comes first on sys.path, and bench/transitions.py would shadow the
# ``transitions`` package the engine imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from failover.resume import resume, unfinished_uploads
from failover.uploads import plan_upload, upload
from failover.workspace import open_workspace
from persistence.requests import RequestHeader

DEST, FAILOVER = "LOCAL-DISK", "FAILOVER-DISK"
CREATE_BATCH = 1_000
GENERATE_CHUNK = 1 << 20
GOAL_UPLOAD_DELTA_MB = 10.0


def _peak_mb() -> float:
    """
    This process's peak RSS in MB: ``VmHWM``, where Linux has it, else ``ru_maxrss``.

    ``ru_maxrss`` survives ``fork`` and ``exec``: a child started by a parent holding 60 MB reports at
    least 60 MB whatever it does. ``VmHWM`` belongs to the address space, which ``exec`` replaces.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _header() -> RequestHeader:
    return RequestHeader(uuid.uuid4().hex, "bench-memory", "bench", "bench", "bench")


def child(kind: str, home: Path, argument: str) -> None:
    """In a fresh process: do one thing, print the peak RSS (MB) as JSON."""
    env = open_workspace(home)
    if kind == "upload":
        result = upload(env, argument, "/vo/bench/memory/file.dat", destinations=[DEST], request=_header())
        assert result.state == "Registered", result
    elif kind == "create":
        header, local = _header(), Path(home) / "local.dat"
        local.write_bytes(os.urandom(4096))
        count = int(argument)
        for first in range(0, count, CREATE_BATCH):
            with env.store.transaction():
                for n in range(first, min(first + CREATE_BATCH, count)):
                    lfn = f"/vo/bench/memory/dir{n // 1000:04d}/out_{n:07d}.dat"
                    machine_id, data = plan_upload(
                        env, local, lfn, destinations=[DEST], failovers=[FAILOVER], request=header
                    )
                    assert data is not None
                    env.uploads.create(machine_id, data)
    elif kind == "find":
        assert len(unfinished_uploads(env)) == int(argument)
    elif kind == "resume":
        report = resume(env, commit_drafts=False)
        assert (len(report.finished), report.failed) == (int(argument), {}), report.failed
    print(json.dumps({"peak_mb": _peak_mb()}))


def measure(kind: str, home: Path, argument: str = "") -> float:
    """Run :func:`child` in a fresh interpreter; return its peak RSS in MB."""
    command = [sys.executable, __file__, "--child", kind, "--home", str(home), "--argument", argument]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(output)["peak_mb"])


def make_file(path: Path, size: int) -> Path:
    """Write ``size`` random bytes (not timed)."""
    with open(path, "wb") as stream:
        for start in range(0, size, GENERATE_CHUNK):
            stream.write(os.urandom(min(GENERATE_CHUNK, size - start)))
    return path


def _size(size: int) -> str:
    return f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"


def _row(figure: str, value: str, goal: str = "", verdict: str = "") -> dict[str, str]:
    return {"bench": "memory", "figure": figure, "value": value, "goal": goal, "verdict": verdict}


def run(work: Path, small: int, big: int, machines: list[int]) -> list[dict[str, str]]:
    """Measure every figure, print the table; return the summary rows for run_all."""
    print(f"{'measurement':<28} {'peak RSS (MB)':>14}")
    floor = measure("imports", work / "imports")
    print(f"{'imports + empty workspace':<28} {floor:>14.1f}")
    rows = [_row("imports + empty workspace", f"{floor:.1f} MB")]
    peaks = {}
    for size in (small, big):
        source = make_file(work / f"upload-{size}.dat", size)
        peaks[size] = measure("upload", work / f"upload-{size}", str(source))
        source.unlink()
        print(f"{'upload ' + _size(size):<28} {peaks[size]:>14.1f}")
        rows.append(_row(f"upload {_size(size)}", f"{peaks[size]:.1f} MB"))
    delta = peaks[big] - peaks[small]
    verdict = "ok" if abs(delta) <= GOAL_UPLOAD_DELTA_MB else "OVER GOAL"
    label = f"upload {_size(big)} - {_size(small)}"
    print(f"{label:<28} {delta:>+14.1f} ({verdict}, goal within {GOAL_UPLOAD_DELTA_MB:.0f} MB)")
    rows.append(_row(label, f"{delta:+.1f} MB", f"within {GOAL_UPLOAD_DELTA_MB:.0f} MB", verdict))
    for count in machines:
        home = work / f"machines-{count}"
        for kind in ("create", "find", "resume"):
            peak = measure(kind, home, str(count))
            per = (peak - floor) * 1024 / count
            print(
                f"{f'{kind} {count:,} machines':<28} {peak:>14.1f} ({per:.2f} KB per machine above imports)"
            )
            rows.append(_row(f"{kind} {count:,} machines", f"{peak:.1f} MB ({per:.2f} KB/machine)"))
    return rows


def main() -> None:
    """Parse the arguments and run every measurement (or, with ``--child``, one of them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--small", type=int, default=1 << 20, help="bytes of the small upload (1 MiB)")
    parser.add_argument("--big", type=int, default=256 << 20, help="bytes of the big upload (issue 8: 1 GiB)")
    parser.add_argument(
        "--machines",
        type=int,
        nargs="+",
        default=[1_000, 10_000],
        help="machine counts (issue 8: 1000 100000)",
    )
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary directory)")
    parser.add_argument("--summary", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--child", choices=["imports", "upload", "create", "find", "resume"], help=argparse.SUPPRESS
    )
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--argument", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.home, args.argument)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, in {tmp}; a fresh process each\n")
        rows = run(Path(tmp), args.small, args.big, args.machines)
    if args.summary:
        args.summary.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
