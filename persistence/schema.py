"""
A database's schema: a named migration set whose state can be read without importing sqlite-utils.

Migrations run through sqlite-utils' :class:`~sqlite_utils.Migrations`, which records each applied
migration in the ``_sqlite_migrations`` table. Importing sqlite-utils (with its plugin machinery) takes
about 45 ms, a fifth of a one-file ``failover upload``, while a database already up to date, the common
case, needs none of it: :meth:`Schema.is_current` reads that table with plain ``sqlite3``, and sqlite-utils
is imported only when a migration has to run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from persistence.errors import SchemaTooNew

if TYPE_CHECKING:
    import sqlite_utils
    from sqlite_utils import Migrations

__all__ = ["MIGRATIONS_TABLE", "Migration", "Schema", "sqlite_utils_view"]

#: Where sqlite-utils records applied migrations (``migration_set``, ``name``, ``applied_at``).
MIGRATIONS_TABLE = "_sqlite_migrations"

#: One migration: a function that changes the schema; its name is the function's name.
Migration = Callable[["sqlite_utils.Database"], None]


def sqlite_utils_view(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """
    sqlite-utils' view of ``conn``, leaving the connection as it is (imports sqlite-utils).

    sqlite-utils would otherwise turn on recursive triggers and let any installed sqlite-utils plugin
    prepare the connection: a database's settings must not depend on whether a migration ran when it
    was opened, nor on the plugins of the machine.
    """
    import sqlite_utils

    return sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)


@dataclass(frozen=True)
class Schema:
    """
    A migration set: its name and its migrations in order. Migrations are append-only: a released one is
    never edited, a change is a new one.

    Args:
        name: the migration set's name in ``_sqlite_migrations``.
        steps: the migrations, oldest first.
    """

    name: str
    steps: tuple[Migration, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The migrations' names, oldest first."""
        return tuple(step.__name__ for step in self.steps)

    @cached_property
    def migrations(self) -> Migrations:
        """The set as sqlite-utils' :class:`~sqlite_utils.Migrations` (imports sqlite-utils)."""
        from sqlite_utils import Migrations

        migrations = Migrations(self.name)
        for step in self.steps:
            migrations()(step)
        return migrations

    def applied(self, conn: sqlite3.Connection) -> list[str]:
        """The names of the set's migrations the database has applied, in the order applied."""
        try:
            rows = conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid", (self.name,)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a new database
                return []
            raise
        return [name for (name,) in rows]

    def is_current(self, conn: sqlite3.Connection) -> bool:
        """Whether the database has applied exactly this set's migrations: nothing to apply or refuse."""
        return sorted(self.applied(conn)) == sorted(self.names)

    def apply(self, conn: sqlite3.Connection) -> None:
        """
        Apply the set's pending migrations in order; sqlite-utils is imported only if one is pending.

        Raises:
            SchemaTooNew: the database has applied migrations of this set that this version does not know.
        """
        applied = self.applied(conn)
        known = set(self.names)
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise SchemaTooNew(
                f"database schema is newer than this failover (unknown migrations: {', '.join(unknown)}); "
                "upgrade failover to open it"
            )
        # Processes opening a new database together all find it out of date; all but the first find
        # it migrated once they hold the lock, and need no sqlite-utils.
        if set(applied) != known:
            self.migrations.apply(sqlite_utils_view(conn))
