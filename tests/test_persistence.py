"""The store: opening and migrating a database, its pragmas, integrity checks and transactions."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import sqlite_utils

from persistence import (
    AlreadyExists,
    ConcurrentUpdate,
    Durability,
    MachineRow,
    NotFound,
    SchemaTooNew,
    Store,
    StoreError,
    filesystems,
    open_store,
)
from persistence.errors import ConstraintViolation, NetworkFilesystem, TransactionAborted
from persistence.filesystems import filesystem_type, network_filesystem
from persistence.machines import (
    count_by_state,
    insert_machine,
    iter_machines,
    load_machine,
    load_machines,
    update_machine,
)
from persistence.migrations import SCHEMA
from persistence.schema import Schema


class Oops(Exception):
    """Raised inside a transaction block by the tests."""


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _migration_rows(path: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute("SELECT * FROM _sqlite_migrations ORDER BY id"))


def _schema(path: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"))


def _machine(machine_id: str, state: str = "Idle", kind: str = "counter") -> MachineRow:
    return MachineRow(machine_id, kind, state, 0, {"n": 1}, "2030-01-01T00:00:00.000000+00:00", "t0")


def test_open_creates_the_schema_and_records_every_migration(tmp_path: Path) -> None:
    with open_store(tmp_path / "new.db") as store:
        assert {"machines", "journal", "emitted", "_sqlite_migrations"} <= _tables(store.conn)
        assert SCHEMA.applied(store.conn) == list(SCHEMA.names)


def test_open_uses_wal_foreign_keys_and_the_default_busy_timeout(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert store.conn.execute("PRAGMA busy_timeout").fetchone() == (30_000,)


def test_open_sets_the_busy_timeout_asked_for(tmp_path: Path) -> None:
    with open_store(tmp_path / "db.db", busy_timeout_ms=1234) as store:
        assert store.conn.execute("PRAGMA busy_timeout").fetchone() == (1234,)


@pytest.mark.parametrize(
    ("durability", "synchronous"),
    [(None, 2), (Durability.FULL, 2), (Durability.NORMAL, 1)],
    ids=["default", "full", "normal"],
)
def test_synchronous_follows_the_durability_profile(
    tmp_path: Path, durability: Durability | None, synchronous: int
) -> None:
    """FULL (2) unless the faster NORMAL (1) profile is chosen."""
    opened = (
        open_store(tmp_path / "db.db")
        if durability is None
        else open_store(tmp_path / "db.db", durability=durability)
    )
    with opened as store:
        assert store.conn.execute("PRAGMA synchronous").fetchone() == (synchronous,)


def _open_after(
    barrier: multiprocessing.synchronize.Barrier, path: Path, outcomes: multiprocessing.Queue[str]
) -> None:
    barrier.wait()
    try:
        open_store(path).close()
        outcomes.put("ok")
    except Exception as exc:
        outcomes.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """
    Four processes create the same database together, ten times over: every open succeeds, the schema
    is made once. (Without waiting out the WAL switch, about one round in three lost a process to
    "database is locked".)
    """
    context = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = tmp_path / f"race-{attempt}.db"
        barrier, outcomes = context.Barrier(4), context.Queue()
        workers = [context.Process(target=_open_after, args=(barrier, path, outcomes)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert [outcomes.get(timeout=5) for _ in workers] == ["ok"] * 4
        assert len(_migration_rows(path)) == len(SCHEMA.names)


def test_reopening_applies_nothing_new(tmp_path: Path) -> None:
    path = tmp_path / "db.db"
    open_store(path).close()
    migrations, schema = _migration_rows(path), _schema(path)

    open_store(path).close()

    assert _migration_rows(path) == migrations
    assert _schema(path) == schema


def test_a_database_with_an_unknown_migration_is_refused_untouched(tmp_path: Path) -> None:
    """A database written by a newer failover raises SchemaTooNew naming the migration; it is not modified."""
    path = tmp_path / "newer.db"
    with open_store(path) as store:
        store.conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
            ("failover", "m999_from_the_future", "2031-01-01 00:00:00+00:00"),
        )
    before = path.read_bytes()

    with pytest.raises(SchemaTooNew, match=r"newer.*m999_from_the_future.*upgrade"):
        open_store(path)

    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_an_unknown_migration_of_another_set_is_not_ours_to_refuse(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with open_store(path) as store:
        store.conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
            ("someone-else", "m999_theirs", "2031-01-01 00:00:00+00:00"),
        )

    open_store(path).close()


def m003_notes(db: object) -> None:
    """A migration a later version might add."""
    assert isinstance(db, sqlite_utils.Database)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")


def test_a_migration_added_later_is_applied_at_the_next_open_once(tmp_path: Path) -> None:
    path = tmp_path / "db.db"
    open_store(path).close()
    later = Schema(SCHEMA.name, (*SCHEMA.steps, m003_notes))

    with open_store(path, schema=later) as store:
        assert "notes" in _tables(store.conn)
        assert later.applied(store.conn) == [*SCHEMA.names, "m003_notes"]
    rows = _migration_rows(path)
    open_store(path, schema=later).close()

    assert _migration_rows(path) == rows


def test_the_schema_as_sqlite_utils_migrations_keeps_the_names_and_order() -> None:
    assert [migration.name for migration in SCHEMA.migrations._migrations] == list(SCHEMA.names)
    assert SCHEMA.names == ("m001_machines_journal_emitted", "m002_request_store")


def test_opening_a_current_database_takes_no_write_lock(tmp_path: Path) -> None:
    """Another writer in the middle of a transaction does not hold up an open (it did: the migration
    check ran under BEGIN IMMEDIATE)."""
    path = tmp_path / "db.db"
    open_store(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")

        with open_store(path, busy_timeout_ms=50) as store:
            assert store.conn.execute("SELECT count(*) FROM machines").fetchone() == (0,)

        writer.execute("ROLLBACK")


def _opens_loading_sqlite_utils(path: Path) -> bool:
    script = "import sys\nfrom persistence import open_store\nopen_store(sys.argv[1]).close()\n"
    script += "print('sqlite_utils' in sys.modules)"
    command = [sys.executable, "-c", script, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_applying_to_a_database_migrated_meanwhile_needs_no_sqlite_utils(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process that lost the race to create a database does once it holds the lock."""
    with open_store(tmp_path / "db.db") as store:
        monkeypatch.setitem(sys.modules, "sqlite_utils", None)  # importing it now raises ImportError
        with store.transaction():
            SCHEMA.apply(store.conn)
        assert SCHEMA.applied(store.conn) == list(SCHEMA.names)


def test_sqlite_utils_is_loaded_to_migrate_only(tmp_path: Path) -> None:
    """Creating a database runs sqlite-utils' migrations; reopening it, up to date, does not import it."""
    path = tmp_path / "db.db"
    assert _opens_loading_sqlite_utils(path)
    assert not _opens_loading_sqlite_utils(path)


def test_a_migrations_table_of_another_shape_is_a_store_error(tmp_path: Path) -> None:
    """The first read of the schema maps sqlite3 errors like every other store call: no raw sqlite3 error."""
    path = tmp_path / "odd.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE _sqlite_migrations (what TEXT)")
        conn.commit()

    with pytest.raises(StoreError, match=r"odd\.db.*no such column"):
        open_store(path)


class _PreparingPlugin:
    """A sqlite-utils plugin, as a user may have installed one, that changes every connection it sees."""

    @sqlite_utils.hookimpl
    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys = OFF")


def test_the_connection_is_the_same_whether_a_migration_ran_or_not(tmp_path: Path) -> None:
    """No recursive triggers turned on, and installed sqlite-utils plugins do not touch our connection."""
    plugin = _PreparingPlugin()
    sqlite_utils.plugins.pm.register(plugin)
    try:
        settings = []
        for _ in range(2):  # created, then reopened current
            with open_store(tmp_path / "db.db") as store:
                pragmas = ("recursive_triggers", "foreign_keys")
                settings.append([store.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas])
                store.db.execute("SELECT 1")  # sqlite-utils' view leaves it alone too
                settings.append([store.conn.execute(f"PRAGMA {name}").fetchone()[0] for name in pragmas])
    finally:
        sqlite_utils.plugins.pm.unregister(plugin)

    assert settings == [[0, 1]] * 4


def test_integrity_check_is_empty_on_a_sound_database(store: Store) -> None:
    insert_machine(store.conn, _machine("m1"))
    store.conn.execute(
        "INSERT INTO journal (machine_id, seq, at, trigger, src, dst, payload) "
        "VALUES ('m1', 0, 't', 'create', NULL, 'Idle', '{}')"
    )

    assert store.integrity_check() == []


@pytest.mark.parametrize(
    "orphan",
    [
        "INSERT INTO journal (machine_id, seq, at, trigger, src, dst, payload) "
        "VALUES ('ghost', 0, 't', 'create', NULL, 'Idle', '{}')",
        "INSERT INTO emitted (idem_key, machine_id, seq, position, kind, payload, created_at) "
        "VALUES ('ghost/1/0/tick', 'ghost', 1, 0, 'tick', '{}', 't')",
    ],
    ids=["journal", "emitted"],
)
def test_integrity_check_reports_a_row_of_a_missing_machine(store: Store, orphan: str) -> None:
    store.conn.execute("PRAGMA foreign_keys = OFF")
    store.conn.execute(orphan)
    store.conn.execute("PRAGMA foreign_keys = ON")

    problems = store.integrity_check()

    assert len(problems) == 1
    assert "missing machines row" in problems[0]


def test_a_transaction_commits_when_the_block_ends(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        assert conn.in_transaction

    assert not store.conn.in_transaction
    with closing(sqlite3.connect(store.path)) as other:
        assert other.execute("SELECT x FROM scratch").fetchall() == [(1,)]


def test_a_snapshot_reads_one_view_of_the_database_while_others_commit(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    store.conn.execute("INSERT INTO scratch VALUES (1)")
    with store.snapshot() as conn, closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        assert conn.execute("SELECT x FROM scratch").fetchall() == [(1,)]
        other.execute("INSERT INTO scratch VALUES (2)")  # another process commits meanwhile
        assert conn.execute("SELECT x FROM scratch").fetchall() == [(1,)]
    assert not store.conn.in_transaction
    assert store.conn.execute("SELECT x FROM scratch ORDER BY x").fetchall() == [(1,), (2,)]


def test_nothing_is_written_inside_a_snapshot_and_none_is_taken_inside_a_transaction(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    inside_snapshot = pytest.raises(TransactionAborted, match="nothing may be written inside a snapshot")
    with store.snapshot(), inside_snapshot, store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
    inside_transaction = pytest.raises(TransactionAborted, match="cannot be taken inside a transaction")
    with store.transaction(), inside_transaction, store.snapshot():
        pass
    assert store.conn.execute("SELECT COUNT(*) FROM scratch").fetchone() == (0,)
    with store.transaction() as conn:  # the store writes again once the snapshot is over
        conn.execute("INSERT INTO scratch VALUES (1)")
    assert store.conn.execute("SELECT COUNT(*) FROM scratch").fetchone() == (1,)


def test_a_transaction_rolls_back_and_lets_the_original_exception_through(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    raised = Oops("in the block")

    with pytest.raises(Oops) as caught, store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        raise raised

    assert caught.value is raised
    assert not store.conn.in_transaction
    assert store.conn.execute("SELECT x FROM scratch").fetchall() == []


def test_a_failed_nested_block_rolls_back_only_itself(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        with pytest.raises(Oops), store.transaction():
            conn.execute("INSERT INTO scratch VALUES (2)")
            raise Oops
        assert conn.in_transaction
        conn.execute("INSERT INTO scratch VALUES (3)")

    assert store.conn.execute("SELECT x FROM scratch ORDER BY x").fetchall() == [(1,), (3,)]


def test_savepoints_nested_three_deep_roll_back_to_the_failed_level_only(store: Store) -> None:
    """Every savepoint shares one name: a rollback must still undo the innermost block only."""
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        with store.transaction():
            conn.execute("INSERT INTO scratch VALUES (2)")
            with pytest.raises(Oops), store.transaction():
                conn.execute("INSERT INTO scratch VALUES (3)")
                raise Oops
            conn.execute("INSERT INTO scratch VALUES (4)")
        with pytest.raises(Oops), store.transaction():
            with store.transaction():
                conn.execute("INSERT INTO scratch VALUES (5)")
            raise Oops
        conn.execute("INSERT INTO scratch VALUES (6)")

    assert store.conn.execute("SELECT x FROM scratch ORDER BY x").fetchall() == [(1,), (2,), (4,), (6,)]


def test_a_transaction_without_savepoints_runs_its_nested_blocks_as_one_unit(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    with store.transaction(savepoints=False) as conn:
        for x in (1, 2):
            with store.transaction():
                conn.execute(f"INSERT INTO scratch VALUES ({x})")
    store.conn.set_trace_callback(None)

    assert [s for s in statements if not s.startswith("INSERT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert store.conn.execute("SELECT x FROM scratch ORDER BY x").fetchall() == [(1,), (2,)]


def test_a_unit_whose_nested_block_failed_commits_nothing_even_if_the_error_was_caught(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with pytest.raises(TransactionAborted), store.transaction(savepoints=False) as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        with pytest.raises(Oops), store.transaction():
            conn.execute("INSERT INTO scratch VALUES (2)")
            raise Oops
        conn.execute("INSERT INTO scratch VALUES (3)")

    assert not store.conn.in_transaction
    assert store.conn.execute("SELECT x FROM scratch").fetchall() == []
    with store.transaction() as conn:  # the next transaction nests savepoints again
        conn.execute("INSERT INTO scratch VALUES (4)")
        with pytest.raises(Oops), store.transaction():
            conn.execute("INSERT INTO scratch VALUES (5)")
            raise Oops
    assert store.conn.execute("SELECT x FROM scratch").fetchall() == [(4,)]


def test_an_error_leaving_a_unit_rolls_it_back_and_passes_through(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with pytest.raises(Oops), store.transaction(savepoints=False) as conn:
        with store.transaction():
            conn.execute("INSERT INTO scratch VALUES (1)")
        raise Oops

    assert store.conn.execute("SELECT x FROM scratch").fetchall() == []


def test_a_sqlite_error_in_the_block_rolls_back_and_arrives_as_a_store_error(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER UNIQUE)")
    with pytest.raises(ConstraintViolation) as caught, store.transaction() as conn:
        conn.execute("INSERT INTO scratch VALUES (1)")
        conn.execute("INSERT INTO scratch VALUES (1)")

    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert not store.conn.in_transaction
    assert store.conn.execute("SELECT x FROM scratch").fetchall() == []


def test_a_nested_block_commits_only_with_the_outer_one(store: Store) -> None:
    store.conn.execute("CREATE TABLE scratch (x INTEGER)")
    with pytest.raises(Oops), store.transaction() as conn:
        with store.transaction():
            conn.execute("INSERT INTO scratch VALUES (1)")
        raise Oops

    assert store.conn.execute("SELECT x FROM scratch").fetchall() == []


def test_a_transaction_takes_the_write_lock_when_it_begins(store: Store) -> None:
    """BEGIN IMMEDIATE: a second writer is kept out before the first one has written anything."""
    other = closing(sqlite3.connect(store.path, timeout=0, isolation_level=None))
    with other as conn, store.transaction(), pytest.raises(sqlite3.OperationalError, match="locked"):
        conn.execute("BEGIN IMMEDIATE")


def test_update_machine_is_a_compare_and_swap(store: Store) -> None:
    insert_machine(store.conn, _machine("m1"))
    update_machine(store.conn, "m1", 0, "Counting", {"n": 2}, "t1")

    with pytest.raises(ConcurrentUpdate, match="version 0"):
        update_machine(store.conn, "m1", 0, "Done", {"n": 3}, "t2")

    assert load_machine(store.conn, "m1") == MachineRow(
        "m1", "counter", "Counting", 1, {"n": 2}, "2030-01-01T00:00:00.000000+00:00", "t1"
    )


def test_insert_and_load_machine_refuse_a_duplicate_and_a_missing_id(store: Store) -> None:
    insert_machine(store.conn, _machine("m1"))

    with pytest.raises(AlreadyExists):
        insert_machine(store.conn, _machine("m1", state="Other"))
    with pytest.raises(NotFound):
        load_machine(store.conn, "m2")
    assert load_machine(store.conn, "m1").state == "Idle"


def test_load_machines_returns_the_ones_that_exist_however_many_are_asked(store: Store) -> None:
    with store.transaction() as conn:
        for n in range(1_200):
            insert_machine(conn, _machine(f"m{n}", state=f"S{n % 3}"))
    wanted = [f"m{n}" for n in range(0, 2_400, 2)]  # 600 that exist, 600 that do not, past one query's ids

    rows = load_machines(store.conn, [*wanted, "m0"])

    assert sorted(rows) == sorted(f"m{n}" for n in range(0, 1_200, 2))
    assert all(rows[mid] == load_machine(store.conn, mid) for mid in rows)
    assert load_machines(store.conn, []) == {}


def test_machines_are_listed_and_counted_by_kind_and_state(store: Store) -> None:
    for machine_id, state, kind in [
        ("a", "Idle", "counter"),
        ("b", "Done", "counter"),
        ("c", "Idle", "upload"),
    ]:
        insert_machine(store.conn, _machine(machine_id, state, kind))

    assert [row.id for row in iter_machines(store.conn, kind="counter", states=["Idle"])] == ["a"]
    assert [row.id for row in iter_machines(store.conn)] == ["a", "b", "c"]
    assert count_by_state(store.conn, "counter") == {"Idle": 1, "Done": 1}


#: A mount table as /proc/self/mountinfo gives it: local root, an NFS home inside it, a tmpfs below that,
#: and an AFS cell whose mount point holds a space (written \040).
MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:48 / /home rw,relatime shared:30 - nfs4 fs.example.org:/home rw,vers=4.2
41 40 0:49 / /home/alice/scratch rw,nosuid shared:31 - tmpfs tmpfs rw
42 22 0:50 / /afs/cern\\040cell rw master:2 - afs AFS rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/var/lib/failover/failover.db", "ext4"),
        ("/home/alice/.failover/failover.db", "nfs4"),
        ("/home", "nfs4"),
        ("/homework/failover.db", "ext4"),
        ("/home/alice/scratch/failover.db", "tmpfs"),
        ("/afs/cern cell/user/a/alice/failover.db", "afs"),
    ],
)
def test_the_filesystem_of_a_path_is_its_longest_mount_point(tmp_path: Path, path: str, fstype: str) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    assert filesystem_type(path, str(table)) == fstype


def test_without_a_mount_table_the_filesystem_is_unknown(tmp_path: Path) -> None:
    assert filesystem_type("/home/alice/failover.db", str(tmp_path / "missing")) is None


def test_a_database_on_a_network_filesystem_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite on NFS: two hosts sharing the workspace corrupt it. Refused with the way out, nothing made."""
    monkeypatch.setattr(filesystems, "filesystem_type", lambda path: "nfs4")
    monkeypatch.delenv(filesystems.ALLOW_NETWORK_DATABASE, raising=False)
    with pytest.raises(NetworkFilesystem) as caught:
        open_store(tmp_path / "failover.db")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'failover.db'}: the database is on a nfs4 filesystem")
    assert "put it on a local disk" in message and "FAILOVER_ALLOW_NETWORK_DATABASE=1" in message
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(filesystems.ALLOW_NETWORK_DATABASE, "1")
    with closing(open_store(tmp_path / "failover.db")) as store:
        assert store.conn.execute("SELECT 1").fetchone() == (1,)


def test_the_test_machines_own_disk_is_not_a_network_filesystem(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) is not None
    assert network_filesystem(tmp_path) is None
