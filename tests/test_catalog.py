"""The file catalog: registration semantics, the embedded SQLite catalog, error mapping, CatalogSet."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time

import failover.catalog
import failover.catalog.sqlite
from failover.catalog import (
    CatalogSet,
    FileEntry,
    Replica,
    SQLiteCatalog,
    conflicting_field,
    map_catalog_errors,
)
from failover.errors import (
    CatalogUnavailable,
    FailoverError,
    InvalidInput,
    PermanentError,
    RegistrationRefused,
    UnknownCatalog,
)
from persistence.catalog import CATALOG_SCHEMA, load_catalog_file
from persistence.db import open_store
from persistence.errors import SchemaTooNew, StoreError, StoreUnavailable

LFN = "/vo/user/a/alice/run42/out.root"
GUID = "6F1A2B3C-4D5E-4F60-8172-839405A6B7C8"
ENTRY = FileEntry(LFN, 5, "062c0215", "ADLER32", GUID)
REPLICA = Replica(LFN, "SE-A", "file:///srv/se-a/vo/user/a/alice/run42/out.root")
MD5_OF_HELLO = "5d41402abc4b2a76b9719d911017c592"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SQLiteCatalog]:
    """A master catalog in a fresh database file, closed after the test."""
    cat = SQLiteCatalog("Main", tmp_path / "catalog.db", master=True)
    yield cat
    cat.close()


def entry(lfn: str, guid: str) -> FileEntry:
    return FileEntry(lfn, 5, "062c0215", "ADLER32", guid)


def guid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def test_register_new_file(catalog: SQLiteCatalog) -> None:
    assert catalog.register_file(ENTRY, REPLICA) is True
    assert catalog.get_file(LFN) == ENTRY
    assert catalog.get_replicas(LFN) == [REPLICA]
    assert catalog.find_guid(GUID) == LFN


def test_unknown_lfn_and_guid(catalog: SQLiteCatalog) -> None:
    assert catalog.get_file(LFN) is None
    assert catalog.get_replicas(LFN) == []
    assert catalog.find_guid(GUID) is None


@pytest.mark.parametrize(
    ("checksum", "checksum_type", "guid_form"),
    [
        ("062c0215", "ADLER32", GUID),
        ("0x0062c0215", "ADLER32", GUID),
        ("62C0215", "AD", GUID.lower()),
        ("0X062C0215", "adler32", f" {GUID} "),
    ],
)
def test_identical_registration_is_idempotent(
    catalog: SQLiteCatalog, checksum: str, checksum_type: str, guid_form: str
) -> None:
    """Registering the same metadata again, in any tolerated spelling, succeeds and writes nothing."""
    catalog.register_file(ENTRY, REPLICA)
    again = FileEntry(LFN, 5, checksum, checksum_type, guid_form)
    assert catalog.register_file(again, REPLICA) is False
    assert catalog.get_file(LFN) == ENTRY
    assert catalog.get_replicas(LFN) == [REPLICA]


def test_stored_entry_is_canonical(tmp_path: Path) -> None:
    cat = SQLiteCatalog("Main", tmp_path / "c.db")
    with freeze_time("2024-05-06 07:08:09"):
        cat.register_file(FileEntry(LFN, 5, "0X62C0215", "ad", GUID.lower()), REPLICA)
    cat.close()
    with open_store(tmp_path / "c.db", schema=CATALOG_SCHEMA) as store:
        row = load_catalog_file(store.conn, LFN)
    assert row is not None
    assert (row.checksum, row.checksum_type, row.guid) == ("062c0215", "ADLER32", GUID)
    assert row.created_at == "2024-05-06T07:08:09.000000+00:00"


@pytest.mark.parametrize(
    ("field", "changed", "old", "new"),
    [
        ("size", FileEntry(LFN, 6, "062c0215", "ADLER32", GUID), "5", "6"),
        ("checksum", FileEntry(LFN, 5, "062c0216", "ADLER32", GUID), "062c0215", "062c0216"),
        ("checksum_type", FileEntry(LFN, 5, MD5_OF_HELLO, "MD5", GUID), "ADLER32", "MD5"),
        ("guid", FileEntry(LFN, 5, "062c0215", "ADLER32", guid(1)), GUID, guid(1)),
    ],
)
def test_conflicting_metadata_is_refused(
    catalog: SQLiteCatalog, field: str, changed: FileEntry, old: str, new: str
) -> None:
    """The refusal names the field and both values, and leaves the registered entry as it was."""
    catalog.register_file(ENTRY, REPLICA)
    with pytest.raises(RegistrationRefused) as caught:
        catalog.register_file(changed, Replica(LFN, "SE-B", "file:///b"))
    assert f" {field} " in caught.value.message
    assert old in caught.value.message and new in caught.value.message
    assert (caught.value.catalog, caught.value.lfn) == ("Main", LFN)
    assert catalog.get_file(LFN) == ENTRY
    assert catalog.get_replicas(LFN) == [REPLICA]


@pytest.mark.parametrize("guid_form", [GUID, GUID.lower()])
def test_guid_held_by_another_lfn_is_refused(catalog: SQLiteCatalog, guid_form: str) -> None:
    catalog.register_file(ENTRY, REPLICA)
    other = "/vo/user/a/alice/run42/other.root"
    with pytest.raises(RegistrationRefused, match="already used by") as caught:
        catalog.register_file(entry(other, guid_form), Replica(other, "SE-A", "file:///o"))
    assert LFN in caught.value.message
    assert catalog.get_file(other) is None
    assert catalog.get_replicas(other) == []


@pytest.mark.parametrize(
    ("registered", "wanted", "reason"),
    [
        ("/vo/run/out", "/vo/run/out/part1", "/vo/run/out is a file, not a directory"),
        ("/vo/run", "/vo/run/out/part1", "/vo/run is a file, not a directory"),
        ("/vo/run/out/part1", "/vo/run/out", "it is a directory (it holds /vo/run/out/part1)"),
        ("/vo/run/out/a/b", "/vo/run", "it is a directory (it holds /vo/run/out/a/b)"),
    ],
)
def test_a_name_is_a_file_or_a_directory_never_both(
    catalog: SQLiteCatalog, registered: str, wanted: str, reason: str
) -> None:
    """A file above the LFN, or files below it, refuse the LFN; nothing of it is written."""
    catalog.register_file(entry(registered, guid(1)), Replica(registered, "SE-A", "file:///r"))
    assert catalog.path_conflict(wanted) == reason
    with pytest.raises(RegistrationRefused) as caught:
        catalog.register_file(entry(wanted, guid(2)), Replica(wanted, "SE-A", "file:///w"))
    assert caught.value.message == f"catalog 'Main' refuses {wanted}: {reason}"
    assert (catalog.get_file(wanted), catalog.get_replicas(wanted), catalog.find_guid(guid(2))) == (
        None,
        [],
        None,
    )


@pytest.mark.parametrize(
    "neighbour",
    ["/vo/run/out.1", "/vo/run/out0", "/vo/run/ou", "/vo/run/out-/x", "/vo/run/outer/x", "/vo/run/other"],
)
def test_names_sharing_a_prefix_are_no_conflict(catalog: SQLiteCatalog, neighbour: str) -> None:
    """Only whole path components count: /vo/run/out0 or /vo/run/out-/x is neither above nor below it."""
    catalog.register_file(entry(neighbour, guid(1)), Replica(neighbour, "SE-A", "file:///n"))
    assert catalog.path_conflict("/vo/run/out") is None
    assert catalog.register_file(entry("/vo/run/out", guid(2)), Replica("/vo/run/out", "SE-A", "file:///o"))


def test_a_conflict_in_a_batch_refuses_that_file_only(catalog: SQLiteCatalog) -> None:
    with catalog.batch():
        catalog.register_file(entry("/vo/b/x", guid(1)), Replica("/vo/b/x", "SE-A", "file:///1"))
        with pytest.raises(RegistrationRefused, match="is a file"):
            catalog.register_file(entry("/vo/b/x/y", guid(2)), Replica("/vo/b/x/y", "SE-A", "file:///2"))
        catalog.register_file(entry("/vo/b/z", guid(3)), Replica("/vo/b/z", "SE-A", "file:///3"))
    assert [e.lfn for e, _ in catalog.iter_files()] == ["/vo/b/x", "/vo/b/z"]


def test_register_file_with_another_pfn_at_same_se_is_refused(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    with pytest.raises(RegistrationRefused, match="pfn"):
        catalog.register_file(ENTRY, Replica(LFN, "SE-A", "file:///elsewhere"))
    assert catalog.get_replicas(LFN) == [REPLICA]


def test_register_known_file_at_new_se_adds_the_replica(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    second = Replica(LFN, "SE-B", "file:///b")
    assert catalog.register_file(ENTRY, second) is True
    assert catalog.get_replicas(LFN) == [REPLICA, second]


@pytest.mark.parametrize(
    ("bad_entry", "replica"),
    [
        (FileEntry(LFN, 5, "not-hex", "ADLER32", GUID), REPLICA),
        (FileEntry(LFN, 5, "062c0215", "CRC64", GUID), REPLICA),
        (ENTRY, Replica("/vo/other", "SE-A", "file:///x")),
    ],
)
def test_malformed_registration_is_invalid_input(
    catalog: SQLiteCatalog, bad_entry: FileEntry, replica: Replica
) -> None:
    with pytest.raises(InvalidInput):
        catalog.register_file(bad_entry, replica)
    assert catalog.get_file(LFN) is None


def test_register_replica_needs_a_registered_file(catalog: SQLiteCatalog) -> None:
    with pytest.raises(RegistrationRefused, match="file not registered") as caught:
        catalog.register_replica(REPLICA)
    assert caught.value.catalog == "Main"
    assert catalog.get_replicas(LFN) == []


def test_replicas_are_added_and_removed_idempotently(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    second = Replica(LFN, "SE-B", "file:///b")
    assert catalog.register_replica(second) is True
    assert catalog.register_replica(second) is False
    with pytest.raises(RegistrationRefused, match="pfn"):
        catalog.register_replica(Replica(LFN, "SE-B", "file:///c"))
    assert catalog.remove_replica(LFN, "SE-B") is True
    assert catalog.remove_replica(LFN, "SE-B") is False
    assert catalog.get_replicas(LFN) == [REPLICA]


def test_removing_the_last_replica_keeps_the_file(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    assert catalog.remove_replica(LFN, "SE-A") is True
    assert catalog.get_replicas(LFN) == []
    assert catalog.get_file(LFN) == ENTRY


def test_remove_file_removes_entry_and_replicas(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    catalog.register_replica(Replica(LFN, "SE-B", "file:///b"))
    assert catalog.remove_file(LFN) is True
    assert catalog.get_file(LFN) is None
    assert catalog.get_replicas(LFN) == []
    assert catalog.find_guid(GUID) is None
    assert catalog.remove_file(LFN) is False


def test_iter_files_yields_everything_in_lfn_order(catalog: SQLiteCatalog) -> None:
    b, a = entry("/vo/b", guid(2)), entry("/vo/a", guid(1))
    catalog.register_file(b, Replica("/vo/b", "SE-B", "file:///b"))
    catalog.register_file(a, Replica("/vo/a", "SE-A", "file:///a"))
    catalog.register_replica(Replica("/vo/a", "SE-C", "file:///c"))
    catalog.remove_replica("/vo/b", "SE-B")
    assert list(catalog.iter_files()) == [
        (a, [Replica("/vo/a", "SE-A", "file:///a"), Replica("/vo/a", "SE-C", "file:///c")]),
        (b, []),
    ]


def test_iter_files_across_pages_allows_writes(
    catalog: SQLiteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Iteration reads page by page with no open cursor, so the caller may write to the catalog meanwhile."""
    monkeypatch.setattr(failover.catalog.sqlite, "PAGE_SIZE", 2)
    lfns = [f"/vo/f{n}" for n in range(5)]
    for n, lfn in enumerate(lfns):
        catalog.register_file(entry(lfn, guid(n)), Replica(lfn, "SE-A", f"file://{lfn}"))
    seen = []
    for file, replicas in catalog.iter_files():
        seen.append((file.lfn, len(replicas)))
        catalog.remove_replica(file.lfn, "SE-A")
    assert seen == [(lfn, 1) for lfn in lfns]
    assert all(replicas == [] for _, replicas in catalog.iter_files())


def test_iter_files_of_empty_catalog(catalog: SQLiteCatalog) -> None:
    assert list(catalog.iter_files()) == []


def test_two_catalog_objects_share_one_database(tmp_path: Path) -> None:
    first = SQLiteCatalog("Main", tmp_path / "shared.db")
    second = SQLiteCatalog("Main", tmp_path / "shared.db")
    try:
        first.register_file(ENTRY, REPLICA)
        assert second.get_file(LFN) == ENTRY
        assert second.register_file(ENTRY, REPLICA) is False
        assert second.remove_replica(LFN, "SE-A") is True
        assert first.get_replicas(LFN) == []
    finally:
        first.close()
        second.close()


def test_close_then_use_reopens(catalog: SQLiteCatalog) -> None:
    catalog.register_file(ENTRY, REPLICA)
    catalog.close()
    catalog.close()
    assert catalog.get_file(LFN) == ENTRY


def unopenable_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "plain-file").write_text("x")
    (tmp_path / "a-directory").mkdir()
    return {
        "missing directory": tmp_path / "no" / "such" / "dir" / "catalog.db",
        "parent is a file": tmp_path / "plain-file" / "catalog.db",
        "path is a directory": tmp_path / "a-directory",
    }


@pytest.mark.parametrize("case", ["missing directory", "parent is a file", "path is a directory"])
def test_unopenable_catalog_is_unavailable(tmp_path: Path, case: str) -> None:
    """Construction never fails (the catalog opens lazily); the first call reports it unavailable."""
    cat = SQLiteCatalog("Backup", unopenable_paths(tmp_path)[case])
    with pytest.raises(CatalogUnavailable) as caught:
        cat.register_file(ENTRY, REPLICA)
    assert caught.value.catalog == "Backup"
    assert caught.value.retryable
    # The store names the sqlite3 error first (StoreUnavailable), keeping it as its own cause.
    assert isinstance(caught.value.__cause__, StoreUnavailable)
    assert isinstance(caught.value.__cause__.__cause__, sqlite3.OperationalError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_catalog_in_unwritable_directory_is_unavailable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CatalogUnavailable) as caught:
            SQLiteCatalog("Backup", locked / "catalog.db").get_file(LFN)
        assert caught.value.catalog == "Backup"
    finally:
        locked.chmod(0o700)


def test_locked_catalog_is_unavailable_then_recovers(tmp_path: Path) -> None:
    """A writer holding the lock past the busy timeout makes the catalog unavailable, not broken."""
    path = tmp_path / "catalog.db"
    cat = SQLiteCatalog("Main", path, busy_timeout_ms=50)
    cat.get_file(LFN)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CatalogUnavailable) as caught:
            cat.register_file(ENTRY, REPLICA)
        assert (caught.value.catalog, caught.value.lfn) == ("Main", LFN)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cat.register_file(ENTRY, REPLICA) is True
    cat.close()


def test_file_that_is_not_a_database_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"this is not a sqlite database, not at all" * 100)
    with pytest.raises(PermanentError) as caught:
        SQLiteCatalog("Main", path).get_file(LFN)
    assert caught.value.catalog == "Main"
    assert not isinstance(caught.value, RegistrationRefused)


def test_catalog_written_by_newer_failover_is_a_permanent_error(catalog: SQLiteCatalog) -> None:
    catalog.get_file(LFN)
    catalog.close()
    with sqlite3.connect(catalog.path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
            ("failover-catalog", "m999_from_the_future", "2099-01-01"),
        )
    with pytest.raises(PermanentError, match="newer") as caught:
        catalog.get_file(LFN)
    assert isinstance(caught.value.__cause__, SchemaTooNew)


SQLITE_ERRORS = sorted(
    (v for v in vars(sqlite3).values() if isinstance(v, type) and issubclass(v, Exception)),
    key=lambda cls: cls.__name__,
)
EXPECTED: dict[type[Exception], type[FailoverError]] = {
    sqlite3.IntegrityError: RegistrationRefused,
    sqlite3.OperationalError: CatalogUnavailable,
}


@pytest.mark.parametrize("foreign", [*SQLITE_ERRORS, SchemaTooNew, StoreError], ids=lambda c: c.__name__)
def test_every_foreign_error_is_mapped(foreign: type[Exception]) -> None:
    """Nothing sqlite3 (or the store) raises escapes as a foreign exception."""
    original = foreign("boom")
    with pytest.raises(FailoverError) as caught, map_catalog_errors("Main", LFN):
        raise original
    assert type(caught.value) is EXPECTED.get(foreign, PermanentError)
    assert (caught.value.catalog, caught.value.lfn) == ("Main", LFN)
    assert caught.value.__cause__ is original


@pytest.mark.parametrize("raised", [RegistrationRefused("no", catalog="X"), ValueError("bug"), KeyError("k")])
def test_other_errors_pass_through_unchanged(raised: Exception) -> None:
    with pytest.raises(type(raised)) as caught, map_catalog_errors("Main"):
        raise raised
    assert caught.value is raised


def test_real_constraint_violation_maps_to_refusal() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(RegistrationRefused, match="SQLITE_CONSTRAINT_PRIMARYKEY"), map_catalog_errors("Main"):
        conn.execute("INSERT INTO t VALUES ('a')")


@pytest.mark.parametrize(
    ("wanted", "field"),
    [
        (FileEntry(LFN, 5, "0x62C0215", "ad", GUID.lower()), None),
        (FileEntry(LFN, 4, "062c0215", "ADLER32", GUID), "size"),
        (FileEntry(LFN, 5, MD5_OF_HELLO, "MD5", GUID), "checksum_type"),
        (FileEntry(LFN, 5, "162c0215", "ADLER32", GUID), "checksum"),
        (FileEntry(LFN, 5, "062c0215", "ADLER32", guid(9)), "guid"),
    ],
)
def test_conflicting_field(wanted: FileEntry, field: str | None) -> None:
    assert conflicting_field(ENTRY, wanted) == field


def catalog_set() -> CatalogSet:
    return CatalogSet(
        [
            SQLiteCatalog("A", ":memory:"),
            SQLiteCatalog("B", ":memory:", master=True),
            SQLiteCatalog("C", ":memory:"),
            SQLiteCatalog("D", ":memory:", master=True),
        ]
    )


@pytest.mark.parametrize(
    ("requested", "master_only", "expected"),
    [
        (None, False, ["A", "B", "C", "D"]),
        ("", False, ["A", "B", "C", "D"]),
        (" , ", False, ["A", "B", "C", "D"]),
        ([], False, ["A", "B", "C", "D"]),
        ("C", False, ["C"]),
        (" C ", False, ["C"]),
        ("C, A,C ,B", False, ["C", "A", "B"]),
        (["D", " A", "D"], False, ["D", "A"]),
        (("B,C", "A"), False, ["B", "C", "A"]),
        (None, True, ["B", "D"]),
        ("A", True, ["B", "D"]),
        (["C", "A"], True, ["B", "D"]),
    ],
)
def test_select(requested: object, master_only: bool, expected: list[str]) -> None:
    chosen = catalog_set().select(requested, master_only)  # type: ignore[arg-type]
    assert [cat.name for cat in chosen] == expected


@pytest.mark.parametrize(("requested", "master_only"), [("A,Nope", False), ("Nope", True), (["a"], False)])
def test_select_unknown_name(requested: str | list[str], master_only: bool) -> None:
    with pytest.raises(UnknownCatalog) as caught:
        catalog_set().select(requested, master_only)
    assert caught.value.catalog in {"Nope", "a"}


def test_select_master_only_without_master() -> None:
    catalogs = CatalogSet([SQLiteCatalog("A", ":memory:")])
    with pytest.raises(UnknownCatalog, match="no master"):
        catalogs.select(None, master_only=True)


def test_select_from_empty_set() -> None:
    with pytest.raises(UnknownCatalog, match="no catalog"):
        CatalogSet().select()


def test_catalog_set_lookup() -> None:
    catalogs = catalog_set()
    assert catalogs.names() == ["A", "B", "C", "D"]
    assert [cat.name for cat in catalogs.masters()] == ["B", "D"]
    assert catalogs.get(" C ").name == "C"
    assert "A" in catalogs and "Z" not in catalogs
    assert len(catalogs) == 4
    assert [cat.name for cat in catalogs] == ["A", "B", "C", "D"]
    with pytest.raises(UnknownCatalog, match="'Z'"):
        catalogs.get("Z")


def test_catalog_set_refuses_duplicate_names() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        CatalogSet([SQLiteCatalog("A", ":memory:"), SQLiteCatalog("A", ":memory:")])


def test_public_surface_is_sorted_and_complete() -> None:
    names = failover.catalog.__all__
    assert names == sorted(names)
    assert all(hasattr(failover.catalog, name) for name in names)
    public = {name for name in vars(failover.catalog) if not name.startswith("_")}
    assert public - set(names) - {"annotations", "base", "errors", "sqlite"} == set()
