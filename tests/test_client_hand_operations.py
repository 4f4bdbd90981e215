"""
DIRAC's ``FailoverTransfer._set*Request`` helpers, which workflow modules call to add operations of their own
(``UploadOutputData`` queues a replication to a second SE with ``_setFileReplicationRequest``): each adds
its operation to the job's request, after what came before, once; bad input is refused as it is made
(DIRAC finds it only at commit or execution), with nothing stored; and the executor carries them out.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.executor import Executor, ExecutorPolicy
from failover.request import Request
from failover.workspace import open_workspace

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
CATALOG = "LocalCatalog"
POLICY = ExecutorPolicy(backoff_base=0, jitter=0)


def _summary(request: Request) -> list[tuple[str, list[str], str, list[str], list[str]]]:
    return [
        (str(op.type), op.target_se, op.source_se, op.catalog, [f.lfn for f in op.files]) for op in request
    ]


def _operations(env: Environment) -> int:
    (count,) = env.store.conn.execute("SELECT count(*) FROM operations").fetchone()
    return int(count)


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
