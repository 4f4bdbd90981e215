"""
Session fixtures for the real storage servers of ``tests/servers.py``, loaded with
``pytest_plugins = ["conftest_servers"]`` by the modules that need them.

A server starts only when a test asks for it, once per session, and is stopped when the session ends.
Tests share a server but never a root: each builds its SEs under a fresh ``servers.unique_root``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import S3Server, WebDavServer, XRootDServer, s3_server, webdav_server, xrootd_server


@pytest.fixture(scope="session")
def xrootd() -> Iterator[XRootDServer]:
    """One XRootD server (adler32 checksums) for the session; tests that stop it start their own."""
    with xrootd_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session: it takes ~2 s and ~600 MB to start, so it is shared."""
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def webdav() -> Iterator[WebDavServer]:
    """One WsgiDAV server for the session."""
    with webdav_server() as server:
        yield server
