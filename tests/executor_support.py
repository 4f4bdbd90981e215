"""
Helpers for the tests of several executors on one database (not a test module): a workspace of committed
failover uploads, and a log, written by SQLite triggers inside the executors' own transactions, of every
change of a request's status or lease and of the lease owner at every file update.
"""

from __future__ import annotations

from pathlib import Path

from failover.dirac import FailoverTransfer
from failover.environment import Environment
from failover.workspace import open_workspace
from persistence.db import Durability

#: The storage elements of these workspaces: the target, and where the files fail over to.
SES = ("SE-A", "FAIL-1")

LEASE_LOG = """
CREATE TABLE test_lease_log (
    seq INTEGER PRIMARY KEY, request_id INTEGER, old_status TEXT, new_status TEXT,
    old_owner TEXT, new_owner TEXT, old_expires TEXT, new_expires TEXT
);
CREATE TRIGGER test_log_request AFTER UPDATE ON requests BEGIN
    INSERT INTO test_lease_log (request_id, old_status, new_status, old_owner, new_owner, old_expires,
        new_expires)
    VALUES (NEW.id, OLD.status, NEW.status, OLD.lease_owner, NEW.lease_owner, OLD.lease_expires,
        NEW.lease_expires);
END;
CREATE TABLE test_file_log (seq INTEGER PRIMARY KEY, request_id INTEGER, file_id INTEGER, owner TEXT);
CREATE TRIGGER test_log_file AFTER UPDATE ON files BEGIN
    INSERT INTO test_file_log (request_id, file_id, owner)
    SELECT r.id, NEW.id, r.lease_owner FROM operations o JOIN requests r ON r.id = o.request_id
    WHERE o.id = NEW.operation_id;
END;
"""


def job_lfn(n: int) -> str:
    """The LFN job ``n`` uploads."""
    return f"/vo/prod/run7/job{n:03d}/out.root"


def job_content(n: int) -> bytes:
    """The bytes job ``n`` uploads."""
    return f"job {n} output\n".encode() * 50


def failed_over_workspace(home: Path, jobs: Path, uploads: int) -> Environment:
    """
    A workspace at ``home`` with ``uploads`` committed failover uploads (one job, so one request, each;
    the local files written under ``jobs``) and the lease log installed.
    """
    env = open_workspace(home, ses=SES, durability=Durability.NORMAL)
    jobs.mkdir()
    for n in range(uploads):
        path = jobs / f"out{n}.root"
        path.write_bytes(job_content(n))
        client = FailoverTransfer(environment=env)
        result = client.transferAndRegisterFileFailover(path.name, str(path), job_lfn(n), *SES, {})
        assert result["OK"] and result["Value"]["uploadedSE"] == SES[1], result
        assert client.commitRequest()["OK"]
    env.store.conn.executescript(LEASE_LOG)
    return env


def lease_takers(env: Environment) -> dict[int, str]:
    """
    Check the lease log: every request taken once, when nobody held it, kept by its taker and released by
    it as Done; return each request's taker.
    """
    takers: dict[int, str] = {}
    rows = env.store.conn.execute(
        "SELECT request_id, old_status, new_status, old_owner, new_owner FROM test_lease_log ORDER BY seq"
    )
    for request_id, old_status, new_status, old_owner, new_owner in rows:
        if new_status == "Assigned" and old_status != "Assigned":
            assert old_owner is None, f"request {request_id} taken from {old_owner}"
            assert request_id not in takers, f"request {request_id} taken twice"
            takers[request_id] = new_owner
        elif old_status == "Assigned" and new_status != "Assigned":
            assert (old_owner, new_owner, new_status) == (takers[request_id], None, "Done")
        else:
            assert (old_status, new_status) == ("Assigned", "Assigned"), (request_id, old_status, new_status)
            assert old_owner == new_owner == takers[request_id], f"request {request_id} changed hands"
    return takers
