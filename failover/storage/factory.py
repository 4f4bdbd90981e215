"""
Which storage element class serves a URL: chosen by the URL's protocol.

Protocols with a class of their own (XRootD, S3, WebDAV) are looked up in :data:`STORAGE_CLASSES`; any
other URL (``file://``, a plain path, ``memory://``, any fsspec protocol) gets the generic
:class:`~failover.storage.StorageElement`. Each class is imported only when a URL needs it, so the
protocol libraries stay optional.

>>> storage_element("SE-A", "memory://se-a").__class__.__name__
'StorageElement'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from failover.errors import InvalidInput, StorageUnavailable
from failover.storage.element import StorageElement
from failover.storage.remote import RemoteStorageElement

__all__ = ["SECRET_IN_URL", "STORAGE_CLASSES", "password_in_url", "storage_class", "storage_element"]

#: ``protocol -> "module:Class"`` of the storage elements with a class of their own.
STORAGE_CLASSES: Mapping[str, str] = {
    "root": "failover.storage.xrootd:XRootDStorageElement",
    "xroot": "failover.storage.xrootd:XRootDStorageElement",
    "s3": "failover.storage.s3:S3StorageElement",
    "s3a": "failover.storage.s3:S3StorageElement",
    "dav": "failover.storage.webdav:WebDavStorageElement",
    "davs": "failover.storage.webdav:WebDavStorageElement",
}


#: Why a URL holding a password is refused, and what to do instead.
SECRET_IN_URL = (
    "the URL {url!r} holds a password, which would be written into every replica's PFN, the catalogs and "
    "the journal: give the credentials as the SE's options instead (username and password for WebDAV, "
    "key and secret for S3)"
)


def _protocol(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    return scheme.lower() if separator and "::" not in scheme else "file"


def password_in_url(url: str) -> str | None:
    """
    The URL with its password masked, if it holds one (``davs://alice:***@host/path``); else None.

    An SE's URL is the start of every replica's PFN: a password in it would be written into the catalogs,
    the journal, the requests and every report. Credentials go in the SE's options instead.
    """
    for part in url.split("::"):
        try:
            parts = urlsplit(part)
            password = parts.password
        except ValueError:  # not a URL this check can read; the SE's own parsing reports it
            continue
        if password is not None:
            userinfo, _, host = parts.netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            return url.replace(part, parts._replace(netloc=f"{user}:***@{host}").geturl(), 1)
    return None


def storage_class(url: str) -> type[StorageElement]:
    """
    Return the storage element class for ``url``'s protocol.

    Args:
        url: the SE's URL.

    Returns:
        The class; :class:`~failover.storage.StorageElement` for protocols without one of their own.
    """
    target = STORAGE_CLASSES.get(_protocol(url))
    if target is None:
        return StorageElement
    module, _, name = target.partition(":")
    cls: type[StorageElement] = getattr(importlib.import_module(module), name)
    return cls


def storage_element(
    name: str,
    url: str,
    options: Mapping[str, Any] | None = None,
    *,
    create_root: bool = True,
    mount: str | None = None,
) -> StorageElement:
    """
    Build the storage element ``name`` at ``url``, of the class its protocol calls for.

    Args:
        name: the SE's name.
        url: the URL of the SE's root (``root://``, ``s3://``, ``dav(s)://``, ``file://``, a path...).
        options: the SE's options (credentials, endpoint, timeouts, fsspec storage options).
        create_root: for a root not on a network protocol (``file://``, a path, an fsspec URL): create it
            now if it is missing, or (False) never, a missing local root making the SE unavailable
            (:class:`~failover.storage.StorageElement`). A remote SE's root is made by its first put.
        mount: for a local root, the mount point that must be mounted for the SE to be used (see
            :class:`~failover.storage.StorageElement`).

    Returns:
        The storage element.

    Raises:
        InvalidInput: the name is empty, or the URL is malformed, of an unknown protocol, or holds a
            password (:func:`password_in_url`).
        StorageUnavailable: the protocol's client cannot be set up (its library is not installed, for
            instance).
    """
    masked = password_in_url(url)
    if masked is not None:
        raise InvalidInput(f"{name}: {SECRET_IN_URL.format(url=masked)}", se=name.strip())
    try:
        cls = storage_class(url)
    except ImportError as exc:
        message = f"{name}: the client library for {url!r} is not installed: {exc}"
        raise StorageUnavailable(message, se=name.strip()) from exc
    if issubclass(cls, RemoteStorageElement):
        if mount is not None:
            raise InvalidInput(f"{name}: mount {mount!r} is for a local root, not {url}", se=name.strip())
        return cls(name, url, options=options)
    return cls(name, url, options=options, create_root=create_root, mount=mount)
