"""
The one place where a catalog's foreign errors become failover errors.

Every call into a catalog's database runs inside :func:`map_catalog_errors`. The mapping is classified
by what the caller does next (STYLE rule 4):

::

    sqlite3.IntegrityError     → RegistrationRefused   the catalog's constraints refused the write
    sqlite3.OperationalError   → CatalogUnavailable    cannot open, locked beyond the timeout, I/O, full
    sqlite3.DatabaseError      → PermanentError        damaged, or not a catalog: an operator must act
    sqlite3.Error / Warning    → PermanentError        the catalog was misused (a bug)
    ConstraintViolation        → RegistrationRefused   (the store's name for an IntegrityError)
    StoreUnavailable           → CatalogUnavailable    (the store's name for an OperationalError)
    persistence StoreError     → PermanentError        e.g. written by a newer failover: upgrade

A :class:`~failover.errors.PermanentError` that is not a :class:`~failover.errors.RegistrationRefused`
means the catalog gave no answer and will not until someone repairs or upgrades it; it is never a
verdict on the file.
"""

from __future__ import annotations

import sqlite3

from failover.errors import (
    CatalogUnavailable,
    ErrorMapping,
    FailoverError,
    PermanentError,
    RegistrationRefused,
)
from persistence.errors import ConstraintViolation, StoreError, StoreUnavailable

__all__ = ["CatalogErrorMapping", "map_catalog_errors"]

#: Most specific first: the first entry the exception is an instance of wins.
_MAPPING: tuple[tuple[type[Exception], type[FailoverError], str], ...] = (
    (sqlite3.IntegrityError, RegistrationRefused, "the catalog's constraints refused the write"),
    (sqlite3.OperationalError, CatalogUnavailable, "cannot use the catalog database"),
    (sqlite3.DatabaseError, PermanentError, "the catalog database is damaged or not a catalog"),
    (sqlite3.Error, PermanentError, "the catalog database was misused"),
    (sqlite3.Warning, PermanentError, "the catalog database was misused"),
    (ConstraintViolation, RegistrationRefused, "the catalog's constraints refused the write"),
    (StoreUnavailable, CatalogUnavailable, "cannot use the catalog database"),
    (StoreError, PermanentError, "the catalog database cannot be used"),
)


def _describe(exc: Exception) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{name}: {exc}" if name else f"{type(exc).__name__}: {exc}"


def map_catalog_errors(catalog: str, lfn: str | None = None) -> CatalogErrorMapping:
    """
    Turn ``sqlite3`` and persistence errors raised in the block into failover errors.

    Failover errors raised in the block pass through unchanged.

    Args:
        catalog: the catalog's name, set on the raised error.
        lfn: the LFN the block works on, if any, set on the raised error.

    Raises:
        RegistrationRefused: a database constraint refused the write.
        CatalogUnavailable: the catalog database cannot be opened or used right now.
        PermanentError: the catalog database is damaged, too new, or misused.
    """
    return CatalogErrorMapping(catalog, lfn)


class CatalogErrorMapping(ErrorMapping):
    """The context manager of :func:`map_catalog_errors`."""

    __slots__ = ("catalog", "lfn")

    def __init__(self, catalog: str, lfn: str | None) -> None:
        self.catalog = catalog
        self.lfn = lfn

    def translate(self, exc: Exception) -> FailoverError | None:
        """The failover error of the first mapping entry ``exc`` is an instance of (None: none is)."""
        for foreign, ours, label in _MAPPING:
            if isinstance(exc, foreign):
                message = f"catalog {self.catalog!r}: {label} ({_describe(exc)})"
                return ours(message, catalog=self.catalog, lfn=self.lfn)
        return None
