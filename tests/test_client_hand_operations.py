"""
Operations a job adds to its request besides what the uploads emit, as DIRAC code adds them.

- DIRAC's ``FailoverTransfer._set*Request`` helpers, which workflow modules call (``UploadOutputData`` queues
  a replication to a second SE with ``_setFileReplicationRequest``): each adds its operation to the job's
  request, after what came before, once; bad input is refused as it is made (DIRAC finds it only at commit
  or execution), with nothing stored; and the executor carries them out.
- Operations added to the request object directly (``ft.request``, or the request the job passed in, which
  DIRAC code shares between workflow modules): the object is the same one throughout, kept in step with the
  store, and what is added to it is stored, checked, at the next call, never dropped.
"""

from __future__ import annotations

import doctest
import logging
import zlib
from pathlib import Path
from typing import Any

import pytest

from failover import hand_operations
from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.request import (
    File,
    Operation,
    OperationType,
    Request,
    request_from_dirac_json,
    request_to_dirac_json,
)
from failover.workspace import open_workspace

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"
POLICY = ExecutorPolicy(backoff_base=0, jitter=0)


def _summary(request: Request) -> list[tuple[str, list[str], str, list[str], list[str]]]:
    return [
        (str(op.type), op.target_se, op.source_se, op.catalog, [f.lfn for f in op.files]) for op in request
    ]


def _count(env: Environment, table: str) -> int:
    (count,) = env.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


def _operations(env: Environment) -> int:
    return _count(env, "operations")


def _replicas(env: Environment, lfn: str) -> list[str]:
    return sorted(replica.se for replica in env.catalogs.get(CATALOG).get_replicas(lfn))


def _meta(local: Path) -> dict[str, Any]:
    data = local.read_bytes()
    return {
        "Size": len(data),
        "Checksum": f"{zlib.adler32(data):08x}",
        "ChecksumType": "ADLER32",
        "GUID": GUID,
    }


def _uploaded(client: FailoverTransfer, local: Path) -> None:
    result = client.transferAndRegisterFile("out.root", str(local), LFN, "SE-A", {"GUID": GUID})
    assert result["OK"], result


def _execute(env: Environment) -> None:
    Executor(env, POLICY, name="hand").run_once()


def test_replication_is_queued_after_the_uploads_and_carried_out(
    client_env: Environment, output_file: Path
) -> None:
    client = FailoverTransfer(environment=client_env)
    _uploaded(client, output_file)

    result = client._setFileReplicationRequest(LFN, "SE-B", _meta(output_file), "SE-A")

    assert result == {"OK": True, "Value": None}
    assert _summary(client.getRequest()) == [("ReplicateAndRegister", ["SE-B"], "SE-A", [], [LFN])]
    replicate = client.getRequest().operations[0].files[0]
    assert (replicate.checksum, replicate.checksum_type, replicate.guid) == (
        _meta(output_file)["Checksum"],
        "ADLER32",
        GUID,
    )
    assert client.commitRequest()["OK"]
    _execute(client_env)
    assert client.getRequest().status == "Done"
    assert _replicas(client_env, LFN) == ["SE-A", "SE-B"]
    with client_env.se("SE-B").open_read(LFN) as stream:
        assert stream.read() == output_file.read_bytes()


def test_replica_and_file_removals_are_carried_out_in_order(
    client_env: Environment, output_file: Path
) -> None:
    client = FailoverTransfer(environment=client_env)
    _uploaded(client, output_file)
    assert client._setFileReplicationRequest(LFN, "SE-B", {})["OK"]
    assert client._setReplicaRemovalRequest(LFN, " SE-A ,")["OK"]
    assert client.commitRequest()["OK"]

    _execute(client_env)

    assert _replicas(client_env, LFN) == ["SE-B"]
    assert not client_env.se("SE-A").exists(LFN) and client_env.se("SE-B").exists(LFN)
    later = FailoverTransfer(environment=client_env)
    assert later._setFileRemovalRequest(LFN)["OK"]
    assert _summary(later.getRequest()) == [("RemoveFile", [], "", [], [LFN])]
    assert later.commitRequest()["OK"]
    _execute(client_env)
    assert client_env.catalogs.get(CATALOG).get_file(LFN) is None
    assert not client_env.se("SE-B").exists(LFN)
    assert output_file.exists()


def test_registration_of_a_replica_put_by_other_means(client_env: Environment, output_file: Path) -> None:
    client_env.se("SE-C").put(output_file, LFN)
    client = FailoverTransfer(environment=client_env)

    assert client._setRegistrationRequest(LFN, "SE-C", _meta(output_file), CATALOG)["OK"]

    (register,) = client.getRequest().operations
    assert (str(register.type), register.target_se, register.catalog) == ("RegisterFile", ["SE-C"], [CATALOG])
    assert register.files[0].pfn == client_env.se("SE-C").pfn(LFN)
    assert client.commitRequest()["OK"]
    _execute(client_env)
    entry = client_env.catalogs.get(CATALOG).get_file(LFN)
    assert entry is not None and (entry.guid, entry.size) == (GUID, output_file.stat().st_size)
    assert _replicas(client_env, LFN) == ["SE-C"]


def test_registration_in_every_catalog_when_none_is_named(client_env: Environment, output_file: Path) -> None:
    client = FailoverTransfer(environment=client_env)

    assert client._setRegistrationRequest(LFN, "SE-C", _meta(output_file), None)["OK"]

    assert _summary(client.getRequest()) == [("RegisterFile", ["SE-C"], "", [], [LFN])]


BAD_CALLS = [
    ("_setFileReplicationRequest", (LFN, "SE-Z", {}), "Storage element 'SE-Z' is not configured"),
    ("_setFileReplicationRequest", (LFN, "", {}), f"ReplicateAndRegister for {LFN} names no storage element"),
    ("_setFileReplicationRequest", ("vo/relative", "SE-B", {}), "LFN"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {"ChecksumType": "CRC32", "Checksum": "1"}), "CRC32"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {"Checksum": "xyz"}), "not a valid ADLER32 checksum"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {"GUID": "nope"}), "not 8-4-4-4-12"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {"GUID": 42}), "GUID 42 is not 8-4-4-4-12"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {"Size": -1}), "Size must be"),
    ("_setFileReplicationRequest", (LFN, "SE-B", {}, "SE-A,SE-C"), "one source SE"),
    ("_setRegistrationRequest", (LFN, "SE-C", {"GUID": GUID}, CATALOG), "needs the file's Checksum"),
    ("_setRegistrationRequest", (LFN, "SE-C", {"Checksum": "1"}, CATALOG), "needs the file's GUID"),
    ("_setRegistrationRequest", (LFN, "SE-C", {"Checksum": "1", "GUID": GUID}, "Nope"), "'Nope'"),
    ("_setRegistrationRequest", (LFN, "SE-B,SE-C", {"Checksum": "1", "GUID": GUID}, None), "at one SE"),
    ("_setReplicaRemovalRequest", (LFN, ""), f"RemoveReplica for {LFN} names no storage element"),
    ("_setFileRemovalRequest", (LFN, "SE-Z"), "'SE-Z'"),
    ("_setFileRemovalRequest", ("/vo/../etc",), "LFN"),
]


@pytest.mark.parametrize(
    ("method", "args", "message"), BAD_CALLS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_CALLS)]
)
def test_bad_input_is_refused_as_it_is_made_with_nothing_stored(
    client_env: Environment, method: str, args: tuple[Any, ...], message: str
) -> None:
    client = FailoverTransfer(environment=client_env)

    result = getattr(client, method)(*args)

    assert result["OK"] is False and message in result["Message"], result
    assert isinstance(result["Errno"], int)
    assert _operations(client_env) == 0
    assert client.commitRequest() == {"OK": True, "Value": None}


def test_the_same_operation_made_again_is_stored_once_even_by_a_restarted_job(
    tmp_path: Path, client_env: Environment
) -> None:
    first = FailoverTransfer(environment=client_env, client_key="job-7")
    assert first._setFileReplicationRequest(LFN, "SE-B", {})["OK"]
    assert first._setFileReplicationRequest(LFN, ["SE-B"], {})["OK"]
    assert first._setFileReplicationRequest(LFN, "SE-C", {})["OK"]
    client_env.store.close()
    env = open_workspace(tmp_path / "ws", ses=tuple(client_env.storage))

    again = FailoverTransfer(environment=env, client_key="job-7")
    assert again._setFileReplicationRequest(LFN, "SE-B", {})["OK"]
    assert again._setReplicaRemovalRequest(LFN, "SE-A")["OK"]

    assert _summary(again.getRequest()) == [
        ("ReplicateAndRegister", ["SE-B"], "", [], [LFN]),
        ("ReplicateAndRegister", ["SE-C"], "", [], [LFN]),
        ("RemoveReplica", ["SE-A"], "", [], [LFN]),
    ]
    env.store.close()


def _removal(lfn: str = "/vo/user/a/alice/old.root") -> Operation:
    return Operation(OperationType.RemoveFile, files=[File(lfn)])


def test_the_request_object_is_the_same_one_throughout_and_shows_every_operation(
    client_env: Environment, output_file: Path
) -> None:
    job_request = Request(name="job-42", owner="alice", owner_group="vo_user")
    client = FailoverTransfer(requestObject=job_request, environment=client_env)
    assert client.getRequest() is job_request and client.request is job_request

    result = client.transferAndRegisterFileFailover("out.root", str(output_file), LFN, "SE-B", "FAIL-1", {})

    assert result["OK"], result
    assert client.request is job_request
    assert _summary(job_request) == [
        ("ReplicateAndRegister", ["SE-B"], "FAIL-1", [CATALOG], [LFN]),
        ("RemoveReplica", ["FAIL-1"], "", [], [LFN]),
    ]
    assert all(op.operation_id is not None for op in job_request)


def test_an_operation_added_to_the_request_object_is_stored_in_order_and_committed(
    client_env: Environment, output_file: Path
) -> None:
    client = FailoverTransfer(environment=client_env)
    client.request.add_operation(_removal())
    _uploaded(client, output_file)
    client.request.operations.append(_removal("/vo/user/a/alice/older.root"))

    committed = client.commitRequest()

    assert committed["OK"] and committed["Value"] is not None
    stored = client_env.requests.load(committed["Value"])
    assert [f.lfn for op in stored for f in op.files] == [
        "/vo/user/a/alice/old.root",
        "/vo/user/a/alice/older.root",
    ]
    assert stored.status == "Waiting" and _summary(client.request) == _summary(stored)


def test_an_invalid_operation_added_to_the_request_object_stops_the_next_call_until_it_is_removed(
    client_env: Environment, output_file: Path
) -> None:
    client = FailoverTransfer(environment=client_env)
    bad = Operation(OperationType.ReplicateAndRegister, files=[File(LFN)])  # no TargetSE
    client.request.add_operation(bad)

    refused = client.transferAndRegisterFile("out.root", str(output_file), LFN, "SE-A", {})

    assert refused["OK"] is False
    assert (
        "An operation added to the request is not valid: ReplicateAndRegister of " + LFN in refused["Message"]
    )
    assert "TargetSE" in refused["Message"]
    assert _operations(client_env) == 0 and not client_env.se("SE-A").exists(LFN)
    assert client.commitRequest()["OK"] is False
    client.request.operations.remove(bad)
    _uploaded(client, output_file)
    assert client_env.se("SE-A").exists(LFN)


def test_a_passed_in_request_from_dirac_json_is_stored_though_its_operations_carry_dirac_ids(
    client_env: Environment,
) -> None:
    exported = Request(name="job-9", owner="alice", owner_group="vo_user", request_id=77)
    exported.add_operation(_removal())
    exported.operations[0].operation_id = 501
    from_dirac = request_from_dirac_json(request_to_dirac_json(exported))
    assert from_dirac.operations[0].operation_id == 501
    client = FailoverTransfer(requestObject=from_dirac, environment=client_env)

    committed = client.commitRequest()

    assert committed["OK"] and committed["Value"] is not None
    assert _summary(client_env.requests.load(committed["Value"])) == [
        ("RemoveFile", [], "", [], ["/vo/user/a/alice/old.root"])
    ]


def test_the_module_example_runs() -> None:
    assert doctest.testmod(hand_operations, raise_on_error=True).attempted > 0


def test_two_clients_given_one_request_object_add_to_one_stored_request(
    client_env: Environment, output_file: Path
) -> None:
    """DIRAC's workflow modules each make a FailoverTransfer of the job's one shared request object."""
    shared = Request(name="job-42", owner="alice", owner_group="vo_user")
    uploading = FailoverTransfer(requestObject=shared, environment=client_env)
    result = uploading.transferAndRegisterFileFailover(
        "out.root", str(output_file), LFN, "SE-B", "FAIL-1", {}
    )
    assert result["OK"], result
    assert uploading.request is shared

    finishing = FailoverTransfer(requestObject=shared, environment=client_env)
    assert finishing._setFileReplicationRequest(LFN, "SE-C", {})["OK"]
    committed = finishing.commitRequest()

    assert committed["OK"] and _count(client_env, "requests") == 1
    assert _summary(client_env.requests.load(committed["Value"])) == [
        ("ReplicateAndRegister", ["SE-B"], "FAIL-1", [CATALOG], [LFN]),
        ("RemoveReplica", ["FAIL-1"], "", [], [LFN]),
        ("ReplicateAndRegister", ["SE-C"], "", [], [LFN]),
    ]
    assert uploading.commitRequest() == committed


def test_a_job_restarted_after_its_commit_does_not_queue_its_removals_again(
    tmp_path: Path, client_env: Environment, output_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second RemoveFile, run after the job stored a new file under the name, would remove that file."""

    def job(env: Environment) -> FailoverTransfer:
        client = FailoverTransfer(environment=env, client_key="job-8")
        assert client._setFileRemovalRequest(LFN)["OK"]
        return client

    first = job(client_env)
    committed = first.commitRequest()["Value"]
    client_env.store.close()
    env = open_workspace(tmp_path / "ws", ses=tuple(client_env.storage))

    with caplog.at_level("WARNING", logger="failover"):
        again = job(env)

    assert again.commitRequest() == {"OK": True, "Value": committed}
    assert _count(env, "operations") == 1
    warnings = [r for r in caplog.records if r.name == "failover" and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"RemoveFile of {LFN} is in request {committed} already: not added again"
    ]
    env.store.close()


def test_a_job_restarted_after_its_commit_with_its_request_object_commits_the_same_request(
    tmp_path: Path, client_env: Environment
) -> None:
    def job_request() -> Request:
        request = Request(name="job-1", owner="alice", owner_group="vo_user")
        request.add_operation(_removal())
        return request

    committed = FailoverTransfer(job_request(), environment=client_env, client_key="job-1").commitRequest()
    client_env.store.close()
    env = open_workspace(tmp_path / "ws", ses=tuple(client_env.storage))

    again = FailoverTransfer(job_request(), environment=env, client_key="job-1").commitRequest()

    assert committed["OK"] and again == committed
    assert _count(env, "requests") == 1 and _count(env, "operations") == 1
    env.store.close()
