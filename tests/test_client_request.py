"""
SPEC.md §4 through ``FailoverTransfer``: the request it accumulates, how it is committed (once), that its
operations are durable before the commit, its DIRAC JSON form, and that ``{"OK": ...}`` stays at the edge.
"""

from __future__ import annotations

import ast
import dataclasses
import getpass
import grp
import json
import logging
import pwd
from pathlib import Path
from typing import Any

import pytest

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.errors import InvalidRequest
from failover.request import (
    File,
    Operation,
    OperationType,
    Request,
    request_from_dirac_json,
    request_to_dirac_json,
)
from failover.testing import Fault, FaultInjector
from failover.workspace import open_workspace
from persistence.requests import RequestHeader

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("failover", "fsm", "states", "persistence")


def _login() -> tuple[str, str]:
    user = getpass.getuser()
    return user, grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def _count(env: Environment, table: str) -> int:
    (count,) = env.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


def _deferred_upload(client: FailoverTransfer, local: Path, lfn: str = LFN) -> dict[str, Any]:
    return client.transferAndRegisterFile("out.root", str(local), lfn, "SE-A", {"GUID": None})


def _failover_upload(client: FailoverTransfer, local: Path, lfn: str = LFN) -> dict[str, Any]:
    return client.transferAndRegisterFileFailover("out.root", str(local), lfn, "SE-B", "FAIL-1", {})


def _summary(request: Request) -> list[tuple[str, list[str]]]:
    return [(str(op.type), [f.lfn for f in op.files]) for op in request]


@pytest.fixture
def catalog_down(client_env: Environment, injector: FaultInjector) -> Environment:
    """The workspace with its catalog down for good, so every upload queues a RegisterFile."""
    injector.inject(CATALOG, Fault.CATALOG_UNAVAILABLE, times=None)
    return client_env


OWNERS = [
    ("", "", _login()),
    ("alice", "vo_user", ("alice", "vo_user")),
    ("alice", "", ("alice", _login()[1])),
    ("", "vo_user", (_login()[0], "vo_user")),
]
OWNER_IDS = ["login", "configured", "owner-only", "group-only"]


@pytest.mark.parametrize(("owner", "group", "expected"), OWNERS, ids=OWNER_IDS)
def test_new_client_makes_a_noname_request_with_the_configured_or_login_owner(
    client_env: Environment, owner: str, group: str, expected: tuple[str, str]
) -> None:
    """Owner and OwnerGroup come from the configuration; what it leaves empty comes from the login."""
    env = dataclasses.replace(client_env, owner=owner, owner_group=group)
    request = FailoverTransfer(environment=env).getRequest()
    assert (request.name, request.source_component) == ("noname_request", "FailoverTransfer")
    assert (request.owner, request.owner_group) == expected
    assert request.is_empty


@pytest.mark.parametrize(("owner", "group", "expected"), OWNERS, ids=OWNER_IDS)
def test_stored_request_has_the_configured_or_login_owner(
    catalog_down: Environment, output_file: Path, owner: str, group: str, expected: tuple[str, str]
) -> None:
    client = FailoverTransfer(environment=dataclasses.replace(catalog_down, owner=owner, owner_group=group))
    assert _deferred_upload(client, output_file)["OK"]
    request = client.getRequest()
    assert (request.name, request.source_component) == ("noname_request", "FailoverTransfer")
    assert (request.owner, request.owner_group) == expected
    ((stored,),) = catalog_down.store.conn.execute("SELECT owner || '/' || owner_group FROM requests")
    assert stored == "/".join(expected)


def test_log_is_a_logger_defaulting_to_the_package_logger(client_env: Environment) -> None:
    default = FailoverTransfer(environment=client_env).log
    assert isinstance(default, logging.Logger) and default.name == "failover"
    mine = logging.getLogger("my.job")
    assert FailoverTransfer(log=mine, environment=client_env).log is mine


def test_operations_accumulate_in_call_order_after_the_passed_in_request(
    catalog_down: Environment, output_file: Path
) -> None:
    base = Request(name="job-42", owner="alice", owner_group="vo_user", source_component="Job")
    base.add_operation(Operation(OperationType.RemoveFile, files=[File("/vo/user/a/alice/old.root")]))
    client = FailoverTransfer(requestObject=base, environment=catalog_down)
    first, second = "/vo/user/a/alice/run42/one.root", "/vo/user/a/alice/run42/two.root"
    assert _deferred_upload(client, output_file, first)["OK"]
    assert _failover_upload(client, output_file, second)["OK"]
    request = client.getRequest()
    assert (request.name, request.owner, request.owner_group) == ("job-42", "alice", "vo_user")
    assert _summary(request) == [
        ("RemoveFile", ["/vo/user/a/alice/old.root"]),
        ("RegisterFile", [first]),
        ("RegisterFile", [second]),
        ("ReplicateAndRegister", [second]),
        ("RemoveReplica", [second]),
    ]
    assert [op.order for op in request] == [0, 1, 2, 3, 4]


def test_passed_in_request_is_returned_before_any_call(client_env: Environment) -> None:
    base = Request(name="job-7", owner="alice", owner_group="vo_user")
    base.add_operation(Operation(OperationType.RemoveFile, files=[File("/vo/a")]))
    request = FailoverTransfer(requestObject=base, environment=client_env).getRequest()
    assert (request.name, _summary(request)) == ("job-7", [("RemoveFile", ["/vo/a"])])


@pytest.mark.parametrize("call", ["none", "fully-registered", "total-failure"])
def test_commit_of_an_empty_request_returns_none_and_stores_nothing(
    client_env: Environment, injector: FaultInjector, output_file: Path, call: str
) -> None:
    client = FailoverTransfer(environment=client_env)
    if call == "fully-registered":
        assert _deferred_upload(client, output_file)["Value"] == {"uploadedSE": "SE-A", "lfn": LFN}
    elif call == "total-failure":
        injector.inject("SE-A", Fault.PUT_ERROR)
        assert _deferred_upload(client, output_file)["OK"] is False
    assert client.commitRequest() == {"OK": True, "Value": None}
    assert _count(client_env, "requests") == 0
    assert _count(client_env, "operations") == 0


def _committed(env: Environment) -> list[tuple[int, str | None]]:
    return list(env.store.conn.execute("SELECT id, committed_at FROM requests"))


def test_commit_returns_the_request_id(catalog_down: Environment, output_file: Path) -> None:
    client = FailoverTransfer(environment=catalog_down)
    assert _deferred_upload(client, output_file)["OK"]
    assert _committed(catalog_down) == [(client.getRequest().request_id, None)]
    result = client.commitRequest()
    ((request_id, committed_at),) = _committed(catalog_down)
    assert result == {"OK": True, "Value": request_id}
    assert committed_at is not None


def test_fix_committing_again_returns_the_same_id_and_stores_nothing_new(
    catalog_down: Environment, output_file: Path
) -> None:
    client = FailoverTransfer(environment=catalog_down)
    assert _failover_upload(client, output_file)["OK"]
    first = client.commitRequest()
    rows = {table: _count(catalog_down, table) for table in ("requests", "operations", "files")}
    committed = _committed(catalog_down)
    assert client.commitRequest() == first
    assert client.commitRequest() == first
    assert (
        {table: _count(catalog_down, table) for table in rows}
        == rows
        == {
            "requests": 1,
            "operations": 3,
            "files": 3,
        }
    )
    assert _committed(catalog_down) == committed


def test_invalid_request_is_not_committed(client_env: Environment) -> None:
    """A passed-in ReplicateAndRegister without TargetSE makes the request invalid."""
    base = Request(name="job-7", owner="alice", owner_group="vo_user")
    base.add_operation(Operation(OperationType.ReplicateAndRegister, files=[File("/vo/a")]))
    client = FailoverTransfer(requestObject=base, environment=client_env)
    result = client.commitRequest()
    assert result["OK"] is False
    assert result["Message"].startswith("Failover request is not valid: ")
    assert "TargetSE" in result["Message"]
    assert [committed_at for _, committed_at in _committed(client_env)] in ([], [None])


def test_an_operation_added_while_a_commit_starts_is_validated_with_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Another client adds an invalid operation to the draft just before the commit's transaction: the
    commit validates what it commits, so it refuses, and the request stays a draft.
    """
    env, other = open_workspace(tmp_path / "ws"), open_workspace(tmp_path / "ws")
    request_id = env.requests.ensure(RequestHeader("job-7", "job-7", "alice", "vo_user"))
    valid = Operation(OperationType.RemoveFile, files=[File("/vo/a")])
    env.requests.add_operations(request_id, [valid])
    invalid = Operation(OperationType.ReplicateAndRegister, files=[File("/vo/b")])  # no TargetSE
    begin = env.store.transaction

    def added_first(*args: Any, **kwargs: Any) -> Any:
        other.requests.add_operations(request_id, [invalid])  # commits in its own connection
        return begin(*args, **kwargs)

    monkeypatch.setattr(env.store, "transaction", added_first)
    with pytest.raises(InvalidRequest, match="TargetSE"):
        env.requests.commit(request_id)
    monkeypatch.undo()
    assert env.requests.find("job-7").committed_at is None  # type: ignore[union-attr]
    env.close()
    other.close()


def test_fix_operations_are_durable_before_commit(
    tmp_path: Path, catalog_down: Environment, output_file: Path
) -> None:
    """A new client with the same key on the same database finds the operations of a discarded one."""
    first = FailoverTransfer(environment=catalog_down, client_key="job-42")
    assert _failover_upload(first, output_file)["OK"]
    expected = _summary(first.getRequest())
    del first
    catalog_down.store.close()
    env = open_workspace(tmp_path / "ws", ses=tuple(catalog_down.storage))
    resumed = FailoverTransfer(environment=env, client_key="job-42")
    assert (
        _summary(resumed.getRequest())
        == expected
        == [
            ("RegisterFile", [LFN]),
            ("ReplicateAndRegister", [LFN]),
            ("RemoveReplica", [LFN]),
        ]
    )
    result = resumed.commitRequest()
    ((request_id, committed_at),) = _committed(env)
    assert result == {"OK": True, "Value": request_id}
    assert committed_at is not None
    env.store.close()


def test_resuming_with_the_same_passed_in_request_does_not_duplicate_its_operations(
    tmp_path: Path, catalog_down: Environment, output_file: Path
) -> None:
    """A job that restarts hands its request object in again: its operations are stored once."""

    def job_request() -> Request:
        base = Request(name="job-42", owner="alice", owner_group="vo_user")
        base.add_operation(Operation(OperationType.RemoveFile, files=[File("/vo/user/a/alice/old.root")]))
        return base

    first = FailoverTransfer(requestObject=job_request(), environment=catalog_down, client_key="job-42")
    assert _deferred_upload(first, output_file)["OK"]
    catalog_down.store.close()
    env = open_workspace(tmp_path / "ws", ses=tuple(catalog_down.storage))
    resumed = FailoverTransfer(requestObject=job_request(), environment=env, client_key="job-42")
    assert resumed.commitRequest()["OK"] is True
    assert _summary(resumed.getRequest()) == [
        ("RemoveFile", ["/vo/user/a/alice/old.root"]),
        ("RegisterFile", [LFN]),
    ]
    env.store.close()


def _file_fields(request: Request) -> list[list[tuple[Any, ...]]]:
    return [
        [(f.lfn, f.pfn, f.checksum, f.checksum_type, f.size, f.guid, str(f.status)) for f in op.files]
        for op in request
    ]


def _operation_fields(request: Request) -> list[tuple[Any, ...]]:
    return [
        (str(op.type), op.target_se, op.source_se, op.catalog, str(op.status), op.order) for op in request
    ]


def test_request_round_trips_through_dirac_json(catalog_down: Environment, output_file: Path) -> None:
    client = FailoverTransfer(environment=catalog_down)
    assert _failover_upload(client, output_file)["OK"]
    assert _deferred_upload(client, output_file, "/vo/user/a/alice/run42/two.root")["OK"]
    request = client.getRequest()
    back = request_from_dirac_json(json.dumps(request_to_dirac_json(request)))
    header = ("name", "owner", "owner_group", "source_component", "job_id", "status")
    assert {name: getattr(back, name) for name in header} == {name: getattr(request, name) for name in header}
    assert len(back) == len(request) == 4
    assert _operation_fields(back) == _operation_fields(request)
    assert _file_fields(back) == _file_fields(request)
    assert all(f.guid and f.checksum for op in back for f in op.files if op.type != "RemoveReplica")


def _ok_keys(tree: ast.AST) -> list[int]:
    """Lines where ``"OK"`` is a dict key: a literal key, a ``dict(OK=...)`` keyword, or ``x["OK"]``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [key for key in node.keys if isinstance(key, ast.Constant) and key.value == "OK"]
            lines += [key.lineno for key in keys]
        elif isinstance(node, ast.Call):
            lines += [kw.value.lineno for kw in node.keywords if kw.arg == "OK"]
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            lines += [node.lineno] if node.slice.value == "OK" else []
    return lines


def test_ok_is_a_dict_key_only_in_the_dirac_module() -> None:
    """STYLE rule 7: DIRAC's result dicts exist only at the DIRAC-compatible edge."""
    edge = ROOT / "failover" / "dirac.py"
    found = {
        str(path.relative_to(ROOT)): lines
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != edge and (lines := _ok_keys(ast.parse(path.read_text(), str(path))))
    }
    assert found == {}
    assert _ok_keys(ast.parse(edge.read_text()))
