"""
Durable transitions per second: the engine against a bare ``sqlite3`` script doing the same writes.

Every transaction does the same work on both sides: ``BEGIN IMMEDIATE``, read the row, state
compare-and-swap, one journal row, one emitted row, ``COMMIT``. Both sides write into one database
opened with :func:`persistence.open_store` (same schema, same pragmas), on the same connection, in
alternating rounds so that WAL growth and checkpoints hit both alike; each side's median over the
rounds is reported, and the ratios are the medians over rounds of the ratio within a round.
Profiles: ``synchronous=FULL`` (the default, fsync per commit) and ``NORMAL`` (where the CPU cost of
the engine shows).

The machine is the upload machine's retry loop: Uploading --attempt_failed--> Uploading with the real
guard and decider (:func:`states.uploading.can_try_again`, :func:`states.uploading.decide_attempt_failed`)
over real upload data (:func:`states.new_upload_data`). The real transition emits nothing, so the bench
machine wraps the decider to emit one operation-like item per transition. Each instance has four
candidate SEs and takes three failed attempts. The bare script calls the same guard and decider as
plain functions and encodes canonical JSON with a cached encoder, so the ratio measures what the
engine adds (the ``transitions`` rule book, its dataclasses, the codec, the transaction manager),
not the domain code.

Peak memory is the ``ru_maxrss`` of a fresh process that creates 100,000 instances (in transactions
of 1,000).

Usage: ``python bench/transitions.py [--rounds N] [--fires N] [--instances N] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this directory comes first on sys.path, and this file's name would shadow the
# ``transitions`` package the engine imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from fsm import Decision, Emission, Engine, MachineSpec, Transition, TransitionContext, format_time, utc_now
from persistence import Durability, Store, open_store
from states import new_upload_data
from states.uploading import can_try_again, decide_attempt_failed

CANDIDATES = {"destinations": ["CERN-DST", "RAL-DST"], "failovers": ["CERN-FAILOVER", "IN2P3-FAILOVER"]}
ATTEMPTS_PER_INSTANCE = 3
CREATE_BATCH = 1_000
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+\+00:00")
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def decide_and_report(ctx: TransitionContext) -> Decision:
    """The real retry decision, plus one emitted report of the failed attempt."""
    decision = decide_attempt_failed(ctx)
    report = {
        "type": "AttemptFailed",
        "se": ctx.event["se"],
        "lfn": ctx.data["lfn"],
        "error": ctx.event["error"],
    }
    return Decision(decision.data, (Emission("AttemptFailed", report),))


BENCH_MACHINE = MachineSpec(
    name="bench-upload",
    states=("Uploading", "Failed"),
    initial="Uploading",
    finals=frozenset({"Failed"}),
    transitions=(
        Transition(
            "attempt_failed",
            ("Uploading",),
            "Uploading",
            decide_and_report,
            can_try_again,
            ("AttemptFailed",),
        ),
        Transition("exhausted", ("Uploading",), "Failed"),
    ),
)


def upload_data(n: int) -> dict[str, Any]:
    """The data of upload ``n``, as a job would create it."""
    return new_upload_data(
        lfn=f"/lhcb/user/b/bench/2030/run{n // 1000:04d}/output_{n:07d}.root",
        local_path=f"/scratch/job/{n}/output_{n:07d}.root",
        size=1_048_576 + n,
        checksum_type="ADLER32",
        checksum=f"{n:08x}",
        guid=f"{n:08X}-0000-4000-8000-000000000000",
        catalogs=["DIRACFileCatalog"],
        **CANDIDATES,
    )


def attempt_event(attempt: int) -> dict[str, Any]:
    """The event of the ``attempt``-th failed put of an upload (each on the next candidate SE)."""
    ses = [*CANDIDATES["destinations"], *CANDIDATES["failovers"]]
    error = {"code": "storage_unavailable", "message": f"{ses[attempt]}: connection refused", "errno": 111}
    return {"se": ses[attempt], "error": error, "retryable": True}


Work = list[tuple[str, dict[str, Any]]]
Fire = Callable[[str, dict[str, Any]], object]


def bare_fire(conn: sqlite3.Connection) -> Fire:
    """A hand-written transition on plain SQL: the floor the engine is measured against."""
    guard, decide = can_try_again, decide_and_report

    def fire(machine_id: str, event: dict[str, Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            state, version, text = conn.execute(
                "SELECT state, version, data FROM machines WHERE id = ?", (machine_id,)
            ).fetchone()
            data, now, seq = json.loads(text), utc_now(), version + 1
            ctx = TransitionContext(machine_id, "attempt_failed", state, data, event, now, seq)
            if not guard(ctx):
                raise RuntimeError("refused")
            decision, at = decide(ctx), format_time(now)
            cursor = conn.execute(
                "UPDATE machines SET state = ?, data = ?, version = ?, updated_at = ? "
                "WHERE id = ? AND version = ?",
                (state, _encode({**data, **decision.data}), seq, at, machine_id, version),
            )
            if cursor.rowcount != 1:
                raise RuntimeError("lost the compare-and-swap")
            payload = {"event": event, "changes": decision.data, "emitted": [e.kind for e in decision.emit]}
            conn.execute(
                "INSERT INTO journal (machine_id, seq, at, trigger, src, dst, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (machine_id, seq, at, "attempt_failed", state, state, _encode(payload)),
            )
            for position, emission in enumerate(decision.emit):
                conn.execute(
                    "INSERT INTO emitted (idem_key, machine_id, seq, position, kind, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        f"{machine_id}/{seq}/{position}/{emission.kind}",
                        machine_id,
                        seq,
                        position,
                        emission.kind,
                        _encode(emission.payload),
                        at,
                    ),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    return fire


def create_instances(engine: Engine, ids: Iterator[tuple[int, str]]) -> None:
    """Create instances through the engine, ``CREATE_BATCH`` per transaction (each create is a savepoint)."""
    batch: list[tuple[int, str]] = []
    for item in [*ids, None]:
        if item is not None:
            batch.append(item)
        if batch and (item is None or len(batch) == CREATE_BATCH):
            with engine.store.transaction():
                for n, machine_id in batch:
                    engine.create(machine_id, upload_data(n))
            batch = []


def work_for(prefix: str, first: int, count: int) -> Work:
    """``count`` fires: three failed attempts on each of ``count / 3`` instances, attempt by attempt."""
    uploads = range(first, first + count // ATTEMPTS_PER_INSTANCE)
    return [(f"{prefix}{n}", attempt_event(a)) for a in range(ATTEMPTS_PER_INSTANCE) for n in uploads]


@dataclass
class Sample:
    """One round of one side."""

    tx_per_s: float
    cpu_us_per_tx: float


def timed(fire: Fire, work: Work) -> Sample:
    """Run ``work`` through ``fire``; measure wall and CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    for machine_id, event in work:
        fire(machine_id, event)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Sample(len(work) / wall, cpu / len(work) * 1e6)


def run_profile(directory: Path, durability: Durability, rounds: int, fires: int) -> dict[str, list[Sample]]:
    """Alternate engine and bare rounds on one database; return the samples of each side."""
    store = open_store(directory / f"bench-{durability.value.lower()}.db", durability=durability)
    engine = Engine(BENCH_MACHINE, store)
    per_round = fires // ATTEMPTS_PER_INSTANCE
    for prefix in ("engine-", "bare-"):
        create_instances(engine, ((n, f"{prefix}{n}") for n in range(rounds * per_round)))
    sides: dict[str, tuple[str, Fire]] = {
        "engine": ("engine-", lambda machine_id, event: engine.fire(machine_id, "attempt_failed", event)),
        "bare": ("bare-", bare_fire(store.conn)),
    }
    samples: dict[str, list[Sample]] = {"engine": [], "bare": []}
    for r in range(rounds):
        order = ["engine", "bare"] if r % 2 == 0 else ["bare", "engine"]
        for side in order:
            prefix, fire = sides[side]
            samples[side].append(timed(fire, work_for(prefix, r * per_round, fires)))
    check_equivalent(store)
    store.close()
    return samples


def check_equivalent(store: Store) -> None:
    """The bare script must have written what the engine writes (timestamps aside)."""
    for n in (0, 1, 2):
        stored = [
            store.conn.execute(
                "SELECT m.state, m.version, m.data, j.seq, j.payload, e.idem_key, e.payload "
                "FROM machines m JOIN journal j ON j.machine_id = m.id "
                "LEFT JOIN emitted e ON e.machine_id = m.id AND e.seq = j.seq WHERE m.id = ? ORDER BY j.seq",
                (f"{side}{n}",),
            ).fetchall()
            for side in ("engine-", "bare-")
        ]
        engine, bare = (_TIMESTAMP.sub("T", repr(rows).replace(f"-{n}/", "-/")) for rows in stored)
        assert len(stored[0]) == ATTEMPTS_PER_INSTANCE + 1 and engine.replace("engine-", "bare-") == bare


def memory_child(directory: Path, instances: int) -> None:
    """In a fresh process: create ``instances`` uploads, print peak RSS (MB) after imports and after."""
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open_store(directory / "memory.db") as store:
        create_instances(Engine(BENCH_MACHINE, store), ((n, f"upload-{n}") for n in range(instances)))
        created = store.conn.execute("SELECT COUNT(*) FROM machines").fetchone()[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"after_imports_mb": after_imports, "peak_mb": peak, "created": created}))


def measure_memory(directory: Path, instances: int) -> dict[str, float]:
    """Run :func:`memory_child` in a fresh interpreter and return its figures."""
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(instances), "--dir", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(output)
    figures["seconds"] = time.perf_counter() - started
    return figures


def report(profiles: dict[str, dict[str, list[Sample]]], memory: dict[str, float] | None) -> None:
    """Print the table."""
    print(f"{'profile':<8} {'side':<7} {'tx/s (median)':>14} {'CPU µs/tx':>10} {'rounds tx/s':>34}")
    for name, samples in profiles.items():
        medians = {}
        for side in ("engine", "bare"):
            rates = [s.tx_per_s for s in samples[side]]
            medians[side] = (
                statistics.median(rates),
                statistics.median(s.cpu_us_per_tx for s in samples[side]),
            )
            spread = " ".join(f"{rate:,.0f}" for rate in rates)
            print(f"{name:<8} {side:<7} {medians[side][0]:>14,.0f} {medians[side][1]:>10.1f} {spread:>34}")
        # The sides of one round run back to back under the same load: compare them within the round.
        pairs = list(zip(samples["engine"], samples["bare"], strict=True))
        ratio = statistics.median(bare.tx_per_s / engine.tx_per_s for engine, bare in pairs)
        cpu_ratio = statistics.median(engine.cpu_us_per_tx / bare.cpu_us_per_tx for engine, bare in pairs)
        verdict = "ok" if ratio <= 1.5 else "OVER GOAL"
        print(
            f"{name:<8} ratio   bare/engine tx/s {ratio:.2f}x ({verdict}, goal <= 1.5x), CPU {cpu_ratio:.2f}x"
        )
    if memory is None:
        return
    peak, verdict = memory["peak_mb"], "ok" if memory["peak_mb"] < 150 else "OVER GOAL"
    print(
        f"memory   peak RSS after creating {int(memory['created']):,} instances: {peak:.1f} MB "
        f"({verdict}, goal < 150 MB; {memory['after_imports_mb']:.1f} MB after imports; "
        f"created in {memory['seconds']:.1f} s)"
    )


def main() -> None:
    """Parse the arguments and run the benchmark (or, with ``--memory-child``, the memory probe)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side and profile (median taken)")
    parser.add_argument("--fires", type=int, default=1_500, help="transitions per round")
    parser.add_argument(
        "--instances", type=int, default=100_000, help="instances for the memory probe (0: skip)"
    )
    parser.add_argument(
        "--profiles", nargs="+", type=Durability, default=list(Durability), help="FULL, NORMAL"
    )
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temporary directory)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.dir, args.memory_child)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        print(
            f"sqlite {sqlite3.sqlite_version}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"db in {tmp}"
        )
        print(f"{args.rounds} rounds x {args.fires:,} transitions per side and profile, alternating sides\n")
        profiles = {
            durability.value: run_profile(directory, durability, args.rounds, args.fires)
            for durability in args.profiles
        }
        report(profiles, measure_memory(directory, args.instances) if args.instances else None)


if __name__ == "__main__":
    main()
