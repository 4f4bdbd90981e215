"""Shared pytest fixtures. Each one says why it exists; keep them small."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from machines.counter import COUNTER, new_counter_data

from fsm import Engine
from persistence import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated database in a real file, so WAL, locking and ``synchronous`` behave as in production."""
    with open_store(tmp_path / "failover.db") as opened:
        yield opened


@pytest.fixture
def counter_engine(store: Store) -> Engine:
    """An engine of the small counter machine (``tests/machines/counter.py``) on the ``store`` database."""
    return Engine(COUNTER, store)


@pytest.fixture
def counter_history(store: Store) -> Store:
    """
    A counter instance ``m1`` with six committed transitions (version 6), for tests that tamper with
    or replay a known journal.
    """
    engine = Engine(COUNTER, store)
    engine.create("m1", new_counter_data(limit=10))
    for trigger, step in [("start", 0), ("bump", 2), ("burst", 0), ("pause", 0), ("resume", 0), ("bump", 1)]:
        engine.fire("m1", trigger, {"step": step} if step else {})
    return store


#: Storage elements of the client test environments: three destinations and two failover SEs.
CLIENT_SES = ("SE-A", "SE-B", "SE-C", "FAIL-1", "FAIL-2")


@pytest.fixture
def output_file(tmp_path: Path) -> Path:
    """A small grid-job output file outside every SE, so tests can check that it is never modified."""
    path = tmp_path / "job" / "out.root"
    path.parent.mkdir()
    path.write_bytes(b"grid job output: run 42\n" * 8)
    return path


@pytest.fixture
def injector() -> object:
    """A fresh ``FaultInjector``: tests script SE and catalog faults on it and count the calls it saw."""
    from failover.testing import FaultInjector

    return FaultInjector()


@pytest.fixture
def client_env(tmp_path: Path, injector: object) -> Iterator[object]:
    """
    The embedded workspace (one master catalog ``LocalCatalog``) with ``CLIENT_SES``, wrapped by
    ``injector``: the environment a DIRAC-compatible client runs in, with faults scriptable per SE.
    """
    from failover.workspace import open_workspace

    env = open_workspace(tmp_path / "ws", ses=CLIENT_SES)
    yield injector.wrap(env)  # type: ignore[attr-defined]
    env.store.close()


@pytest.fixture
def two_catalog_env(tmp_path: Path, injector: object) -> Iterator[object]:
    """
    An environment with two catalogs, master ``A`` then plain ``B``, and ``CLIENT_SES``, wrapped by
    ``injector``: catalog selection and per-catalog registration need more than the workspace's one.
    """
    from failover.catalog import CatalogSet, SQLiteCatalog
    from failover.environment import Environment
    from failover.storage import StorageElement
    from persistence import open_store

    storage = {name: StorageElement(name, (tmp_path / "se" / name).as_uri()) for name in CLIENT_SES}
    catalogs = CatalogSet(
        [SQLiteCatalog("A", tmp_path / "a.db", master=True), SQLiteCatalog("B", tmp_path / "b.db")]
    )
    env = Environment(store=open_store(tmp_path / "failover.db"), storage=storage, catalogs=catalogs)
    yield injector.wrap(env)  # type: ignore[attr-defined]
    env.store.close()
