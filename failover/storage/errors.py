"""
The one boundary where exceptions from fsspec, its backends, the protocol clients and the OS become
failover's errors.

Every call that touches a storage element runs inside :func:`map_storage_errors`, so callers only ever see
the typed tree of :mod:`failover.errors` and decide what to do next by class, never by message text.

A foreign exception is first read as a POSIX errno: an ``OSError``'s own; an XRootD status's through
:data:`XROOTD_SERVER_ERRNOS` / :data:`XROOTD_CLIENT_ERRNOS` (see :func:`xrootd_os_error`); an HTTP status
(WebDAV through webdav4 or httpx, S3 through botocore) through :data:`HTTP_ERRNOS`, an S3 error code
through :data:`S3_CODE_ERRNOS` first; a webdav4 or botocore exception class through its own table. The
first matching rule then wins, most specific first:

=====================================================================  ======================
foreign exception                                                      becomes
=====================================================================  ======================
:class:`~failover.errors.FailoverError`                                itself, unchanged
``FileNotFoundError``, ``ENOENT`` (XRootD ``kXR_NotFound``, HTTP 404   ``SourceMissing``
and 410, S3 ``NoSuchKey``, webdav4 ``ResourceNotFound``)
``PermissionError``, ``EACCES`` or ``EPERM`` (``kXR_NotAuthorized``,   ``PermissionDenied``
HTTP 401 and 403, S3 ``AccessDenied``, botocore ``NoCredentialsError``,
webdav4 ``ForbiddenOperation``)
``ENOSPC``, ``EDQUOT``, ``ENAMETOOLONG``, ``EFBIG``, ``EROFS``,        ``StorageRefused``
``EMSGSIZE``, ``EEXIST``, ``EISDIR``, ``ENOTDIR``, ``ENOTEMPTY``;
``FileExistsError``, ``IsADirectoryError``, ``NotADirectoryError``
(``kXR_NoSpace``, ``kXR_overQuota``, ``kXR_ItExists``, HTTP 409, 413,
507, S3 ``EntityTooLarge``, webdav4 ``InsufficientStorage``): the SE
refuses the name, the size or the space, or holds something else there
:class:`CopyDiffers` (a local copy read back is not the source)        ``TransferCorrupted``
``ConnectionError``, ``TimeoutError``, socket errors, XRootD           ``StorageUnavailable``
connection and timeout statuses, HTTP 5xx, httpx transport errors,
botocore endpoint errors, any other ``OSError``, any other
``Exception`` from the storage layer
=====================================================================  ======================

Optional protocol libraries are never imported here: their exception classes are looked up only when
their module is already loaded, since an exception cannot come from a module nobody imported.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Mapping
from typing import Any

from failover.errors import (
    ErrorMapping,
    FailoverError,
    PermissionDenied,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
    TransferCorrupted,
)

__all__ = [
    "HTTP_ERRNOS",
    "CopyDiffers",
    "S3_CODE_ERRNOS",
    "StorageErrorMapping",
    "XROOTD_CLIENT_ERRNOS",
    "XROOTD_SERVER_ERRNOS",
    "map_storage_errors",
    "xrootd_os_error",
]

_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
_REFUSED_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENAMETOOLONG,
        errno.EFBIG,
        errno.EROFS,
        errno.EMSGSIZE,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENOTEMPTY,
    }
)
# The name is taken by something that is not the object we want: another file, a directory, or a file
# where a directory is needed. Trying again will not help; another SE may.
_NAME_CONFLICTS = (FileExistsError, IsADirectoryError, NotADirectoryError)


class CopyDiffers(Exception):
    """The bytes a copy wrote, read back, are not the source's (a kernel or filesystem copy went wrong)."""


#: XRootD server error codes (``XErrorCode`` in XProtocol.hh) and the POSIX errno each stands for.
XROOTD_SERVER_ERRNOS: Mapping[int, int] = {
    3000: errno.EINVAL,  # kXR_ArgInvalid
    3002: errno.ENAMETOOLONG,  # kXR_ArgTooLong
    3003: errno.EBUSY,  # kXR_FileLocked
    # kXR_FSError: XRootD 5.5 sends it for ENOTDIR and ENOTEMPTY, i.e. the name is taken by another kind.
    3005: errno.ENOTDIR,
    3007: errno.EIO,  # kXR_IOError
    3008: errno.ENOMEM,  # kXR_NoMemory
    3009: errno.ENOSPC,  # kXR_NoSpace
    3010: errno.EACCES,  # kXR_NotAuthorized
    3011: errno.ENOENT,  # kXR_NotFound
    3012: errno.EIO,  # kXR_ServerError
    3013: errno.ENOTSUP,  # kXR_Unsupported
    3014: errno.EHOSTUNREACH,  # kXR_noserver
    3015: errno.ENOTDIR,  # kXR_NotFile
    3016: errno.EISDIR,  # kXR_isDirectory
    3018: errno.EEXIST,  # kXR_ItExists
    3019: errno.EIO,  # kXR_ChkSumErr
    3021: errno.EDQUOT,  # kXR_overQuota
    3024: errno.EBUSY,  # kXR_Overloaded
    3025: errno.EROFS,  # kXR_fsReadOnly
    3028: errno.EACCES,  # kXR_TLSRequired
    3030: errno.EACCES,  # kXR_AuthFailed
    3034: errno.ETIMEDOUT,  # kXR_ReqTimedOut
}

#: XRootD client status codes (``XrdCl::Status``) for failures on the client's side of the wire.
XROOTD_CLIENT_ERRNOS: Mapping[int, int] = {
    101: errno.EHOSTUNREACH,  # errInvalidAddr
    102: errno.ECONNRESET,  # errSocketError
    103: errno.ETIMEDOUT,  # errSocketTimeout
    104: errno.ECONNRESET,  # errSocketDisconnected
    107: errno.ECONNRESET,  # errStreamDisconnect
    108: errno.ECONNREFUSED,  # errConnectionError
    203: errno.EACCES,  # errLoginFailed
    204: errno.EACCES,  # errAuthFailed
    206: errno.ETIMEDOUT,  # errOperationExpired
    207: errno.EINTR,  # errOperationInterrupted
    304: errno.ENOENT,  # errNotFound
}

#: HTTP statuses (WebDAV, S3) and the POSIX errno each stands for; other 4xx and all 5xx mean ``EIO``.
HTTP_ERRNOS: Mapping[int, int] = {
    401: errno.EACCES,
    403: errno.EACCES,
    404: errno.ENOENT,
    405: errno.EPERM,
    408: errno.ETIMEDOUT,
    # WebDAV: the parent is missing or is not a collection.
    409: errno.ENOTDIR,
    410: errno.ENOENT,
    412: errno.EEXIST,
    413: errno.EFBIG,
    414: errno.ENAMETOOLONG,
    423: errno.EBUSY,
    429: errno.EBUSY,
    507: errno.ENOSPC,
}

#: S3 error codes whose HTTP status alone would be read wrongly (most arrive as a plain 400).
S3_CODE_ERRNOS: Mapping[str, int] = {
    "NoSuchKey": errno.ENOENT,
    "NoSuchBucket": errno.ENOENT,
    "EntityTooLarge": errno.EMSGSIZE,
    "MetadataTooLarge": errno.EMSGSIZE,
    "KeyTooLongError": errno.ENAMETOOLONG,
    "QuotaExceeded": errno.EDQUOT,
    "ExpiredToken": errno.EACCES,
    "InvalidAccessKeyId": errno.EACCES,
    "SignatureDoesNotMatch": errno.EACCES,
    "RequestTimeTooSkewed": errno.EACCES,
    "RequestTimeout": errno.ETIMEDOUT,
    "SlowDown": errno.EBUSY,
}

# webdav4's client exceptions that carry no HTTP status of their own.
_WEBDAV_ERRNOS: Mapping[str, int] = {
    "ResourceNotFound": errno.ENOENT,
    "ForbiddenOperation": errno.EACCES,
    "ResourceAlreadyExists": errno.EEXIST,
    "InsufficientStorage": errno.ENOSPC,
    "ResourceConflict": errno.ENOTDIR,
    "IsACollectionError": errno.EISDIR,
    "IsAResourceError": errno.ENOTDIR,
    "ResourceLocked": errno.EBUSY,
}
_BOTOCORE_ERRNOS: Mapping[str, int] = {
    "NoCredentialsError": errno.EACCES,
    "PartialCredentialsError": errno.EACCES,
}


def xrootd_os_error(server_errno: int, client_code: int, message: str, path: str) -> OSError:
    """
    Return the ``OSError`` that stands for a failed XRootD status, as fsspec filesystems raise.

    The server's error code is read first; a failure that never reached the server is read from the
    client's status code. Python picks the ``OSError`` subclass from the errno, so a ``kXR_NotFound`` is a
    ``FileNotFoundError`` and a refused connection a ``ConnectionRefusedError``.

    >>> type(xrootd_os_error(3011, 400, "no such file", "/vo/x")).__name__
    'FileNotFoundError'
    >>> type(xrootd_os_error(0, 108, "Connection error", "/vo/x")).__name__
    'ConnectionRefusedError'

    Args:
        server_errno: the status's ``errno`` (an ``XErrorCode``, 0 when the server did not answer).
        client_code: the status's ``code`` (an ``XrdCl`` error code).
        message: the status's message.
        path: the path the call was about.

    Returns:
        An ``OSError`` (subclass) with a POSIX errno, the XRootD codes kept as a note.
    """
    posix = XROOTD_SERVER_ERRNOS.get(server_errno) or XROOTD_CLIENT_ERRNOS.get(client_code, errno.EIO)
    error = OSError(posix, f"XRootD: {message.strip()}", path)
    error.add_note(f"XRootD status: server errno {server_errno}, client code {client_code}")
    return error


def _loaded(module: str, names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The named exception classes of ``module`` when it is loaded, else none."""
    found = sys.modules.get(module)
    if found is None:
        return ()
    return tuple(cls for name in names if isinstance(cls := getattr(found, name, None), type))


def _http_errno(status: int) -> int:
    return HTTP_ERRNOS.get(status, errno.EIO)


def _response_errno(exc: Exception) -> int | None:
    """The errno of an HTTP-level failure: httpx, webdav4 or botocore, by S3 code then HTTP status."""
    response: Any = getattr(exc, "response", None)
    if isinstance(exc, _loaded("httpx", ("HTTPStatusError",)) + _loaded("webdav4.client", ("HTTPError",))):
        return _http_errno(int(response.status_code))
    if isinstance(exc, _loaded("botocore.exceptions", ("ClientError",))) and isinstance(response, Mapping):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in S3_CODE_ERRNOS:
            return S3_CODE_ERRNOS[code]
        return _http_errno(int(status)) if isinstance(status, int) else None
    return None


def _class_errno(exc: Exception) -> int | None:
    """The errno of a client exception that stands for one condition whatever the response."""
    for module, table in (("webdav4.client", _WEBDAV_ERRNOS), ("botocore.exceptions", _BOTOCORE_ERRNOS)):
        for cls in _loaded(module, tuple(table)):
            if isinstance(exc, cls):
                return table[cls.__name__]
    return None


def _posix_errno(exc: Exception) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    return _response_errno(exc) or _class_errno(exc)


def _is_missing(exc: Exception, code: int | None) -> bool:
    return isinstance(exc, FileNotFoundError) or code == errno.ENOENT


def _is_denied(exc: Exception, code: int | None) -> bool:
    return isinstance(exc, PermissionError) or code in _DENIED_ERRNOS


def _is_refused(exc: Exception, code: int | None) -> bool:
    return isinstance(exc, _NAME_CONFLICTS) or code in _REFUSED_ERRNOS


def _is_corrupted(exc: Exception, code: int | None) -> bool:
    return isinstance(exc, CopyDiffers)


_RULES: tuple[tuple[Callable[[Exception, int | None], bool], type[FailoverError], str], ...] = (
    (_is_corrupted, TransferCorrupted, "the copy is corrupt"),
    (_is_missing, SourceMissing, "no such object"),
    (_is_denied, PermissionDenied, "permission denied"),
    (_is_refused, StorageRefused, "refused by the storage"),
)


def _translate(exc: Exception, se: str, lfn: str | None) -> FailoverError:
    """Return the failover error that stands for ``exc`` (the first matching rule, else unavailable)."""
    kind: type[FailoverError] = StorageUnavailable
    what = "storage unavailable"
    code = _posix_errno(exc)
    for matches, candidate, description in _RULES:
        if matches(exc, code):
            kind, what = candidate, description
            break
    subject = f" for {lfn}" if lfn else ""
    return kind(f"{se}: {what}{subject}: {type(exc).__name__}: {exc}", se=se, lfn=lfn)


def map_storage_errors(se: str, lfn: str | None = None) -> StorageErrorMapping:
    """
    Turn any exception raised by the storage layer inside the block into a :class:`FailoverError`.

    ``FailoverError`` passes through unchanged, so blocks can nest. ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) is never touched.

    >>> from failover.errors import StorageRefused
    >>> import errno
    >>> try:
    ...     with map_storage_errors("se-a", "/vo/x"):
    ...         raise OSError(errno.ENOSPC, "No space left on device")
    ... except StorageRefused as err:
    ...     (err.se, err.lfn)
    ('se-a', '/vo/x')

    Args:
        se: name of the storage element being used, recorded on the error.
        lfn: the logical file name involved, if any, recorded on the error.

    Returns:
        A context manager; the block runs as is.

    Raises:
        SourceMissing: the object (or the local source file) does not exist.
        PermissionDenied: the storage refuses access.
        StorageRefused: the storage refuses the name, the size or the space, or the name is taken.
        StorageUnavailable: anything else: unreachable, timed out, or an unexpected backend failure.
    """
    return StorageErrorMapping(se, lfn)


class StorageErrorMapping(ErrorMapping):
    """The context manager of :func:`map_storage_errors`."""

    __slots__ = ("lfn", "se")

    def __init__(self, se: str, lfn: str | None) -> None:
        self.se = se
        self.lfn = lfn

    def translate(self, exc: Exception) -> FailoverError:
        """The failover error for ``exc``: every foreign exception is mapped."""
        return _translate(exc, self.se, self.lfn)
