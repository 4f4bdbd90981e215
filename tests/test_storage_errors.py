"""The single boundary where foreign storage exceptions become failover errors."""

from __future__ import annotations

import builtins
import errno
import importlib
import socket
from collections.abc import Callable
from typing import Any

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
from failover.storage.errors import (
    HTTP_ERRNOS,
    XROOTD_SERVER_ERRNOS,
    map_storage_errors,
    xrootd_os_error,
)


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


# Protocol clients: XRootD statuses, HTTP statuses (WebDAV, S3), webdav4, httpx and botocore exceptions.


# The client libraries are imported when the tests run, not when they are collected: they weigh ~60 MB,
# and a process forked from pytest (tests/test_memory.py's) starts with pytest's peak RSS.


def _httpx() -> Any:
    return importlib.import_module("httpx")


def _webdav() -> Any:
    return importlib.import_module("webdav4.client")


def _botocore() -> Any:
    return importlib.import_module("botocore.exceptions")


def _s3fs() -> Any:
    return importlib.import_module("s3fs.errors")


def _http_error(status: int) -> Any:
    httpx = _httpx()
    request = httpx.Request("PUT", "http://127.0.0.1/se/vo/x.root")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError(f"{status}", request=request, response=response)


def _client_error(code: str, status: int) -> Exception:
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error: Exception = _botocore().ClientError(response, "PutObject")
    return error


PROTOCOL_MAPPINGS = [
    # XRootD: (server error code, client status code)
    ("xrootd-3011", lambda: xrootd_os_error(3011, 400, "no such file", "/x"), SourceMissing),
    ("xrootd-3010", lambda: xrootd_os_error(3010, 400, "not authorized", "/x"), PermissionDenied),
    ("xrootd-3030", lambda: xrootd_os_error(3030, 400, "auth failed", "/x"), PermissionDenied),
    ("xrootd-client-204", lambda: xrootd_os_error(0, 204, "auth failed", "/x"), PermissionDenied),
    ("xrootd-3009", lambda: xrootd_os_error(3009, 400, "no space", "/x"), StorageRefused),
    ("xrootd-3021", lambda: xrootd_os_error(3021, 400, "over quota", "/x"), StorageRefused),
    ("xrootd-3018", lambda: xrootd_os_error(3018, 400, "file exists", "/x"), StorageRefused),
    ("xrootd-3016", lambda: xrootd_os_error(3016, 400, "is a directory", "/x"), StorageRefused),
    ("xrootd-3005", lambda: xrootd_os_error(3005, 400, "not a directory", "/x"), StorageRefused),
    ("xrootd-3025", lambda: xrootd_os_error(3025, 400, "read-only", "/x"), StorageRefused),
    ("xrootd-3002", lambda: xrootd_os_error(3002, 400, "name too long", "/x"), StorageRefused),
    ("xrootd-3007", lambda: xrootd_os_error(3007, 400, "I/O error", "/x"), StorageUnavailable),
    ("xrootd-3012", lambda: xrootd_os_error(3012, 400, "server error", "/x"), StorageUnavailable),
    ("xrootd-3024", lambda: xrootd_os_error(3024, 400, "overloaded", "/x"), StorageUnavailable),
    ("xrootd-client-108", lambda: xrootd_os_error(0, 108, "Connection error", "/x"), StorageUnavailable),
    ("xrootd-client-206", lambda: xrootd_os_error(0, 206, "Operation expired", "/x"), StorageUnavailable),
    ("xrootd-client-104", lambda: xrootd_os_error(0, 104, "Socket disconnected", "/x"), StorageUnavailable),
    ("xrootd-client-999", lambda: xrootd_os_error(0, 999, "something new", "/x"), StorageUnavailable),
    # WebDAV over httpx, and webdav4's own classes
    ("httpx-401", lambda: _http_error(401), PermissionDenied),
    ("httpx-403", lambda: _http_error(403), PermissionDenied),
    ("httpx-404", lambda: _http_error(404), SourceMissing),
    ("httpx-409", lambda: _http_error(409), StorageRefused),
    ("httpx-413", lambda: _http_error(413), StorageRefused),
    ("httpx-507", lambda: _http_error(507), StorageRefused),
    ("httpx-500", lambda: _http_error(500), StorageUnavailable),
    ("httpx-503", lambda: _http_error(503), StorageUnavailable),
    ("webdav4-HTTPError-403", lambda: _webdav().HTTPError(_http_error(403).response), PermissionDenied),
    ("webdav4-HTTPError-502", lambda: _webdav().HTTPError(_http_error(502).response), StorageUnavailable),
    ("webdav4-ResourceNotFound", lambda: _webdav().ResourceNotFound("/se/x"), SourceMissing),
    ("webdav4-ForbiddenOperation", lambda: _webdav().ForbiddenOperation("no"), PermissionDenied),
    ("webdav4-InsufficientStorage", lambda: _webdav().InsufficientStorage("/se/x"), StorageRefused),
    ("webdav4-ResourceConflict", lambda: _webdav().ResourceConflict("parent is a file"), StorageRefused),
    ("webdav4-ResourceAlreadyExists", lambda: _webdav().ResourceAlreadyExists("/se/x"), StorageRefused),
    ("webdav4-IsACollectionError", lambda: _webdav().IsACollectionError("/se/x"), StorageRefused),
    ("webdav4-ResourceLocked", lambda: _webdav().ResourceLocked("locked"), StorageUnavailable),
    ("webdav4-BadGatewayError", lambda: _webdav().BadGatewayError(), StorageUnavailable),
    ("httpx-ConnectError", lambda: _httpx().ConnectError("Connection refused"), StorageUnavailable),
    ("httpx-ReadTimeout", lambda: _httpx().ReadTimeout("timed out"), StorageUnavailable),
    (
        "httpx-RemoteProtocolError",
        lambda: _httpx().RemoteProtocolError("peer closed connection"),
        StorageUnavailable,
    ),
    # S3: botocore as it is, and as s3fs translates it
    ("botocore-NoSuchKey", lambda: _client_error("NoSuchKey", 404), SourceMissing),
    ("botocore-AccessDenied", lambda: _client_error("AccessDenied", 403), PermissionDenied),
    ("botocore-InvalidAccessKeyId", lambda: _client_error("InvalidAccessKeyId", 403), PermissionDenied),
    ("botocore-SignatureDoesNotMatch", lambda: _client_error("SignatureDoesNotMatch", 403), PermissionDenied),
    ("botocore-ExpiredToken", lambda: _client_error("ExpiredToken", 400), PermissionDenied),
    ("botocore-EntityTooLarge", lambda: _client_error("EntityTooLarge", 400), StorageRefused),
    ("botocore-KeyTooLongError", lambda: _client_error("KeyTooLongError", 400), StorageRefused),
    ("botocore-QuotaExceeded", lambda: _client_error("QuotaExceeded", 403), StorageRefused),
    ("botocore-SlowDown", lambda: _client_error("SlowDown", 503), StorageUnavailable),
    ("botocore-InternalError", lambda: _client_error("InternalError", 500), StorageUnavailable),
    ("botocore-RequestTimeout", lambda: _client_error("RequestTimeout", 400), StorageUnavailable),
    (
        "s3fs-EntityTooLarge",
        lambda: _s3fs().translate_boto_error(_client_error("EntityTooLarge", 400)),
        StorageRefused,
    ),
    (
        "s3fs-AccessDenied",
        lambda: _s3fs().translate_boto_error(_client_error("AccessDenied", 403)),
        PermissionDenied,
    ),
    ("s3fs-NoSuchKey", lambda: _s3fs().translate_boto_error(_client_error("NoSuchKey", 404)), SourceMissing),
    (
        "s3fs-SlowDown",
        lambda: _s3fs().translate_boto_error(_client_error("SlowDown", 503)),
        StorageUnavailable,
    ),
    ("botocore-NoCredentialsError", lambda: _botocore().NoCredentialsError(), PermissionDenied),
    (
        "botocore-EndpointConnectionError",
        lambda: _botocore().EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        StorageUnavailable,
    ),
    (
        "botocore-ConnectTimeoutError",
        lambda: _botocore().ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        StorageUnavailable,
    ),
    (
        "botocore-ReadTimeoutError",
        lambda: _botocore().ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        StorageUnavailable,
    ),
]


@pytest.mark.parametrize(
    ("make", "expected"),
    [entry[1:] for entry in PROTOCOL_MAPPINGS],
    ids=[entry[0] for entry in PROTOCOL_MAPPINGS],
)
def test_protocol_exception_is_mapped(make: Callable[[], Exception], expected: type[FailoverError]) -> None:
    """XRootD and HTTP statuses, S3 error codes and client exceptions land in the class of their rule."""
    foreign = make()
    with pytest.raises(FailoverError) as caught, map_storage_errors("se-a", "/vo/x.root"):
        raise foreign
    assert type(caught.value) is expected
    assert caught.value.__cause__ is foreign


def test_xrootd_status_becomes_the_oserror_its_errno_names() -> None:
    """Like fsspec drivers, the XRootD filesystem raises OSError subclasses; the status is kept as a note."""
    missing = xrootd_os_error(3011, 400, "[ERROR] no such file\n", "/se/x")
    assert isinstance(missing, FileNotFoundError) and missing.filename == "/se/x"
    assert missing.__notes__ == ["XRootD status: server errno 3011, client code 400"]
    assert isinstance(xrootd_os_error(0, 108, "", "/se/x"), ConnectionRefusedError)


#: XRootD server codes (XProtocol.hh) deliberately left to the default, StorageUnavailable: a problem of
#: the request or the server, not of the SE's space or names; another attempt or SE may do better.
XROOTD_UNAVAILABLE = {3001, 3004, 3006, 3017, 3020, 3022, 3023, 3026, 3027, 3029, 3031, 3032, 3033}


@pytest.mark.parametrize("code", range(3000, 3035))
def test_every_xrootd_server_code_is_decided(code: int) -> None:
    """Every XErrorCode is either mapped to an errno or deliberately left unavailable, never forgotten."""
    assert (code in XROOTD_SERVER_ERRNOS) != (code in XROOTD_UNAVAILABLE)


def test_every_webdav4_exception_is_decided() -> None:
    """A new webdav4 exception class fails here until it is mapped or deliberately left unavailable."""
    webdav = _webdav()
    classes = {
        name
        for name, value in vars(webdav).items()
        if isinstance(value, type)
        and issubclass(value, webdav.ClientError)
        and value is not webdav.ClientError
    }
    left_unavailable = {"BadGatewayError", "MultiStatusError", "ResourceLocked", "HTTPError"}
    mapped = {"ResourceNotFound", "ForbiddenOperation", "ResourceAlreadyExists", "InsufficientStorage"}
    mapped |= {"ResourceConflict", "IsACollectionError", "IsAResourceError"}
    assert classes == left_unavailable | mapped
    for status in HTTP_ERRNOS:
        assert 400 <= status < 600


class _SilentHandle:
    """An XRootD file handle whose writes are sent but never answered (a lost server, say)."""

    class Status:
        ok = True

    def write(self, chunk: bytes, offset: int, size: int, timeout: int, callback: Any) -> Any:
        return self.Status()

    def close(self, timeout: int) -> tuple[Any, None]:
        return self.Status(), None


def test_an_xrootd_write_never_answered_ends_in_a_timeout_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes in flight fill up; the next one, and close, give up after the timeout and its grace."""
    from failover.storage import xrootd_fs

    monkeypatch.setattr(xrootd_fs, "_ANSWER_GRACE", 0.05)
    writer = xrootd_fs.XRootDWriter(_SilentHandle(), "root://host//f", timeout=0)
    for _ in range(xrootd_fs._WRITES_IN_FLIGHT):
        writer.write(b"chunk")
    with pytest.raises(OSError) as caught:
        writer.write(b"one too many")
    assert caught.value.errno == errno.ETIMEDOUT and "no answer to a write" in str(caught.value)
    with pytest.raises(OSError):
        writer.close()
    assert writer.closed
    with pytest.raises(StorageUnavailable), map_storage_errors("SE-X", "/vo/f"):
        raise caught.value
