"""
Run every benchmark and print one combined table (``make bench``).

Each benchmark runs in its own process, one after the other (never two at once: they would share the
two cores and the disk), and its own output is shown as it comes. The benchmarks of issue 8
(``small_files``, ``big_file``, ``recovery``, ``memory``) hand their figures over as JSON
(``--summary``); the others (``transitions``, ``executor``, ``protocols``) have their closing lines read. The
combined table at the end lists every figure with its goal and verdict, under a description of the
machine. ``protocols`` needs the test servers (``scripts/install-test-deps.sh``); without them it shows
as crashed. Nothing here fails on a time: the exit status is 1 only if a benchmark itself crashed.

Sizes: the issue's (2,000 small files, 1 GiB, 100,000 in-flight uploads, ...; about six minutes on two
cores), or small ones with ``--quick`` (a smoke run of under a minute).

Usage: ``python bench/run_all.py [--quick] [--only NAME ...] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
GIB = str(1 << 30)

#: Arguments per benchmark: the issue's sizes, then the quick ones.
FULL_ARGS: dict[str, list[str]] = {
    "small_files": ["--files", "2000", "--rounds", "5"],
    "big_file": ["--size", GIB, "--rounds", "5"],
    "recovery": ["--uploads", "100000", "--drive", "100000", "--rounds", "3", "--drive-rounds", "1"],
    "memory": ["--big", GIB, "--machines", "1000", "100000"],
    "transitions": ["--rounds", "5", "--fires", "900", "--instances", "100000"],
    "executor": ["--uploads", "1000", "--rounds", "5", "--shapes", "jobs", "one-request"],
    "protocols": ["--size-mib", "256"],
}
QUICK_ARGS: dict[str, list[str]] = {
    "small_files": ["--files", "300", "--rounds", "2"],
    "big_file": ["--size", str(64 << 20), "--rounds", "2"],
    "recovery": ["--uploads", "5000", "--drive", "1000", "--rounds", "2", "--drive-rounds", "2"],
    "memory": ["--big", str(64 << 20), "--machines", "1000", "10000"],
    "transitions": ["--rounds", "2", "--fires", "300", "--instances", "10000"],
    "executor": ["--uploads", "100", "--shapes", "jobs", "one-request"],
    "protocols": ["--size-mib", "64"],
}
#: Benchmarks that write ``--summary`` JSON; the others are read from their output.
SUMMARISED = ("small_files", "big_file", "recovery", "memory")
#: Benchmarks that create thousands of files: they leave them (``--keep``) for this script to delete at the
#: end, since on ext4 without a journal every file created in the minutes after a mass deletion pays for it
#: (see bench/README.md), and the next benchmark would.
KEEPING = ("small_files", "recovery", "executor")

Row = dict[str, str]


def _row(bench: str, figure: str, value: str, goal: str = "", verdict: str = "") -> Row:
    return {"bench": bench, "figure": figure, "value": value, "goal": goal, "verdict": verdict}


_TRANSITIONS_RATIO = re.compile(
    r"^(\w+)\s+ratio\s+bare/engine tx/s ([\d.]+x) \((ok|OVER GOAL), goal (<= [\d.]+x)\)", re.M
)
_TRANSITIONS_ENGINE = re.compile(r"^(\w+)\s+engine\s+([\d,]+)\s", re.M)
_TRANSITIONS_MEMORY = re.compile(
    r"^memory\s+peak RSS after creating ([\d,]+) instances: ([\d.]+ MB) \((ok|OVER GOAL), goal (< \d+ MB)",
    re.M,
)
_EXECUTOR_RATIO = re.compile(
    r"^([\w/-]+)\s+ratio\s+plain/(\w+) ops/s ([\d.]+x) \((ok|OVER GOAL), goal (<= [\d.]+x)\); "
    r"\w+ ([\d,]+) ops/s \((ok|UNDER GOAL), goal (>= [\d,]+)\)",
    re.M,
)


def parse_transitions(output: str) -> list[Row]:
    """The closing lines of bench/transitions.py as table rows."""
    engine = dict(_TRANSITIONS_ENGINE.findall(output))
    rows = [
        _row(
            "transitions",
            f"{profile}: engine tx/s; bare/engine",
            f"{engine.get(profile, '?')}/s; {ratio}",
            goal,
            ok,
        )
        for profile, ratio, ok, goal in _TRANSITIONS_RATIO.findall(output)
    ]
    for count, peak, ok, goal in _TRANSITIONS_MEMORY.findall(output):
        rows.append(_row("transitions", f"peak RSS creating {count} instances", peak, goal, ok))
    return rows


def parse_executor(output: str) -> list[Row]:
    """The closing lines of bench/executor.py as table rows."""
    rows = []
    for profile, side, ratio, ok, goal, ops, ops_ok, ops_goal in _EXECUTOR_RATIO.findall(output):
        rows.append(_row("executor", f"{profile}: {side} ops/s", f"{ops}/s", f"{ops_goal}/s", ops_ok))
        rows.append(_row("executor", f"{profile}: plain/{side} ops/s", ratio, goal, ok))
    return rows


_PROTOCOLS_ROW = re.compile(r"^ *(\S.*?)\s+([\d.]+) s\s+([\d,]+) MB/s", re.M)


def parse_protocols(output: str) -> list[Row]:
    """The figure lines of bench/protocols.py (no goals: MiB/s of each put and plain client)."""
    return [
        _row("protocols", name, f"{rate} MiB/s ({seconds} s)")
        for name, seconds, rate in _PROTOCOLS_ROW.findall(output)
    ]


PARSERS = {"transitions": parse_transitions, "executor": parse_executor, "protocols": parse_protocols}


def run_bench(name: str, arguments: list[str], work: Path) -> tuple[list[Row], float]:
    """Run one benchmark, echoing its output; return its rows and its wall time."""
    command = [sys.executable, str(BENCH / f"{name}.py"), *arguments]
    summary = work / f"{name}.json"
    if name in SUMMARISED:
        command += ["--summary", str(summary)]
    command += ["--dir", str(work)]
    if name in KEEPING:
        command.append("--keep")
    print(f"\n=== {name}: {' '.join(arguments)}", flush=True)
    started = time.perf_counter()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        return [_row(name, "benchmark crashed", f"exit status {process.returncode}", "", "FAILED")], seconds
    if name in SUMMARISED:
        rows: list[Row] = json.loads(summary.read_text())
    else:
        rows = PARSERS[name]("".join(lines))
    return rows or [_row(name, "closing lines not recognised", "see its output above")], seconds


def _first(path: str, key: str) -> str:
    try:
        with open(path) as stream:
            for line in stream:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _rclone() -> str:
    if not shutil.which("rclone"):
        return "rclone not installed (scripts/install-bench-deps.sh)"
    output = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout
    return output.splitlines()[0] if output else "rclone ?"


def _filesystem(path: Path) -> str:
    output = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout.splitlines()
    fields = output[-1].split() if output else []
    return f"{fields[1]} on {fields[0]}" if len(fields) > 1 else "?"


def machine(work: Path) -> str:
    """One paragraph describing where the numbers came from."""
    memory_gib = (
        int(_first("/proc/meminfo", "MemTotal").split()[0]) / 2**20 if os.path.exists("/proc/meminfo") else 0
    )
    return (
        f"{_first('/proc/cpuinfo', 'model name')}, {os.cpu_count()} CPUs, {memory_gib:.0f} GiB RAM; "
        f"{platform.system()} {platform.release()}; temporary files: {_filesystem(work)}; "
        f"Python {platform.python_version()}, sqlite {sqlite3.sqlite_version}; {_rclone()}"
    )


def print_table(rows: list[Row], times: dict[str, float], description: str) -> None:
    """The combined table, in Markdown (it goes into bench/README.md and the closing note as is)."""
    columns = ("bench", "figure", "value", "goal", "verdict")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print(f"\n## Combined results\n\nMachine: {description}\n")
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for row in rows:
        print("| " + " | ".join(row[c].ljust(widths[c]) for c in columns) + " |")
    spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in times.items())
    print(f"\nWall time: {sum(times.values()):.0f} s ({spent}).")


def main() -> None:
    """Run the chosen benchmarks in turn, then print the combined table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, under a minute)")
    parser.add_argument("--only", nargs="+", choices=list(FULL_ARGS), help="run only these benchmarks")
    parser.add_argument("--dir", type=Path, help="where temporary files go (default: the system's)")
    args = parser.parse_args()
    sizes = QUICK_ARGS if args.quick else FULL_ARGS
    rows: list[Row] = []
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="failover-bench-") as tmp:
        work = Path(tmp)
        description = machine(work)
        print(f"Machine: {description}")
        for name in args.only or list(FULL_ARGS):
            bench_rows, times[name] = run_bench(name, sizes[name], work)
            rows += bench_rows
    print_table(rows, times, description)
    if any(row["verdict"] == "FAILED" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
