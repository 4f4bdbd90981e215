"""
TOML configuration: a full example builds a working environment; every bad entry is a ConfigError naming
the file, the key path and what is wrong.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from failover import upload
from failover.config import Config, ConfigError, load_config
from failover.errors import InvalidInput, StorageUnavailable, error_from_record
from failover.executor import Executor, ExecutorPolicy
from failover.request import RequestStatus
from persistence import filesystems
from persistence.db import Durability
from persistence.errors import NetworkFilesystem
from persistence.requests import RequestHeader

README = Path(__file__).resolve().parent.parent / "README.md"

#: Every key a configuration may have (README.md shows the same file, checked below).
EXAMPLE = """\
database = "state/failover.db"
durability = "NORMAL"
owner = "alice"
owner_group = "vo_user"

[storage.SE-A]
url = "file:///tmp/ignored"
create_root = true

[storage.FAILOVER-1]
url = "failover-1"
options = { auto_mkdir = true }

[catalogs.Main]
kind = "sqlite"
path = "catalog.db"
master = true

[catalogs.Mirror]
kind = "sqlite"

[upload]
destinations = ["SE-A"]
failovers = "FAILOVER-1"
catalogs = ["Main"]
master_only = true
retry_delays = [1, 2.5]

[executor]
max_attempts = 3
backoff_base = 1
backoff_factor = 3
backoff_cap = 30
jitter = 0
lease_seconds = 60
batch_size = 8
round_bytes = 1048576
poll_interval = 0.5
"""


def _write(directory: Path, text: str) -> Path:
    path = directory / "failover.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _readme_example() -> str:
    match = re.search(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert match is not None, "README.md has no ```toml block"
    return match.group(1)


def test_the_full_example_is_read_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EXAMPLE))
    assert config.database == tmp_path / "state" / "failover.db"
    assert config.durability is Durability.NORMAL
    assert [(se.name, se.url) for se in config.storage] == [
        ("SE-A", "file:///tmp/ignored"),
        ("FAILOVER-1", f"file://{tmp_path}/failover-1"),
    ]
    assert config.storage[1].options == {"auto_mkdir": True}
    assert [se.create_root for se in config.storage] == [True, False]
    assert [(c.name, c.path, c.master) for c in config.catalogs] == [
        ("Main", tmp_path / "catalog.db", True),
        ("Mirror", tmp_path / "catalog-Mirror.db", False),
    ]
    assert (config.upload.destinations, config.upload.failovers) == (("SE-A",), ("FAILOVER-1",))
    assert (config.upload.catalogs, config.upload.master_only) == (("Main",), True)
    assert config.put_retry.delays == (1.0, 2.5)
    assert config.executor == ExecutorPolicy(3, 1.0, 3.0, 30.0, 0.0, 60.0, batch_size=8, round_bytes=1 << 20)
    assert config.poll_interval == 0.5
    assert (config.owner, config.owner_group) == ("alice", "vo_user")


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _readme_example()))
    assert config.storage and config.catalogs


def test_an_opened_configuration_uploads(tmp_path: Path) -> None:
    """The environment a configuration opens has its SEs, catalogs, owner and retry policy."""
    config = load_config(_write(tmp_path, EXAMPLE.replace("file:///tmp/ignored", "se-a")))
    env = config.open()
    try:
        assert list(env.storage) == ["SE-A", "FAILOVER-1"]
        assert [(c.name, c.master) for c in env.catalogs] == [("Main", True), ("Mirror", False)]
        assert env.request_owner == ("alice", "vo_user")
        assert env.put_retry.delays == (1.0, 2.5)
        local = tmp_path / "out.root"
        local.write_bytes(b"data" * 10)
        result = upload(env, local, "/vo/out.root", destinations="SE-A", request=RequestHeader("k"))
        assert (result.se, result.registered) == ("SE-A", ("Main", "Mirror"))
        assert (tmp_path / "se-a" / "vo" / "out.root").is_file()
    finally:
        env.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed: the database and each catalog's connection
        env.store.conn.execute("SELECT 1")
    assert all(catalog._store is None for catalog in env.catalogs)  # type: ignore[attr-defined]
    assert env.catalogs.get("Main").get_file("/vo/out.root") is not None  # a catalog opens again on use
    env.close()  # closing twice is harmless


NOT_MOUNTED = [
    pytest.param("", r"its root .*/mnt/se-a does not exist \(is its storage mounted\?\)", id="missing-root"),
    pytest.param(
        'mount = "mnt/se-a"\ncreate_root = true\n',
        r"SE-A: .*/mnt/se-a, its configured mount, is not mounted",
        id="mount-point",
    ),
]


@pytest.mark.parametrize(("se_keys", "refusal"), NOT_MOUNTED)
def test_an_se_whose_storage_is_not_mounted_is_unavailable_and_nothing_lands_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, se_keys: str, refusal: str
) -> None:
    """
    An SE whose storage is not mounted, seen two ways: its root is missing (``create_root = false``, the
    default: it is not created on the local disk, where the file would be registered and lost with the
    node), or its root is the mount point, there but empty (``mount``: the file would land on the disk
    beneath and be hidden by the next mount). The upload fails over, nothing lands in the SE's place, and
    once the storage is mounted the SE is used again.
    """
    mount = tmp_path / "mnt" / "se-a"
    if "mount" in se_keys:
        mount.mkdir(parents=True)
    text = (
        f'[storage.SE-A]\nurl = "mnt/se-a"\n{se_keys}[storage.FAIL]\nurl = "fail"\ncreate_root = true\n'
        "[catalogs.Main]\nmaster = true\n"
    )
    config = load_config(_write(tmp_path, text))
    assert config.storage[0].mount == (str(mount) if "mount" in se_keys else None)
    env = config.open()
    try:
        local = tmp_path / "out.root"
        local.write_bytes(b"data" * 10)
        options: dict[str, Any] = {"destinations": "SE-A", "failovers": "FAIL", "request": RequestHeader("k")}
        result = upload(env, local, "/vo/out.root", **options)
        assert (result.se, result.state) == ("FAIL", "FailedOver")
        assert list((tmp_path / "mnt").rglob("*")) == ([mount] if "mount" in se_keys else [])
        with pytest.raises(StorageUnavailable, match=refusal):
            env.se("SE-A").stat("/vo/out.root")
        mount.mkdir(parents=True, exist_ok=True)  # the storage is mounted
        real = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda path: os.fspath(path) == str(mount) or real(path))
        assert upload(env, local, "/vo/again.root", **options).se == "SE-A"
        assert (mount / "vo" / "again.root").is_file()
    finally:
        env.close()


def test_a_failover_se_not_mounted_is_waited_for_its_replica_is_not_taken_for_gone(tmp_path: Path) -> None:
    """
    The executor meets the failover SE unmounted: the replication is retried, nothing is Failed or
    removed; once the storage is back, the file is replicated and the temporary replica removed.
    """
    text = '[storage.SE-A]\nurl = "se-a"\n[storage.FAIL]\nurl = "fail"\n[catalogs.Main]\nmaster = true\n'
    (tmp_path / "fail").mkdir()
    env = load_config(_write(tmp_path, text)).open()
    try:
        local = tmp_path / "out.root"
        local.write_bytes(b"data" * 10)
        header = RequestHeader("k", owner="alice", owner_group="vo_user")
        result = upload(env, local, "/vo/out.root", destinations="SE-A", failovers="FAIL", request=header)
        assert (result.se, result.state) == ("FAIL", "FailedOver")  # SE-A was not mounted
        request = env.requests.find(header.client_key)
        assert request is not None
        env.requests.commit(request.id)
        (tmp_path / "se-a").mkdir()
        (tmp_path / "fail").rename(tmp_path / "fail.unmounted")
        executor = Executor(env, ExecutorPolicy(backoff_base=0, jitter=0), name="t")
        executor.run_once()
        assert env.requests.load(request.id).status is RequestStatus.Waiting
        (tmp_path / "fail.unmounted").rename(tmp_path / "fail")
        executor.run_once()
        assert env.requests.load(request.id).status is RequestStatus.Done
        assert (tmp_path / "se-a" / "vo" / "out.root").read_bytes() == b"data" * 10
        assert not (tmp_path / "fail" / "vo" / "out.root").exists()
    finally:
        env.close()


def test_a_root_reached_through_a_link_is_the_same_root(tmp_path: Path) -> None:
    (tmp_path / "disk" / "se").mkdir(parents=True)
    (tmp_path / "se-link").symlink_to(tmp_path / "disk" / "se")
    text = BASE.replace('url = "a"', 'url = "disk/se"') + "[storage.SE-B]\nurl = 'se-link/failover'\n"
    with pytest.raises(ConfigError, match=r"SE-B\.url: the root .*/se-link/failover is inside SE-A's"):
        load_config(_write(tmp_path, text))


def test_separate_roots_side_by_side_are_accepted(tmp_path: Path) -> None:
    text = BASE + "[storage.SE-B]\nurl = 'a-b'\n[storage.SE-C]\nurl = 'root://eos//vo/a'\n"
    assert [se.name for se in load_config(_write(tmp_path, text)).storage] == ["SE-A", "SE-B", "SE-C"]


def test_a_catalog_on_a_network_filesystem_is_refused_when_the_configuration_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog opens on first use; on NFS that would be the first registration: said at once instead."""
    shared = tmp_path / "nfs"
    monkeypatch.setattr(
        filesystems, "filesystem_type", lambda path: "nfs4" if shared in Path(path).parents else "ext4"
    )
    monkeypatch.delenv(filesystems.ALLOW_NETWORK_DATABASE, raising=False)
    text = BASE.replace("master = true", f'master = true\npath = "{shared / "catalog.db"}"')
    config = load_config(_write(tmp_path, text))
    with pytest.raises(NetworkFilesystem, match=r"nfs/catalog\.db: the database is on a nfs4 filesystem"):
        config.open()
    assert not (tmp_path / "failover.db").exists()


def test_the_smallest_configuration_uses_the_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[storage.A]\nurl = "a"\n[catalogs.C]\n'))
    assert config == Config(
        file=tmp_path / "failover.toml",
        database=tmp_path / "failover.db",
        storage=config.storage,
        catalogs=config.catalogs,
    )
    assert config.catalogs[0].kind == "sqlite"


BASE = '[storage.SE-A]\nurl = "a"\n[catalogs.Main]\nmaster = true\n'


BAD_ENTRIES = [
    ("colour = 'blue'\n" + BASE, "colour", "unknown key"),
    (BASE + "[storage.SE-B]\nurl = 'a'\n", "storage.SE-B.url", "is the same as SE-A's"),
    (BASE + "[storage.SE-B]\nurl = 'a/failover'\n", "storage.SE-B.url", "is inside SE-A's"),
    (BASE + "[storage.SE-B]\nurl = '.'\n", "storage.SE-B.url", "is around SE-A's"),
    (
        BASE + "[storage.SE-B]\nurl = 'root://EOS.example.org//vo/se'\n"
        "[storage.SE-C]\nurl = 'root://eos.example.org//vo/se/tmp'\n",
        "storage.SE-C.url",
        "is inside SE-B's (root://EOS.example.org//vo/se): two SEs on one storage share their files",
    ),
    (BASE + "[storage.SE-B]\nurl = 'b'\nspeed = 3\n", "storage.SE-B.speed", "unknown key"),
    (BASE + "[storage.SE-B]\nurl = 'gopher://b'\n", "storage.SE-B.url", "unknown protocol 'gopher'"),
    (BASE + "[storage.SE-B]\n", "storage.SE-B.url", "missing"),
    (
        BASE + "[storage.SE-B]\nurl = 'davs://alice:s3cret@dav.example.org/vo'\n",
        "storage.SE-B.url",
        "the URL 'davs://alice:***@dav.example.org/vo' holds a password",
    ),
    (BASE + "[storage.SE-B]\nurl = ''\n", "storage.SE-B.url", "must not be empty"),
    (BASE + "[storage.SE-B]\nurl = 7\n", "storage.SE-B.url", "must be a string, not an integer"),
    (BASE + "[storage.' SE-A ']\nurl = 'b'\n", "storage. SE-A ", "duplicate name 'SE-A'"),
    (BASE + "[storage.'A,B']\nurl = 'b'\n", "storage.A,B", "no comma"),
    (BASE + "[storage.SE-B]\nurl = 'b'\noptions = 3\n", "storage.SE-B.options", "must be a table"),
    (
        BASE + "[storage.SE-B]\nurl = 'mnt/b'\nmount = 'other'\n",
        "storage.SE-B.mount",
        "is not a directory above",
    ),
    (
        BASE + "[storage.SE-B]\nurl = 'mnt'\nmount = 'mnt/b'\n",
        "storage.SE-B.mount",
        "is not a directory above",
    ),
    (BASE + "[storage.SE-B]\nurl = 'mnt/b'\nmount = ''\n", "storage.SE-B.mount", "must not be empty"),
    (BASE + "[storage.SE-B]\nurl = 'mnt/b'\nmount = true\n", "storage.SE-B.mount", "must be a string"),
    (
        BASE + "[storage.SE-B]\nurl = 's3://bucket/vo'\nmount = '/srv'\n",
        "storage.SE-B.mount",
        "is for a local root only, and s3://bucket/vo is not one",
    ),
    ("[catalogs.Main]\nmaster = true\n", "storage", "at least one storage element"),
    ('[storage.SE-A]\nurl = "a"\n', "catalogs", "at least one catalog"),
    (BASE + "[catalogs.Other]\nkind = 'lfc'\n", "catalogs.Other.kind", "unknown catalog kind 'lfc'"),
    (BASE + "[catalogs.Other]\nmaster = 'yes'\n", "catalogs.Other.master", "must be true or false"),
    (
        BASE.replace("true", "false") + "[upload]\nmaster_only = true\n",
        "upload.master_only",
        "no catalog",
    ),
    (BASE + "[upload]\ndestinations = ['SE-Z']\n", "upload.destinations", "'SE-Z' is not configured"),
    (BASE + "[upload]\ncatalogs = ['Nope']\n", "upload.catalogs", "'Nope' is not configured"),
    (BASE + "[upload]\nretry_delays = [10, -1]\n", "upload.retry_delays[1]", "at least 0, not -1"),
    (BASE + "[upload]\nretry_delays = 10\n", "upload.retry_delays", "a list of seconds"),
    (BASE + "[executor]\nbackoff_base = -5\n", "executor.backoff_base", "at least 0"),
    (BASE + "[executor]\nlease_seconds = 0\n", "executor.lease_seconds", "greater than 0"),
    (BASE + "[executor]\nmax_attempts = 2.5\n", "executor.max_attempts", "a whole number"),
    (BASE + "[executor]\nbatch_size = 0\n", "executor.batch_size", "at least 1"),
    (BASE + "[executor]\nbatch_size = 1.5\n", "executor.batch_size", "a whole number"),
    (BASE + "[executor]\nround_bytes = -1\n", "executor.round_bytes", "at least 0"),
    (BASE + "[executor]\nround_bytes = 1e6\n", "executor.round_bytes", "a whole number"),
    (BASE + "[executor]\njitter = 2\n", "executor.jitter", "at most 1"),
    (
        BASE + "[executor]\nbackoff_cap = true\n",
        "executor.backoff_cap",
        "must be a number, not a boolean",
    ),
    (BASE + "[executor]\nwait = 1\n", "executor.wait", "unknown key"),
    ("durability = 'FAST'\n" + BASE, "durability", "must be one of FULL, NORMAL"),
    ("database = ''\n" + BASE, "database", "must not be empty"),
    ("storage = 3\n", "storage", "must be a table, not an integer"),
]


@pytest.mark.parametrize(
    ("text", "key", "problem"), BAD_ENTRIES, ids=[f"{k}: {p}" for _, k, p in BAD_ENTRIES]
)
def test_a_bad_entry_names_the_file_the_key_and_the_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[storage\n", "not valid TOML"),
        ('[storage.A]\nurl = "a"\n[storage.A]\nurl = "b"\n', "not valid TOML"),
    ],
)
def test_a_file_that_is_not_toml_is_a_config_error(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {problem}")) as caught:
        load_config(path)
    assert caught.value.key == ""


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "absent.toml")


def test_config_error_is_invalid_input_with_file_and_key(tmp_path: Path) -> None:
    """Its record round-trips like every failover error's (config errors never reach the journal)."""
    error = ConfigError.at(tmp_path / "f.toml", "storage.A.url", "wrong")
    assert isinstance(error, InvalidInput)
    assert (error.file, error.key) == (str(tmp_path / "f.toml"), "storage.A.url")
    assert str(error) == f"{tmp_path / 'f.toml'}: storage.A.url: wrong"
    rebuilt = error_from_record(error.to_record())
    assert (type(rebuilt), rebuilt.to_record()) == (ConfigError, error.to_record())


@pytest.mark.parametrize(
    "url",
    ["memory://se-a", "s3://bucket/prefix", "root://eos.example.org//eos/vo", "davs://dav.example.org/vo"],
)
def test_every_storage_protocol_failover_knows_is_accepted(tmp_path: Path, url: str) -> None:
    """fsspec's protocols and failover's own SE classes; the client library is needed only to open it."""
    config = load_config(_write(tmp_path, f'[storage.SE-A]\nurl = "{url}"\n[catalogs.C]\n'))
    assert config.storage[0].url == url


def test_a_plain_path_with_a_space_or_an_accent_names_that_very_directory(tmp_path: Path) -> None:
    """Not its percent-encoded twin: fsspec takes a local URL's path as it is written."""
    home = tmp_path / "run 42 josé"
    home.mkdir()
    config = load_config(_write(home, '[storage.SE-A]\nurl = "se a"\n[catalogs.Main]\nmaster = true\n'))
    assert config.storage[0].url == f"file://{home}/se a"
    env = config.open()
    assert env.se("SE-A").root == f"{home}/se a"
    env.close()
