"""
The one boundary where exceptions from fsspec, its backends and the OS become failover's errors.

Every call that touches a storage element runs inside :func:`map_storage_errors`, so callers only ever see
the typed tree of :mod:`failover.errors` and decide what to do next by class, never by message text. The
first matching rule wins, most specific first:

=====================================================================  ======================
foreign exception                                                      becomes
=====================================================================  ======================
:class:`~failover.errors.FailoverError`                                itself, unchanged
``FileNotFoundError``                                                  ``SourceMissing``
``PermissionError``, any ``OSError`` with ``EACCES`` or ``EPERM``      ``PermissionDenied``
``OSError`` with ``ENOSPC``, ``EDQUOT``, ``ENAMETOOLONG``, ``EFBIG``,  ``StorageRefused``
``EROFS``; ``FileExistsError``, ``IsADirectoryError``,
``NotADirectoryError`` (the SE holds something else under the name)
``ConnectionError``, ``TimeoutError``, socket errors, any other        ``StorageUnavailable``
``OSError``, any other ``Exception`` from the storage layer
=====================================================================  ======================
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from failover.errors import (
    FailoverError,
    PermissionDenied,
    SourceMissing,
    StorageRefused,
    StorageUnavailable,
)

__all__ = ["map_storage_errors"]

_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
_REFUSED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EFBIG, errno.EROFS})
# The name is taken by something that is not the object we want: another file, a directory, or a file
# where a directory is needed. Trying again will not help; another SE may.
_NAME_CONFLICTS = (FileExistsError, IsADirectoryError, NotADirectoryError)


def _is_denied(exc: Exception) -> bool:
    return isinstance(exc, PermissionError) or getattr(exc, "errno", None) in _DENIED_ERRNOS


def _is_refused(exc: Exception) -> bool:
    return isinstance(exc, _NAME_CONFLICTS) or getattr(exc, "errno", None) in _REFUSED_ERRNOS


def _is_missing(exc: Exception) -> bool:
    return isinstance(exc, FileNotFoundError)


_RULES: tuple[tuple[Callable[[Exception], bool], type[FailoverError], str], ...] = (
    (_is_missing, SourceMissing, "no such object"),
    (_is_denied, PermissionDenied, "permission denied"),
    (_is_refused, StorageRefused, "refused by the storage"),
)


def _translate(exc: Exception, se: str, lfn: str | None) -> FailoverError:
    """Return the failover error that stands for ``exc`` (the first matching rule, else unavailable)."""
    kind: type[FailoverError] = StorageUnavailable
    what = "storage unavailable"
    for matches, candidate, description in _RULES:
        if matches(exc):
            kind, what = candidate, description
            break
    subject = f" for {lfn}" if lfn else ""
    return kind(f"{se}: {what}{subject}: {type(exc).__name__}: {exc}", se=se, lfn=lfn)


@contextmanager
def map_storage_errors(se: str, lfn: str | None = None) -> Iterator[None]:
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

    Yields:
        Nothing; the block runs as is.

    Raises:
        SourceMissing: the object (or the local source file) does not exist.
        PermissionDenied: the storage refuses access.
        StorageRefused: the storage refuses the name, the size or the space, or the name is taken.
        StorageUnavailable: anything else: unreachable, timed out, or an unexpected backend failure.
    """
    try:
        yield
    except FailoverError:
        raise
    except Exception as exc:
        raise _translate(exc, se, lfn) from exc
