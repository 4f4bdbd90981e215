"""
Everything an upload or the executor talks to: the database, storage elements, catalogs and time.

Tests and embedding code build an :class:`Environment` directly (with fakes from
:mod:`failover.testing` where wanted); the configuration module builds one from a TOML file.
"""

from __future__ import annotations

import getpass
import grp
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from failover.catalog import CatalogSet
from failover.errors import UnknownStorageElement
from failover.request_store import RequestSink, RequestStore
from failover.storage import StorageElement
from failover.validation import CatalogChoice
from fsm.clock import Clock, utc_now
from fsm.engine import Engine
from persistence.db import Store
from persistence.requests import RequestHeader
from states import DIRAC_PUT_RETRY, UPLOAD_MACHINE, RetryPolicy

__all__ = ["Environment", "default_owner", "request_owner"]


def default_owner() -> tuple[str, str]:
    """The login name and its primary group: the request owner when the configuration names none."""
    user = getpass.getuser()
    try:
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        group = str(os.getgid())
    return user, group


def request_owner(owner: str = "", owner_group: str = "") -> tuple[str, str]:
    """The (owner, owner group) of new requests: the configured ones, else the login's."""
    login, group = default_owner() if not (owner and owner_group) else ("", "")
    return owner or login, owner_group or group


@dataclass
class Environment:
    """
    The outside world of an upload.

    Args:
        store: the failover database (machines, journal, request store).
        storage: the configured storage elements, by name.
        catalogs: the configured catalogs, in order.
        clock: where every time comes from.
        sleeper: how the synchronous API waits between put attempts (injected so tests never sleep).
        put_retry: the wait schedule for retrying a put on the only SE.
        owner: request owner; the login name when empty.
        owner_group: request owner group; the login's primary group when empty.
    """

    store: Store
    storage: Mapping[str, StorageElement]
    catalogs: CatalogSet
    clock: Clock = utc_now
    sleeper: Callable[[float], None] = time.sleep
    put_retry: RetryPolicy = DIRAC_PUT_RETRY
    owner: str = ""
    owner_group: str = ""
    _owner: tuple[str, str] = field(init=False, repr=False, default=("", ""))

    def __post_init__(self) -> None:
        self._owner = request_owner(self.owner, self.owner_group)

    @property
    def request_owner(self) -> tuple[str, str]:
        """The (owner, owner group) new requests get."""
        return self._owner

    @cached_property
    def default_request(self) -> RequestHeader:
        """Where uploads that name no request put their operations: one request per environment."""
        owner, group = self.request_owner
        return RequestHeader(f"session:{uuid.uuid4().hex}", "noname_request", owner, group, "failover")

    @cached_property
    def uploads(self) -> Engine:
        """The engine of the upload machine, writing emitted operations into the request store."""
        return Engine(UPLOAD_MACHINE, self.store, clock=self.clock, sink=RequestSink())

    @cached_property
    def requests(self) -> RequestStore:
        """The request store."""
        return RequestStore(self.store, clock=self.clock)

    def close(self) -> None:
        """Close the database and the catalogs' connections (a catalog reopens on its next call)."""
        self.store.close()
        for catalog in self.catalogs:
            close = getattr(catalog, "close", None)  # not part of the FileCatalog interface
            if callable(close):
                close()

    def se(self, name: str) -> StorageElement:
        """
        A configured storage element by name.

        Raises:
            UnknownStorageElement: no SE has that name.
        """
        try:
            return self.storage[name.strip()]
        except KeyError:
            raise UnknownStorageElement(f"Unknown storage element {name!r}", se=name) from None

    def catalog_choices(self) -> list[CatalogChoice]:
        """The configured catalogs as the input validator sees them."""
        return [CatalogChoice(catalog.name, catalog.master) for catalog in self.catalogs]
