"""
Concurrent writers in real processes on one database file.

Workers are started with ``spawn``, so each one opens its own connection as a separate program would.
They meet at a ``multiprocessing.Barrier`` before firing, so their transactions overlap.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest
from machines.counter import COUNTER, new_counter_data

from fsm import Engine, verify_replay
from persistence import ConcurrentUpdate, Store, open_store
from persistence.journal import read_journal

SPAWN = multiprocessing.get_context("spawn")
#: Upper bound on any wait for the other processes; only reached when a worker died.
WAIT_S = 60.0
DUEL_ROUNDS = 20


def _duelist(path: str, machine_id: str, barrier: Barrier, outcomes: SimpleQueue[Any]) -> None:
    """Each round: read the version, wait for the other duelist, fire on that version."""
    with open_store(path) as store:
        engine = Engine(COUNTER, store)
        for _ in range(DUEL_ROUNDS):
            version = engine.load(machine_id).version
            barrier.wait()
            try:
                engine.fire(machine_id, "bump", expected_version=version)
                outcomes.put((version, "committed"))
            except ConcurrentUpdate:
                outcomes.put((version, "conflict"))
            barrier.wait()


def test_two_processes_firing_on_one_instance_one_commits_the_other_conflicts(store: Store) -> None:
    """Each round one commits; the other gets ConcurrentUpdate and nothing of its transition is stored."""
    engine = Engine(COUNTER, store)
    engine.create("m1", new_counter_data())
    engine.fire("m1", "start")
    barrier, outcomes = SPAWN.Barrier(2, timeout=WAIT_S), SPAWN.SimpleQueue()

    _run([(_duelist, (store.path, "m1", barrier, outcomes)) for _ in range(2)])

    results = sorted(_drain(outcomes))
    expected = [
        (version, outcome) for version in range(1, DUEL_ROUNDS + 1) for outcome in ("committed", "conflict")
    ]
    assert results == expected
    row, journal = engine.load("m1"), read_journal(store.conn, "m1")
    assert (row.version, row.data["count"], len(journal)) == (DUEL_ROUNDS + 1, DUEL_ROUNDS, DUEL_ROUNDS + 2)
    assert store.conn.execute("SELECT COUNT(*) FROM emitted WHERE kind = 'tick'").fetchone() == (DUEL_ROUNDS,)
    verify_replay(COUNTER, row, journal)


WORKERS, INSTANCES_EACH, BUMPS_EACH = 4, 5, 20


def _busy_worker(path: str, worker: int, barrier: Barrier, errors: SimpleQueue[Any]) -> None:
    """Create this worker's instances and fire on them, reporting any error instead of dying silently."""
    try:
        with open_store(path) as store:
            engine = Engine(COUNTER, store)
            ids = [f"w{worker}-{n}" for n in range(INSTANCES_EACH)]
            barrier.wait()
            for machine_id in ids:
                engine.create(machine_id, new_counter_data())
                engine.fire(machine_id, "start")
            for _ in range(BUMPS_EACH):
                for machine_id in ids:
                    engine.fire(machine_id, "bump")
    except Exception as exc:
        errors.put(f"worker {worker}: {exc!r}")


def test_many_processes_firing_on_their_own_instances_all_commit(store: Store) -> None:
    """Writers wait for each other (BEGIN IMMEDIATE + busy timeout): no "database is locked", nothing lost."""
    barrier, errors = SPAWN.Barrier(WORKERS, timeout=WAIT_S), SPAWN.SimpleQueue()

    _run([(_busy_worker, (store.path, worker, barrier, errors)) for worker in range(WORKERS)])

    assert _drain(errors) == []
    engine = Engine(COUNTER, store)
    ids = [machine_id for (machine_id,) in store.conn.execute("SELECT id FROM machines")]
    assert len(ids) == WORKERS * INSTANCES_EACH
    for machine_id in ids:
        row, journal = engine.load(machine_id), read_journal(store.conn, machine_id)
        assert (row.version, row.data["count"]) == (1 + BUMPS_EACH, BUMPS_EACH)
        verify_replay(COUNTER, row, journal)
    assert store.integrity_check() == []


def _drain(queue: SimpleQueue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        items.append(queue.get())
    return items


def _run(workers: list[tuple[Any, tuple[Any, ...]]]) -> None:
    """
    Start the processes together and wait for all of them to exit cleanly.

    Results travel on ``SimpleQueue``s, which write straight to their pipe: a finished worker has
    nothing left to flush, so joining before reading cannot deadlock.
    """
    processes = [SPAWN.Process(target=target, args=args) for target, args in workers]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=WAIT_S)
    for process in processes:
        if process.is_alive():
            process.kill()
            pytest.fail("a worker process hung")
    assert [process.exitcode for process in processes] == [0] * len(processes)
