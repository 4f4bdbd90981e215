"""
Configuration in TOML: storage elements, catalogs, the database, retries and the executor.

Without a file, the embedded default (:func:`failover.workspace.open_workspace`) is used. With one,
:func:`load_config` reads and checks it strictly, and :meth:`Config.open` builds the
:class:`~failover.environment.Environment`; :attr:`Config.executor` is the executor's policy. Every
problem is a :class:`ConfigError` naming the file, the key path and what is wrong. The smallest file::

    [storage.SE-A]
    url = "file:///srv/se-a"        # an fsspec URL; a plain path means a local directory
    [catalogs.Main]
    kind = "sqlite"
    master = true

Top-level keys: ``database``, ``durability``, ``owner``, ``owner_group`` and the tables ``storage``,
``catalogs``, ``upload`` and ``executor``; README.md ("Configuration") shows every key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from failover.catalog import CatalogSet, SQLiteCatalog
from failover.environment import Environment
from failover.errors import InvalidInput
from failover.executor import ExecutorPolicy
from failover.storage.element import plain_local_root
from failover.storage.factory import SECRET_IN_URL, STORAGE_CLASSES, password_in_url, storage_element
from failover.storage.overlap import first_overlap
from failover.storage.paths import local_url
from persistence.db import Durability, open_store
from persistence.filesystems import refuse_network_filesystem
from states import DIRAC_PUT_RETRY, RetryPolicy

__all__ = [
    "CATALOG_KINDS",
    "CatalogConfig",
    "Config",
    "ConfigError",
    "StorageConfig",
    "UploadDefaults",
    "load_config",
    "parse_config",
]

_T = TypeVar("_T")

#: The catalog implementations a configuration can name.
CATALOG_KINDS = ("sqlite",)

_TOP_KEYS = ("database", "durability", "owner", "owner_group", "storage", "catalogs", "upload", "executor")
_SE_KEYS = ("url", "options", "create_root", "mount")
_CATALOG_KEYS = ("kind", "path", "master")
_UPLOAD_KEYS = ("destinations", "failovers", "catalogs", "master_only", "retry_delays")
# Executor keys with their lowest allowed value, and whether that bound is excluded.
_EXECUTOR_BOUNDS: dict[str, tuple[float, bool]] = {
    "max_attempts": (1, False),
    "backoff_base": (0, False),
    "backoff_factor": (1, False),
    "backoff_cap": (0, False),
    "jitter": (0, False),
    "lease_seconds": (0, True),
    "batch_size": (1, False),
    "round_bytes": (0, False),
    "poll_interval": (0, True),
}


class ConfigError(InvalidInput):
    """
    A configuration file that cannot be used: unreadable, not TOML, or an entry that is wrong.

    Args:
        message: the whole message (``file: key: problem``).
        file: the configuration file.
        key: the dotted key path of the bad entry (``storage.SE-A.url``), empty for the file as a whole.
    """

    code = "config_error"

    def __init__(self, message: str, *, file: str = "", key: str = "", **fields: Any) -> None:
        super().__init__(message, **fields)
        self.file = file
        self.key = key

    @classmethod
    def at(cls, file: Path, key: str, problem: str) -> ConfigError:
        """The error for ``key`` of ``file`` (the file as a whole when ``key`` is empty)."""
        where = f"{file}: {key}: " if key else f"{file}: "
        return cls(where + problem, file=str(file), key=key)


@dataclass(frozen=True)
class StorageConfig:
    """
    One configured storage element: its name, fsspec URL and filesystem options, whether a missing
    local root is created (by default not: the SE is unavailable until it exists, so that a storage that
    is not mounted does not become a directory on the local disk), and the mount point a local root must
    be on (the SE is unavailable while it is not mounted).
    """

    name: str
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    create_root: bool = False
    mount: str | None = None


@dataclass(frozen=True)
class CatalogConfig:
    """One configured catalog: its name, implementation, database file and master flag."""

    name: str
    kind: str
    path: Path
    master: bool = False


@dataclass(frozen=True)
class UploadDefaults:
    """What ``failover upload`` uses when its options do not say."""

    destinations: tuple[str, ...] = ()
    failovers: tuple[str, ...] = ()
    catalogs: tuple[str, ...] | None = None
    master_only: bool = False


@dataclass(frozen=True)
class Config:
    """
    A checked configuration.

    Args:
        file: the file it was read from.
        database: the failover database.
        durability: the commit profile of the database and the SQLite catalogs.
        storage: the storage elements, in file order.
        catalogs: the catalogs, in file order.
        put_retry: the waits between put attempts on a single SE (``retryUpload``).
        executor: the request executor's retry, backoff and lease settings.
        poll_interval: seconds between polls of a looping executor.
        upload: defaults of ``failover upload``.
        owner: request owner (the login name when empty).
        owner_group: request owner group (the login's primary group when empty).
    """

    file: Path
    database: Path
    durability: Durability = Durability.FULL
    storage: tuple[StorageConfig, ...] = ()
    catalogs: tuple[CatalogConfig, ...] = ()
    put_retry: RetryPolicy = DIRAC_PUT_RETRY
    executor: ExecutorPolicy = field(default_factory=ExecutorPolicy)
    poll_interval: float = 5.0
    upload: UploadDefaults = field(default_factory=UploadDefaults)
    owner: str = ""
    owner_group: str = ""

    def open(self) -> Environment:
        """
        Open the database and build the environment this configuration describes.

        Raises:
            StorageUnavailable: a storage element's filesystem cannot be set up.
            StoreError: the database cannot be opened (persistence errors), or it or a catalog's is on a
                network filesystem (``NetworkFilesystem``).
        """
        for catalog in self.catalogs:  # opened on first use: a database on NFS is said now, not then
            refuse_network_filesystem(catalog.path)
        storage = {
            se.name: storage_element(se.name, se.url, se.options, create_root=se.create_root, mount=se.mount)
            for se in self.storage
        }
        catalogs = CatalogSet(
            SQLiteCatalog(c.name, c.path, master=c.master, durability=self.durability) for c in self.catalogs
        )
        self.database.parent.mkdir(parents=True, exist_ok=True)
        store = open_store(self.database, durability=self.durability)
        return Environment(
            store=store,
            storage=storage,
            catalogs=catalogs,
            put_retry=self.put_retry,
            owner=self.owner,
            owner_group=self.owner_group,
        )


def load_config(path: str | Path) -> Config:
    """
    Read and check a TOML configuration file.

    Args:
        path: the file.

    Returns:
        The checked configuration; relative paths in it are resolved against the file's directory.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or has a bad entry (the first one found).
    """
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.at(file, "", f"cannot read the configuration: {exc}") from exc
    import tomllib  # here, not at the top: its import compiles regexes (~25 ms of every command's start)

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.at(file, "", f"not valid TOML: {exc}") from exc
    return parse_config(data, file=file)


def parse_config(data: Mapping[str, Any], *, file: Path) -> Config:
    """
    Check a configuration already parsed from TOML.

    Args:
        data: the TOML document.
        file: where it came from: named in errors, and the base of relative paths.

    Returns:
        The checked configuration.

    Raises:
        ConfigError: the first bad entry.
    """
    check = _Checker(file)
    check.keys(data, "", _TOP_KEYS)
    storage = check.entries(data.get("storage", {}), "storage", check.storage_element, "storage element")
    check.separate_roots(storage)
    catalogs = check.entries(data.get("catalogs", {}), "catalogs", check.catalog, "catalog")
    upload, put_retry = check.upload(data.get("upload", {}), storage, catalogs)
    executor, poll = check.executor(data.get("executor", {}))
    return Config(
        file=file,
        database=check.path(data.get("database", "failover.db"), "database"),
        durability=check.durability(data.get("durability", "FULL")),
        storage=storage,
        catalogs=catalogs,
        put_retry=put_retry,
        executor=executor,
        poll_interval=poll,
        upload=upload,
        owner=check.text(data.get("owner", ""), "owner"),
        owner_group=check.text(data.get("owner_group", ""), "owner_group"),
    )


class _Checker:
    """The checks of one file: each returns the checked value or raises a :class:`ConfigError`."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError.at(self.file, key, problem)

    def table(self, value: object, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table, not {_kind(value)}")
        return value

    def keys(self, value: object, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        table = self.table(value, key)
        for name in table:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                raise self.error(where, f"unknown key (expected one of: {', '.join(allowed)})")
        return table

    def typed(self, value: object, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        # TOML booleans are not numbers, though Python's bool is an int.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(key, f"must be {what}, not {_kind(value)}")
        return value

    def text(self, value: object, key: str) -> str:
        return str(self.typed(value, key, str, "a string"))

    def flag(self, value: object, key: str) -> bool:
        return bool(self.typed(value, key, bool, "true or false"))

    def number(self, value: object, key: str, lowest: float, exclusive: bool = False) -> float:
        number = float(self.typed(value, key, (int, float), "a number"))
        if number < lowest or (exclusive and number == lowest):
            bound = f"greater than {lowest:g}" if exclusive else f"at least {lowest:g}"
            raise self.error(key, f"must be {bound}, not {number:g}")
        return number

    def path(self, value: object, key: str) -> Path:
        text = self.text(value, key)
        if not text.strip():
            raise self.error(key, "must not be empty")
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.file.parent / path

    def durability(self, value: object) -> Durability:
        text = self.text(value, "durability").upper()
        if text not in Durability.__members__:
            raise self.error("durability", f"must be one of {', '.join(Durability)}, not {value!r}")
        return Durability(text)

    def named(self, table: object, key: str) -> list[tuple[str, str, Any]]:
        """The (name, key path, entry) of each entry of a table of named tables, names checked."""
        named: list[tuple[str, str, Any]] = []
        for raw, entry in self.table(table, key).items():
            name, where = raw.strip(), f"{key}.{raw}"
            if not name or "," in name:
                raise self.error(where, "a name must be non-empty and have no comma")
            if any(name == seen for seen, _, _ in named):
                raise self.error(where, f"duplicate name {name!r}")
            named.append((name, where, entry))
        return named

    def entries(
        self, table: object, key: str, make: Callable[[str, str, Any], _T], what: str
    ) -> tuple[_T, ...]:
        found = tuple(make(*named) for named in self.named(table, key))
        if not found:
            raise self.error(key, f"at least one {what} is needed")
        return found

    def storage_element(self, name: str, key: str, entry: object) -> StorageConfig:
        table = self.keys(entry, key, _SE_KEYS)
        if "url" not in table:
            raise self.error(f"{key}.url", "missing: every storage element needs a url")
        url = self.url(table["url"], f"{key}.url")
        options = self.table(table.get("options", {}), f"{key}.options")
        create_root = self.flag(table.get("create_root", False), f"{key}.create_root")
        mount = self.mount(table["mount"], url, f"{key}.mount") if "mount" in table else None
        return StorageConfig(name, url, dict(options), create_root, mount)

    def mount(self, value: object, url: str, key: str) -> str:
        path = os.path.abspath(self.path(value, key))
        root = plain_local_root(url)
        if root is None:
            raise self.error(key, f"is for a local root only, and {url} is not one")
        if os.path.commonpath([path, os.path.abspath(root)]) != path:
            raise self.error(key, f"{path} is not a directory above the SE's root {root}, nor the root")
        return path

    def separate_roots(self, storage: tuple[StorageConfig, ...]) -> None:
        found = first_overlap([se.url for se in storage])
        if found is not None:
            earlier, se, overlap = storage[found[0]], storage[found[1]], found[2]
            problem = (
                f"the root {se.url} is {overlap} {earlier.name}'s ({earlier.url}): two SEs on one storage "
                "share their files, and removing a temporary replica from one would delete the other's copy"
            )
            raise self.error(f"storage.{se.name}.url", problem)

    def url(self, value: object, key: str) -> str:
        text = self.text(value, key).strip()
        if not text:
            raise self.error(key, "must not be empty")
        masked = password_in_url(text)
        if masked is not None:
            raise self.error(key, SECRET_IN_URL.format(url=masked))
        if "://" not in text and "::" not in text:
            return local_url(self.path(text, key))
        if plain_local_root(text) is not None:
            return text  # a local root, as a storage element takes it without fsspec
        from fsspec import available_protocols, registry
        from fsspec.core import split_protocol

        # fsspec's protocols (installed or not), those registered at run time, and failover's own SE classes.
        known = set(available_protocols()) | set(registry) | set(STORAGE_CLASSES)
        for part in text.split("::"):
            protocol = split_protocol(part)[0] or "file"
            if protocol not in known:
                raise self.error(key, f"unknown protocol {protocol!r} in {text!r}")
        return text

    def catalog(self, name: str, key: str, entry: object) -> CatalogConfig:
        table = self.keys(entry, key, _CATALOG_KEYS)
        kind = self.text(table.get("kind", "sqlite"), f"{key}.kind")
        if kind not in CATALOG_KINDS:
            raise self.error(
                f"{key}.kind", f"unknown catalog kind {kind!r} (known: {', '.join(CATALOG_KINDS)})"
            )
        path = self.path(table.get("path", f"catalog-{name}.db"), f"{key}.path")
        return CatalogConfig(name, kind, path, self.flag(table.get("master", False), f"{key}.master"))

    def names(self, value: object, key: str, known: list[str]) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.error(key, f"must be a list of names, not {_kind(value)}")
        names = [name.strip() for item in items for name in item.split(",") if name.strip()]
        for name in names:
            if name not in known:
                raise self.error(key, f"{name!r} is not configured (known: {', '.join(known)})")
        return tuple(dict.fromkeys(names))

    def upload(
        self, table: object, storage: tuple[StorageConfig, ...], catalogs: tuple[CatalogConfig, ...]
    ) -> tuple[UploadDefaults, RetryPolicy]:
        entry = self.keys(table, "upload", _UPLOAD_KEYS)
        ses, cats = [se.name for se in storage], [c.name for c in catalogs]
        master_only = self.flag(entry.get("master_only", False), "upload.master_only")
        if master_only and not any(c.master for c in catalogs):
            raise self.error("upload.master_only", "is true but no catalog has master = true")
        defaults = UploadDefaults(
            destinations=self.names(entry.get("destinations", []), "upload.destinations", ses),
            failovers=self.names(entry.get("failovers", []), "upload.failovers", ses),
            catalogs=self.names(entry["catalogs"], "upload.catalogs", cats) if "catalogs" in entry else None,
            master_only=master_only,
        )
        return defaults, self.retry(entry.get("retry_delays", list(DIRAC_PUT_RETRY.delays)))

    def retry(self, value: object) -> RetryPolicy:
        delays = self.typed(value, "upload.retry_delays", list, "a list of seconds")
        checked = [self.number(d, f"upload.retry_delays[{i}]", 0) for i, d in enumerate(delays)]
        return RetryPolicy(tuple(checked))

    def executor(self, table: object) -> tuple[ExecutorPolicy, float]:
        entry = self.keys(table, "executor", tuple(_EXECUTOR_BOUNDS))
        values = {
            name: self.number(value, f"executor.{name}", *_EXECUTOR_BOUNDS[name])
            for name, value in entry.items()
        }
        for whole in ("max_attempts", "batch_size", "round_bytes"):
            if whole in values:
                self.typed(entry[whole], f"executor.{whole}", int, "a whole number")
                values[whole] = int(values[whole])
        if values.get("jitter", 0) > 1:
            raise self.error("executor.jitter", f"must be at most 1, not {values['jitter']:g}")
        poll = values.pop("poll_interval", 5.0)
        return ExecutorPolicy(**values), poll  # type: ignore[arg-type]


_KINDS: dict[type, str] = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}


def _kind(value: object) -> str:
    """How a TOML value is called in an error message."""
    kind = "a table" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else None
    return kind or _KINDS.get(type(value), type(value).__name__)
