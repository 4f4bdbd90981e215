"""
Many small files: failover's upload (CLI and Python API) against rclone and a plain script.

The same N source files (default 4 KiB each, generated once, page cache hot) are staged out in every round
by each side, into a fresh destination on the same filesystem, in an order rotated per round; the median
of the rounds is reported. Every side's time includes its own set-up: the process start for the
CLI and rclone, the workspace or catalog creation for the API and the plain script.

- ``cli``: ``failover upload FILES... --lfn-prefix /vo/bench/small --dest LOCAL-DISK --failover FAILOVER-DISK
  --home DIR --json`` with its default ``--jobs`` (one worker process per 256 files and per usable CPU, at
  most 4: 2 on a 2-CPU machine), each batch through :func:`failover.batch.upload_many`, then the request
  commit; full durability.
- ``cli-table``: the same without ``--json``: the report a person reads (a table; past 100 files,
  aligned plain text), through a pipe.
- ``api``: ``open_workspace(DIR)`` (``Durability.FULL``) then ``upload_many(...)`` with its default batch
  size, in this one process, then the request commit.
- ``api-procs``: :func:`failover.parallel.upload_in_processes` with as many workers as the CLI picks, each
  opening the workspace itself, then the request commit.
- ``rclone``: ``rclone copy --checksum SRC DST`` (Debian's rclone, local to local, default 4 parallel
  transfers). It computes MD5 on both sides and compares them, but writes straight to the final name and
  fsyncs nothing (checked with ``strace -f -c``), and keeps no catalog or journal.
- ``rclone+syncfs``: the same followed by ``sync -f DST`` (one ``syncfs`` of the whole filesystem, which
  also flushes whatever else is dirty on it): rclone's copies made durable at the lowest cost. Shown for
  a like-for-like reading; the goal is stated against plain rclone.
- ``fsync-floor``: about the least a copy that makes each file durable does, for reference: eight threads
  each read a source, write it under its final name and ``fsync`` it, then one ``fsync`` of the
  directory. No checksum, temporary name, catalog or journal (a crash can leave a partial file under its
  final name: not a way to upload). It tells what durability alone costs on this disk: where it is
  slower than rclone, durability alone costs more than rclone's whole copy; the gap between it and the
  ``api`` sides is failover's own work (checksums, atomic publication, machine, journal and catalog).
- ``plain``: for each file, copy it into the SE directory computing adler32 on the way, ``fsync`` it,
  insert one row into a SQLite catalog (WAL, ``synchronous=FULL``, one autocommit per file). What it skips
  compared with failover: the temporary name and atomic rename, the ``fsync`` of the directory, the size
  check of what landed, the machine rows, journal and request, and the batching logic.

Goals (issue 8): the CLI and the API (both sides of each are judged) each faster than rclone, and within 1.3x
of the plain script. Every ratio is the median over rounds of the two sides' times in the same round: the
sides of one round run back to back, so they see the same load on a shared machine, where the medians of
each side alone may come from quiet and busy moments.

Usage: ``python bench/small_files.py [--files N] [--size BYTES] [--rounds N] [--per-file] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this directory comes first on sys.path, and bench/transitions.py would shadow the
# ``transitions`` package the engine imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from failover.batch import BatchItem, upload_many
from failover.environment import Environment
from failover.errors import FailoverError
from failover.parallel import auto_jobs, upload_in_processes
from failover.uploads import upload
from failover.workspace import open_workspace
from persistence.requests import RequestHeader

LFN_DIR = "/vo/bench/small"
DEST, FAILOVER = "LOCAL-DISK", "FAILOVER-DISK"
CHUNK = 1 << 20
GOAL_PLAIN_RATIO = 1.3
FAILOVER_CLI = Path(sys.executable).with_name("failover")

Side = Callable[[Path, list[Path], Path], None]


def make_sources(directory: Path, files: int, size: int) -> list[Path]:
    """Write ``files`` random files of ``size`` bytes (not timed)."""
    directory.mkdir()
    paths = [directory / f"out_{n:05d}.dat" for n in range(files)]
    for path in paths:
        path.write_bytes(os.urandom(size))
    return paths


def _header() -> RequestHeader:
    return RequestHeader(uuid.uuid4().hex, "bench-small-files", "bench", "bench", "bench")


def _commit(env: Environment, header: RequestHeader) -> None:
    row = env.requests.find(header.client_key)
    if row is not None:
        env.requests.commit(row.id)


def run_api(home: Path, sources: list[Path], _: Path) -> None:
    """``upload_many`` on a fresh full-durability workspace, then the request commit."""
    env = open_workspace(home)
    header = _header()
    items = [BatchItem(path, f"{LFN_DIR}/{path.name}") for path in sources]
    outcomes = upload_many(env, items, request=header, destinations=[DEST], failovers=[FAILOVER])
    _commit(env, header)
    env.close()
    failed = [o for o in outcomes if isinstance(o, FailoverError)]
    assert not failed and all(o.state == "Registered" for o in outcomes), failed[:3]  # type: ignore[union-attr]


def run_api_processes(home: Path, sources: list[Path], _: Path) -> None:
    """``upload_in_processes`` (workers as ``failover upload`` picks them), then the request commit."""
    header = _header()
    items = [BatchItem(path, f"{LFN_DIR}/{path.name}") for path in sources]
    opener = functools.partial(open_workspace, home)
    jobs = auto_jobs(len(items))
    outcomes = upload_in_processes(
        opener, items, jobs=jobs, request=header, destinations=[DEST], failovers=[FAILOVER]
    )
    env = opener()
    _commit(env, header)
    env.close()
    failed = [o for o in outcomes if isinstance(o, FailoverError)]
    assert not failed and all(o.state == "Registered" for o in outcomes), failed[:3]  # type: ignore[union-attr]


def run_api_per_file(home: Path, sources: list[Path], _: Path) -> None:
    """``upload()`` file by file (one commit per transition): what batching saves."""
    env = open_workspace(home)
    header = _header()
    for path in sources:
        result = upload(
            env, path, f"{LFN_DIR}/{path.name}", destinations=[DEST], failovers=[FAILOVER], request=header
        )
        assert result.state == "Registered", result
    _commit(env, header)
    env.close()


def _upload_command(home: Path, sources: list[Path], *extra: str) -> str:
    """Run ``failover upload`` on all the files (its default ``--jobs``); return what it printed."""
    command = [str(FAILOVER_CLI), "upload", *map(str, sources), "--lfn-prefix", LFN_DIR]
    command += ["--dest", DEST, "--failover", FAILOVER, "--home", str(home), *extra]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def run_cli(home: Path, sources: list[Path], _: Path) -> None:
    """``failover upload`` on all the files, JSON output."""
    states = {u["state"] for u in json.loads(_upload_command(home, sources, "--json"))["uploads"]}
    assert states == {"Registered"}, states


def run_cli_table(home: Path, sources: list[Path], _: Path) -> None:
    """``failover upload`` as a person runs it: the default report (a table), read from a pipe."""
    output = _upload_command(home, sources)
    assert output.splitlines()[-1] == f"{len(sources):,} files: Registered {len(sources):,}", output[-200:]


def run_rclone(home: Path, sources: list[Path], src_dir: Path) -> None:
    """``rclone copy --checksum`` of the source directory, with an empty configuration."""
    env = {**os.environ, "RCLONE_CONFIG": str(home.parent / "rclone.conf")}
    subprocess.run(["rclone", "copy", "--checksum", str(src_dir), str(home)], check=True, env=env)
    assert len(os.listdir(home)) == len(sources)


def run_rclone_syncfs(home: Path, sources: list[Path], src_dir: Path) -> None:
    """rclone, then ``sync -f`` (one syncfs of the filesystem): rclone's copies made durable, cheaply."""
    run_rclone(home, sources, src_dir)
    subprocess.run(["sync", "-f", str(home)], check=True)


FLOOR_THREADS = 8


def _copy_fsync(source: Path, target: str) -> None:
    with open(source, "rb") as reader:
        data = reader.read()
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def run_fsync_floor(home: Path, sources: list[Path], _: Path) -> None:
    """Copy and ``fsync`` each file in eight threads, then ``fsync`` the directory: a durable copy's floor."""
    home.mkdir()
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(lambda source: _copy_fsync(source, str(home / source.name)), sources))
    descriptor = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    assert len(os.listdir(home)) == len(sources)


def _copy_fsync_adler32(source: Path, target: str) -> tuple[int, int]:
    adler, size = 1, 0
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(CHUNK):
            adler = zlib.adler32(chunk, adler)
            size += len(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return size, adler


def run_plain(home: Path, sources: list[Path], _: Path) -> None:
    """Copy + fsync + adler32 + one autocommitted catalog insert per file."""
    directory = home / "se" / DEST / LFN_DIR.lstrip("/")
    directory.mkdir(parents=True)
    conn = sqlite3.connect(home / "catalog.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS files (lfn TEXT PRIMARY KEY, size INTEGER, checksum TEXT, guid TEXT, "
        "se TEXT, pfn TEXT, registered_at TEXT)"
    )
    for source in sources:
        target = str(directory / source.name)
        size, adler = _copy_fsync_adler32(source, target)
        conn.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, datetime('now'))",
            (
                f"{LFN_DIR}/{source.name}",
                size,
                f"{adler:08x}",
                str(uuid.uuid4()).upper(),
                DEST,
                "file://" + target,
            ),
        )
    count = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    conn.close()
    assert count == len(sources), count


def sides(per_file: bool) -> dict[str, Side]:
    """The sides to time; rclone only where it is installed."""
    chosen: dict[str, Side] = {
        "cli": run_cli,
        "cli-table": run_cli_table,
        "api": run_api,
        "api-procs": run_api_processes,
    }
    if per_file:
        chosen["api-1by1"] = run_api_per_file
    if shutil.which("rclone"):
        chosen["rclone"] = run_rclone
        chosen["rclone+syncfs"] = run_rclone_syncfs
    chosen["fsync-floor"] = run_fsync_floor
    chosen["plain"] = run_plain
    return chosen


def run_rounds(
    work: Path, sources: list[Path], chosen: dict[str, Side], rounds: int
) -> dict[str, list[float]]:
    """
    Time every side once per round, rotating the order; each run gets a fresh destination, kept to the end.

    Nothing is deleted between runs: on ext4 without a journal (this benchmark's usual disk), a create skips
    every inode freed in the last minute or more, looking up each one's record, so a side run right after
    another side's 2,000 files were deleted paid up to 0.5 ms more per file for the benchmark's clean-up.
    """
    names = list(chosen)
    times: dict[str, list[float]] = {name: [] for name in names}
    (work / "rclone.conf").touch()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            home = work / f"{name}-{r}"
            started = time.perf_counter()
            chosen[name](home, sources, sources[0].parent)
            times[name].append(time.perf_counter() - started)
    return times


def _verdict(ok: bool) -> str:
    return "ok" if ok else "OVER GOAL"


def paired(times: dict[str, list[float]], side: str, base: str) -> float:
    """The median over rounds of ``side``'s time over ``base``'s (a round's sides share the load)."""
    return statistics.median(t / b for t, b in zip(times[side], times[base], strict=True))


def _goal_line(ours: str, base: str, ratio: float, ok: bool, goal: str, files: int) -> dict[str, str]:
    verdict = _verdict(ok) if goal else ""
    judged = f"{verdict}, goal {goal}" if goal else "like for like, no goal"
    print(f"{ours:<13} time / {base} {ratio:.2f}x ({judged})")
    return _row(f"{ours}: {files:,} files, time / {base}", f"{ratio:.2f}x", goal, verdict)


def report(times: dict[str, list[float]], files: int) -> list[dict[str, str]]:
    """Print the table; return the summary rows for run_all."""
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    print(f"{'side':<13} {'seconds':>8} {'files/s':>8} {'x plain':>8} {'rounds (s)':>30}")
    for name, samples in times.items():
        spread = " ".join(f"{s:.2f}" for s in samples)
        ratio = paired(times, name, "plain")
        print(f"{name:<13} {medians[name]:>8.2f} {files / medians[name]:>8,.0f} {ratio:>7.2f}x {spread:>30}")
    rows = []
    for ours in ("cli", "cli-table", "api", "api-procs"):
        ratio = paired(times, ours, "plain")
        rows.append(
            _goal_line(ours, "plain", ratio, ratio <= GOAL_PLAIN_RATIO, f"<= {GOAL_PLAIN_RATIO}x", files)
        )
        if "rclone" in times:
            ratio = paired(times, ours, "rclone")
            rows.append(_goal_line(ours, "rclone", ratio, ratio < 1, "< 1x", files))
            rows.append(
                _goal_line(ours, "rclone+syncfs", paired(times, ours, "rclone+syncfs"), True, "", files)
            )
        else:
            print(f"{ours:<13} time / rclone n/a (rclone not installed: scripts/install-bench-deps.sh)")
            rows.append(_row(f"{ours}: {files:,} files, time / rclone", "n/a", "< 1x", "n/a"))
    if "rclone" in times:
        ratio = paired(times, "fsync-floor", "rclone")
        print(f"{'fsync-floor':<13} time / rclone {ratio:.2f}x (what durability alone costs, no goal)")
        rows.append(_row(f"fsync-floor: {files:,} files, time / rclone", f"{ratio:.2f}x", "", ""))
    for name, median in medians.items():
        rows.append(_row(f"{name}: {files:,} files", f"{median:.2f} s, {files / median:,.0f}/s", "", ""))
    return rows


def _row(figure: str, value: str, goal: str, verdict: str) -> dict[str, str]:
    return {"bench": "small_files", "figure": figure, "value": value, "goal": goal, "verdict": verdict}


def profile_api(work: Path, sources: list[Path]) -> None:
    """Run the API side once more under cProfile and print the top costs."""
    profiler = cProfile.Profile()
    profiler.runcall(run_api, work / "profiled", sources, sources[0].parent)
    print("\ncProfile of the api side, top 20 by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    print("top 25 by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    """Parse the arguments, make the files once, and time every side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--files", type=int, default=300, help="files per run (issue 8: 2000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (median taken)")
    parser.add_argument("--per-file", action="store_true", help="also time upload() file by file")
    parser.add_argument("--profile", action="store_true", help="cProfile the api side once more")
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="leave the files for the caller to delete")
    parser.add_argument("--summary", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(dir=args.dir)
    try:
        work = Path(tmp)
        sources = make_sources(work / "src", args.files, args.size)
        chosen = sides(args.per_file)
        print(
            f"sqlite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, in {tmp}"
        )
        print(
            f"{args.files:,} files of {args.size:,} bytes, {args.rounds} rounds, rotating order: "
            f"{', '.join(chosen)}\n"
        )
        rows = report(run_rounds(work, sources, chosen, args.rounds), args.files)
        if args.profile:
            profile_api(work, sources)
    finally:
        if not args.keep:
            shutil.rmtree(tmp)
    if args.summary:
        args.summary.write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
