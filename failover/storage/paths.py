"""
Where an LFN lives below a storage element's root, and which names are off limits.

The object of LFN ``/vo/x.root`` on an SE rooted at ``/srv/se-a`` is ``/srv/se-a/vo/x.root``: the root
followed by the LFN. An LFN that could address anything outside the root is refused with
:class:`~failover.errors.InvalidInput` before any storage is touched: a relative LFN, an empty, ``.`` or
``..`` segment, a backslash, or a control character. Names that look like a put's temporary name are
reserved, so a cleanup of leftovers can never remove a user's file.

Symbolic links on a local SE are checked separately by :func:`inside_real_root`, because only the
filesystem knows where a link points.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat
import unicodedata
import uuid
from pathlib import Path

from failover.errors import InvalidInput

__all__ = [
    "check_lfn",
    "inside_real_root",
    "is_temporary",
    "lfn_from_path",
    "local_url",
    "object_path",
    "relative_path",
    "temporary_path",
]

_TEMPORARY_MARK = ".failover-tmp-"
_TEMPORARY_NAME = re.compile(r"\..*\.failover-tmp-[0-9a-f]{32}", re.DOTALL)
# Keeps a temporary name within the usual 255-byte name limit even for a long basename.
_KEPT_BASENAME = 100
# Cc: control characters (NUL, newline, DEL, C1); Cs: lone surrogates, which no filesystem can encode.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})


def _refuse(lfn: str, why: str) -> InvalidInput:
    return InvalidInput(f"Invalid LFN {lfn!r}: {why}", lfn=lfn)


@functools.lru_cache(maxsize=4096)
def _first_forbidden_character(lfn: str) -> str | None:
    # Cached: a pure function of the string, asked for the same LFN on every call of an SE method.
    if lfn.isascii():
        return next((c for c in lfn if c == "\\" or c < " " or c == "\x7f"), None)
    for char in lfn:
        if char == "\\" or unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return char
    return None


def check_lfn(lfn: str) -> str:
    """
    Check that ``lfn`` names an object strictly below any root, and return it unchanged.

    >>> check_lfn("/vo/user/a/alice/out.root")
    '/vo/user/a/alice/out.root'

    Args:
        lfn: the logical file name to check.

    Returns:
        ``lfn`` itself.

    Raises:
        InvalidInput: ``lfn`` is not a string or not absolute; has an empty, ``.`` or ``..`` segment; holds
            a backslash or a control character; or its basename is reserved for temporary objects.
    """
    if not isinstance(lfn, str) or not lfn.startswith("/"):
        raise _refuse(str(lfn), "not an absolute path")
    bad = _first_forbidden_character(lfn)
    if bad is not None:
        raise _refuse(lfn, f"contains the forbidden character {bad!r}")
    segments = lfn[1:].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise _refuse(lfn, "has an empty, '.' or '..' path segment")
    if is_temporary(segments[-1]):
        raise _refuse(lfn, f"names ending in '{_TEMPORARY_MARK}<hex>' are reserved for temporary objects")
    return lfn


def object_path(root: str, lfn: str) -> str:
    """
    Return the path of ``lfn``'s object below ``root`` (a path in the filesystem's own form).

    >>> object_path("/srv/se-a/", "/vo/x.root")
    '/srv/se-a/vo/x.root'

    Args:
        root: the SE's root path, as fsspec strips it from the SE's URL.
        lfn: the logical file name.

    Returns:
        ``root`` followed by ``lfn``.

    Raises:
        InvalidInput: ``lfn`` is refused by :func:`check_lfn`.
    """
    return root.rstrip("/") + check_lfn(lfn)


def lfn_from_path(root: str, path: str) -> str:
    """
    Return the LFN whose object is ``path`` below ``root`` (the inverse of :func:`object_path`).

    Args:
        root: the SE's root path.
        path: a path below ``root``, as the filesystem lists it.

    Returns:
        The LFN, starting with ``/``.
    """
    return "/" + relative_path(root, path)


def relative_path(root: str, path: str) -> str:
    """
    Return ``path`` relative to ``root``, without a leading ``/``.

    Args:
        root: the SE's root path.
        path: a path below ``root``.

    Returns:
        The part of ``path`` after ``root``.
    """
    return path[len(root.rstrip("/")) :].lstrip("/")


def temporary_path(path: str) -> str:
    """
    Return a fresh temporary name for writing ``path``, in the same directory.

    The name is hidden (leading dot), keeps the start of the basename for humans, and ends with a mark and
    a random hex so that :func:`is_temporary` recognises it and two puts never collide.

    Args:
        path: the object's final path.

    Returns:
        ``<dir>/.<basename>.failover-tmp-<32 hex digits>``.
    """
    directory, basename = posixpath.split(path)
    return posixpath.join(directory, f".{basename[:_KEPT_BASENAME]}{_TEMPORARY_MARK}{uuid.uuid4().hex}")


def is_temporary(path: str) -> bool:
    """
    Tell whether the basename of ``path`` is a temporary name made by :func:`temporary_path`.

    Args:
        path: a path or a bare name.

    Returns:
        True for a temporary name.
    """
    return _TEMPORARY_NAME.fullmatch(posixpath.basename(path)) is not None


def inside_real_root(root: str, path: str) -> bool:
    """
    Tell whether ``path`` stays inside ``root`` on the local filesystem once symbolic links are resolved.

    Every existing component of ``path`` below the root is looked at, so a directory link or a file link
    that points out of the root is caught, even when the object itself does not exist yet. The walk stops
    at the first missing component (nothing below it exists), and only a component that is a link pays
    for a full resolution: the common case costs one ``lstat`` per existing component.

    Args:
        root: the local root directory.
        path: a local path below ``root`` (built from a checked LFN: no ``..`` in it).

    Returns:
        True if the resolved ``path`` is ``root`` or below it.
    """
    base = root.rstrip("/")
    if not path.startswith(base + "/"):
        # Not spelled below the root (only a caller's mistake can do that): resolve it fully.
        return _contains(_real_root(root), os.path.realpath(path))
    # Plain string building, not os.path.join/relpath: this runs for every SE call on every LFN.
    current = base
    for part in path[len(base) + 1 :].split("/"):
        if not part:
            continue
        current = f"{current}/{part}"
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return True
        if stat.S_ISLNK(mode):
            return _contains(_real_root(root), os.path.realpath(path))
    return True


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _contains(real_root: str, real_path: str) -> bool:
    return os.path.commonpath([real_root, real_path]) == real_root


def local_url(directory: Path) -> str:
    """
    The ``file://`` URL of a local directory, as fsspec reads it: ``file://`` and the absolute path as is.

    fsspec does not percent-decode a local URL, so ``Path.as_uri()`` would name another directory when the
    path holds a space, a ``%`` or a non-ASCII letter (``/home/josé`` becomes ``/home/jos%C3%A9``). Earlier
    versions made that mistake: while such a directory exists and the right one does not, it is kept, so
    the replicas already stored there stay found.

    Args:
        directory: the directory (made absolute against the working directory).
    """
    directory = directory.absolute()
    quoted = directory.as_uri().removeprefix("file://")
    if quoted != directory.as_posix() and os.path.isdir(quoted) and not directory.exists():
        return "file://" + quoted
    return "file://" + directory.as_posix()
