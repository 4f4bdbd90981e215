"""The single boundary where foreign storage exceptions become failover errors."""

from __future__ import annotations

import builtins
import errno
import socket

import pytest
from fsspec.exceptions import FSTimeoutError

from failover.errors import (
    FailoverError,
    PermissionDenied,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
)
from failover.storage.errors import map_storage_errors


def _os_error(code: int) -> OSError:
    return OSError(code, errno.errorcode[code])


MAPPINGS = [
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), SourceMissing),
    (PermissionError(errno.EACCES, "Permission denied"), PermissionDenied),
    (_os_error(errno.EACCES), PermissionDenied),
    (_os_error(errno.EPERM), PermissionDenied),
    (_os_error(errno.ENOSPC), StorageRefused),
    (_os_error(errno.EDQUOT), StorageRefused),
    (_os_error(errno.ENAMETOOLONG), StorageRefused),
    (_os_error(errno.EFBIG), StorageRefused),
    (_os_error(errno.EROFS), StorageRefused),
    (FileExistsError(errno.EEXIST, "File exists"), StorageRefused),
    (IsADirectoryError(errno.EISDIR, "Is a directory"), StorageRefused),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory"), StorageRefused),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), StorageUnavailable),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), StorageUnavailable),
    (TimeoutError("timed out"), StorageUnavailable),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), StorageUnavailable),
    (FSTimeoutError(), StorageUnavailable),
    (_os_error(errno.EIO), StorageUnavailable),
    (OSError("no errno at all"), StorageUnavailable),
    (ValueError("a backend bug"), StorageUnavailable),
    (NotImplementedError("a backend without this call"), StorageUnavailable),
]


@pytest.mark.parametrize(("foreign", "expected"), MAPPINGS, ids=lambda value: type(value).__name__)
def test_foreign_exception_is_mapped(foreign: Exception, expected: type[FailoverError]) -> None:
    """Each foreign exception becomes exactly the class of its rule, with SE, LFN and cause kept."""
    with pytest.raises(FailoverError) as caught, map_storage_errors("se-a", "/vo/x.root"):
        raise foreign
    assert type(caught.value) is expected
    assert (caught.value.se, caught.value.lfn) == ("se-a", "/vo/x.root")
    assert caught.value.__cause__ is foreign
    assert "se-a" in str(caught.value)


def _builtin_os_errors() -> list[type[OSError]]:
    return [
        value for value in vars(builtins).values() if isinstance(value, type) and issubclass(value, OSError)
    ]


@pytest.mark.parametrize("kind", _builtin_os_errors(), ids=lambda kind: kind.__name__)
def test_every_builtin_os_error_is_mapped(kind: type[OSError]) -> None:
    """No built-in OSError subclass escapes the boundary unmapped."""
    with pytest.raises(FailoverError), map_storage_errors("se-a"):
        raise kind(errno.EIO, "boom")


def test_failover_error_passes_through_unchanged() -> None:
    original = TransferCorrupted("size differs", se="se-b", lfn="/vo/y")
    with pytest.raises(TransferCorrupted) as caught, map_storage_errors("se-a", "/vo/x"):
        raise original
    assert caught.value is original
    assert caught.value.se == "se-b"


def test_lfn_is_optional() -> None:
    with pytest.raises(StorageUnavailable) as caught, map_storage_errors("se-a"):
        raise ConnectionError("down")
    assert caught.value.lfn is None


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_are_not_mapped(signal: type[BaseException]) -> None:
    with pytest.raises(signal), map_storage_errors("se-a"):
        raise signal()


def test_no_exception_leaves_the_block_alone() -> None:
    with map_storage_errors("se-a"):
        value = 42
    assert value == 42
