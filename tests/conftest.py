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


@pytest.fixture
def failed_over(client_env: object, tmp_path: Path) -> object:
    """
    Factory ``failed_over(*lfns, target="SE-A", failover="FAIL-1") -> request id``: one job's files
    uploaded through the DIRAC client to a failover SE and the request committed. This is the state the
    request executor starts from (SPEC.md §3, §5). Each LFN gets its own content, so checksums differ.
    """
    from failover.dirac import FailoverTransfer

    def make(*lfns: str, target: str = "SE-A", failover: str = "FAIL-1") -> int:
        client = FailoverTransfer(environment=client_env)  # type: ignore[arg-type]
        for lfn in lfns:
            local = tmp_path / "job" / lfn.strip("/").replace("/", "_")
            local.parent.mkdir(exist_ok=True)
            local.write_bytes(f"output of {lfn}\n".encode() * 64)
            result = client.transferAndRegisterFileFailover(local.name, str(local), lfn, target, failover, {})
            assert result["OK"], result
        committed = client.commitRequest()
        assert committed["OK"] and committed["Value"], committed
        return int(committed["Value"])

    return make


@pytest.fixture
def submit(client_env: object) -> object:
    """
    Factory ``submit(*operations, env=client_env) -> request id``: a hand-built request stored and
    committed, for the operations a DIRAC installation may hand over but the client never emits
    (RemoveFile, RegisterReplica) and for states the client cannot reach.
    """
    import uuid

    from persistence.requests import RequestHeader

    def make(*operations: object, env: object = None) -> int:
        requests = (env or client_env).requests  # type: ignore[attr-defined]
        request_id = int(requests.ensure(RequestHeader(uuid.uuid4().hex, owner="alice", owner_group="vo")))
        requests.add_operations(request_id, list(operations))
        requests.commit(request_id)
        return request_id

    return make
