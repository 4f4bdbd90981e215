"""
Request executor throughput: operations per second on failover uploads, against a plain script.

Setup (not timed): 1,000 jobs each upload one 4 KiB file through the DIRAC client
(``transferAndRegisterFileFailover``, target ``SE-A``, failover ``FAIL-1``) and commit their request, so
1,000 uploads sit in FailedOver with a committed ReplicateAndRegister + RemoveReplica each. The
workspace is built once and copied for every run, so each side starts from the same bytes.

Engine side: ``Executor(env).run_once()`` on the workspace, timed (the product defaults: batches of 32
requests, failover pairs run in rounds). Procs side: the same work by one executor per usable CPU (at most
4), each in a worker process (``run_once_in_processes``, what ``failover executor --once --jobs N`` runs),
timed from the first fork to the last worker's exit. Plain side: a script doing what the
two operations must do for the same files, without the engine: copy failover → target through a
temporary name with adler32 computed on the way, ``fsync`` of the data and the directory, compare with
the expected size and checksum, rename; insert the target replica in the catalog; delete the failover
replica from the catalog; delete the failover object. Its catalog writes go to the same SQLite catalog
file with ``sqlite3`` directly, one ``BEGIN IMMEDIATE`` transaction per write, under the same
``synchronous`` setting. Operations = 2 per upload on every side. Each profile runs ``--rounds`` rounds,
the two sides back to back in alternating order, each on a fresh copy; the figures are medians, and the
ratio is the median of the rounds' ratios.

Shapes (``--shapes``): ``jobs`` as above, and ``one-request``, where one job uploads all the files and
commits one request holding every upload's pair (what ``failover upload`` of many files leaves when they
fail over). Until 2026-11-27 the executor looked at all of a request's operations again for each pair it
ran, and a request of 20,000 operations took it a quarter of an hour; until later that day it ran such a
request one pair per round (a catalog commit, a store commit and a group of one copy per pair: about 850
ops/s FULL, half the ``jobs`` shape), where now a round takes up to ``batch_size`` of its pairs.

Profiles: ``FULL`` (the product default: every commit fsynced) and ``NORMAL`` (fsync at checkpoints
only, where the engine's CPU cost shows). ``--profile`` runs the engine side of the first profile once
more under cProfile and prints the top costs.

Usage: ``python bench/executor.py [--uploads N] [--rounds R] [--profiles FULL NORMAL]
[--shapes jobs one-request] [--profile] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this directory comes first on sys.path, and bench/transitions.py would shadow the
# ``transitions`` package the engine imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor
from failover.executor.processes import run_once_in_processes
from failover.parallel import MAX_AUTO_JOBS, usable_cpus
from failover.workspace import open_workspace
from persistence.db import Durability

SES = ("SE-A", "FAIL-1")
FILE_SIZE = 4096
FILES_PER_DIRECTORY = 100
CHUNK = 1 << 20
#: The goals of issue 4.
GOAL_OPS = 1_000
GOAL_RATIO = 2.0
#: Worker processes of the procs side: one per usable CPU, as ``failover upload`` picks them.
PROCESSES = min(usable_cpus(), MAX_AUTO_JOBS)


@dataclass(frozen=True)
class Copy:
    """One upload as the plain script sees it: what its request says, and where its objects are."""

    lfn: str
    size: int
    adler32: str
    source: str
    target: str
    target_pfn: str


#: The shapes of the work: how the uploads' operations are shared among requests.
SHAPES = {
    "jobs": "one job and request per upload",
    "one-request": "one job, one request holding every upload's operations",
}


def _lfn(n: int) -> str:
    return f"/vo/bench/run1/dir{n // FILES_PER_DIRECTORY:03d}/out_{n:05d}.root"


def build(home: Path, uploads: int, scratch: Path, one_request: bool = False) -> float:
    """
    Create the workspace with ``uploads`` committed failover uploads; return the seconds it took. Each
    upload is a job with its request, or (``one_request``) one job uploads them all into one request.
    """
    started = time.perf_counter()
    env = open_workspace(home, ses=SES, durability=Durability.NORMAL)
    scratch.mkdir()
    client = FailoverTransfer(environment=env)
    for n in range(uploads):
        local = scratch / f"out_{n:05d}.root"
        local.write_bytes(os.urandom(FILE_SIZE))
        client = client if one_request else FailoverTransfer(environment=env)
        result = client.transferAndRegisterFileFailover(local.name, str(local), _lfn(n), "SE-A", "FAIL-1", {})
        assert result["OK"] and result["Value"]["uploadedSE"] == "FAIL-1", result
        if not one_request:
            assert client.commitRequest()["OK"]
    if one_request:
        assert client.commitRequest()["OK"]
    env.close()
    return time.perf_counter() - started


def run_engine(home: Path, durability: Durability, profile: bool = False) -> tuple[float, int]:
    """Run every due request once; return the seconds and the number of operations done."""
    env = open_workspace(home, ses=SES, durability=durability)
    executor = Executor(env, name="bench")
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    executor.run_once()
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    done = _check_engine(env)
    env.close()
    if profiler is not None:
        print(f"\ncProfile of the engine side ({durability.value}), top 25 by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        print("top 30 by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return seconds, done


def run_engine_processes(home: Path, durability: Durability) -> tuple[float, int]:
    """Run every due request once with one executor per usable CPU in worker processes."""
    opener = functools.partial(open_workspace, home, ses=SES, durability=durability)
    started = time.perf_counter()
    run_once_in_processes(opener, PROCESSES, name="bench")
    seconds = time.perf_counter() - started
    env = opener()
    done = _check_engine(env)
    env.close()
    return seconds, done


def _check_engine(env: Environment) -> int:
    """The engine's work is complete: every operation Done and every upload Cleaned."""
    conn = env.store.conn
    done = conn.execute("SELECT COUNT(*) FROM operations WHERE status = 'Done'").fetchone()[0]
    total = conn.execute("SELECT COUNT(*) FROM operations").fetchone()[0]
    cleaned = conn.execute("SELECT COUNT(*) FROM machines WHERE state = 'Cleaned'").fetchone()[0]
    uploads = conn.execute("SELECT COUNT(*) FROM machines").fetchone()[0]
    assert (done, cleaned) == (total, uploads), (done, total, cleaned, uploads)
    return int(done)


def _plan(home: Path) -> list[Copy]:
    """What the plain script works from (read before timing, as the executor reads it from requests)."""
    env = open_workspace(home, ses=SES)
    copies = []
    rows = env.store.conn.execute(
        "SELECT f.lfn, f.size, f.checksum FROM files f JOIN operations o ON o.id = f.operation_id "
        "WHERE o.type = 'ReplicateAndRegister' ORDER BY f.id"
    )
    for lfn, size, checksum in rows:
        source, target = env.se("FAIL-1"), env.se("SE-A")
        paths = (source.root.rstrip("/") + lfn, target.root.rstrip("/") + lfn)
        copies.append(Copy(lfn, size, checksum, *paths, target.pfn(lfn)))
    env.close()
    return copies


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _make_dirs(directory: str) -> None:
    """Create missing directories and flush each new entry, as the local storage backend does."""
    missing = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    os.makedirs(directory, exist_ok=True)
    for created in reversed(missing):
        _fsync_directory(os.path.dirname(created))


def _copy(copy: Copy) -> None:
    directory = os.path.dirname(copy.target)
    _make_dirs(directory)
    temporary = f"{copy.target}.tmp"
    adler, size = 1, 0
    with open(copy.source, "rb") as source, open(temporary, "xb") as target:
        while chunk := source.read(CHUNK):
            adler = zlib.adler32(chunk, adler)
            size += len(chunk)
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    if size != copy.size or f"{adler & 0xFFFFFFFF:08x}" != copy.adler32:
        os.unlink(temporary)
        raise RuntimeError(f"{copy.lfn}: copy does not match size/checksum")
    os.replace(temporary, copy.target)
    _fsync_directory(directory)


def _write(conn: sqlite3.Connection, sql: str, parameters: tuple[str, ...]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(sql, parameters)
    conn.execute("COMMIT")


def run_plain(home: Path, durability: Durability) -> tuple[float, int]:
    """The same copies, catalog writes and deletes, without the engine; return seconds and operations."""
    copies = _plan(home)
    conn = sqlite3.connect(home / "catalog.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {durability.value}")
    conn.execute("PRAGMA busy_timeout = 30000")
    started = time.perf_counter()
    for copy in copies:
        _copy(copy)
        _write(
            conn,
            "INSERT INTO catalog_replicas (lfn, se, pfn) VALUES (?, ?, ?)",
            (copy.lfn, "SE-A", copy.target_pfn),
        )
        _write(conn, "DELETE FROM catalog_replicas WHERE lfn = ? AND se = ?", (copy.lfn, "FAIL-1"))
        os.unlink(copy.source)
    seconds = time.perf_counter() - started
    left = conn.execute("SELECT se, COUNT(*) FROM catalog_replicas GROUP BY se").fetchall()
    conn.close()
    assert left == [("SE-A", len(copies))], left
    return seconds, 2 * len(copies)


#: Every side, in the order of the first round.
SIDES = {"engine": run_engine, "procs": run_engine_processes, "plain": run_plain}


def main() -> None:
    """Parse the arguments, build the workspace once, and time every side per profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--uploads", type=int, default=1_000, help="failover uploads (jobs)")
    parser.add_argument(
        "--profiles", nargs="+", type=Durability, default=list(Durability), help="FULL, NORMAL"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per profile (medians taken)")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine side once more")
    parser.add_argument("--dir", type=Path, help="where the workspaces go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="leave the files for the caller to delete")
    parser.add_argument(
        "--shapes",
        nargs="+",
        choices=SHAPES,
        default=["jobs"],
        help="jobs: one request per upload; one-request: one job's request holds every upload",
    )
    args = parser.parse_args()
    profiles: list[Durability] = args.profiles
    tmp = tempfile.mkdtemp(dir=args.dir)
    try:
        directory = Path(tmp)
        print(
            f"sqlite {sqlite3.sqlite_version}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"workspaces in {tmp}"
        )
        for shape in args.shapes:
            run_shape(directory / shape, shape, args.uploads, profiles, args.rounds)
        if args.profile:
            home = directory / "profiled"
            shutil.copytree(directory / args.shapes[0] / "base", home)
            run_engine(home, profiles[0], profile=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp)


def run_shape(directory: Path, shape: str, uploads: int, profiles: list[Durability], rounds: int) -> None:
    """Build the workspace of one shape, then time every side per profile and print the figures."""
    directory.mkdir()
    built = build(directory / "base", uploads, directory / "job", one_request=shape == "one-request")
    print(
        f"setup ({shape}): {uploads:,} failover uploads of {FILE_SIZE // 1024} KiB, "
        f"{SHAPES[shape]}, {built:.1f} s; procs: {PROCESSES} executor processes\n"
    )
    print(f"{'profile':<8} {'side':<7} {'ops':>6} {'seconds':>8} {'ops/s':>8}  rounds (ops/s)")
    for durability in profiles:
        label = durability.value if shape == "jobs" else f"{durability.value}/{shape}"
        rates: dict[str, list[float]] = {side: [] for side in SIDES}
        ops = 0
        for round_no in range(rounds):
            # Rotate which side goes first, so none always meets another's writeback.
            turn = round_no % len(SIDES)
            order = list(SIDES)
            for side in order[turn:] + order[:turn]:
                home = directory / f"{durability.value}-{side}-{round_no}"
                shutil.copytree(directory / "base", home)
                os.sync()  # untimed: no side pays for the writeback of the copy or of the side before
                seconds, ops = SIDES[side](home, durability)
                rates[side].append(ops / seconds)
                # Kept to the end: a side run just after the other's files were deleted would pay
                # for their deletion (see bench/README.md).
        for side in SIDES:
            rate = statistics.median(rates[side])
            each = " ".join(f"{r:,.0f}" for r in rates[side])
            print(f"{label:<8} {side:<7} {ops:>6,} {ops / rate:>8.2f} {rate:>8,.0f}  {each}")
        for side in ("engine", "procs"):
            rate = statistics.median(rates[side])
            ratio = statistics.median(p / e for p, e in zip(rates["plain"], rates[side], strict=True))
            verdicts = (
                "ok" if rate >= GOAL_OPS else "UNDER GOAL",
                "ok" if ratio <= GOAL_RATIO else "OVER GOAL",
            )
            print(
                f"{label:<8} ratio   plain/{side} ops/s {ratio:.2f}x ({verdicts[1]}, goal <= "
                f"{GOAL_RATIO}x); {side} {rate:,.0f} ops/s ({verdicts[0]}, goal >= {GOAL_OPS:,})"
            )


if __name__ == "__main__":
    main()
