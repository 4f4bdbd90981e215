"""
The logical file name and the local file of an upload: the first two checks of SPEC §1.

Both are checked before anything else, so a bad name or a missing file is reported before any SE is tried.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

from failover.errors import InvalidInput, NameTooLong

__all__ = ["MAX_BASENAME_LENGTH", "MAX_LFN_LENGTH", "validate_lfn", "validate_local_file"]

#: DIRAC's limit on the last segment of an LFN; longer names get errno 36 (ENAMETOOLONG).
MAX_BASENAME_LENGTH = 128
#: Limit on the whole LFN.
MAX_LFN_LENGTH = 1024

# Cc: C0/C1 controls and DEL. Cs: lone surrogates, which cannot be encoded and so cannot be stored.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})
_BAD_SEGMENTS = frozenset({"", ".", ".."})


def validate_lfn(lfn: str) -> str:
    """
    Check a logical file name and return it unchanged.

    An LFN is an absolute POSIX-style path with no empty, ``.`` or ``..`` segment (so no ``//`` and no
    trailing ``/``) and no control character. Lengths count characters (code points), not bytes. Checks
    run in this order: a non-empty string, no control character, absolute, segments, basename length,
    whole length.

    Args:
        lfn: the logical file name, e.g. ``/vo/user/a/alice/run42/out.root``.

    Returns:
        ``lfn`` itself.

    Raises:
        InvalidInput: not a non-empty string, a control character, relative, or a bad segment.
        NameTooLong: the basename is over 128 characters or the whole LFN over 1024 (errno 36).
    """
    text = _absolute_lfn_text(lfn)
    segments = text.split("/")[1:]
    if any(segment in _BAD_SEGMENTS for segment in segments):
        raise InvalidInput(f"LFN {text!r} has an empty, '.' or '..' segment", lfn=text)
    if len(segments[-1]) > MAX_BASENAME_LENGTH:
        raise NameTooLong(
            f"LFN basename is {len(segments[-1])} characters long (at most {MAX_BASENAME_LENGTH}): {text!r}",
            lfn=text,
        )
    if len(text) > MAX_LFN_LENGTH:
        raise NameTooLong(f"LFN is {len(text)} characters long (at most {MAX_LFN_LENGTH})", lfn=text)
    return text


def _absolute_lfn_text(lfn: object) -> str:
    if not isinstance(lfn, str) or not lfn:
        raise InvalidInput(f"LFN must be a non-empty string, not {lfn!r}")
    bad = next((char for char in lfn if unicodedata.category(char) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None and unicodedata.category(bad) == "Cs":
        raise InvalidInput(f"LFN {lfn!r} is not valid Unicode: {_not_unicode(bad)}", lfn=lfn)
    if bad is not None:
        raise InvalidInput(f"LFN {lfn!r} contains the control character {bad!r}", lfn=lfn)
    if not lfn.startswith("/"):
        raise InvalidInput(f"LFN {lfn!r} is not absolute: it must start with '/'", lfn=lfn)
    return lfn


def _not_unicode(char: str) -> str:
    """Say what a lone surrogate in a name stands for (Python's stand-in for an undecodable byte)."""
    if 0xDC80 <= ord(char) <= 0xDCFF:
        return f"{char!r} stands for the byte 0x{ord(char) - 0xDC00:02x} of a name not in UTF-8"
    return f"{char!r} is a lone surrogate"


def validate_local_file(path: str | os.PathLike[str]) -> tuple[Path, int]:
    """
    Check the local file to upload: it exists, is a regular file, is readable and is not empty.

    The file is only opened for reading (and closed at once); it is never modified. Symbolic links are
    followed for the checks but kept in the returned path, which is made absolute so that an upload
    resumed from another working directory still finds the file.

    Args:
        path: the local file, absolute or relative to the current directory.

    Returns:
        The absolute path and the file's size in bytes.

    Raises:
        InvalidInput: no path given, a path that is not valid Unicode, or the file is missing, not a
            regular file, unreadable or empty.
    """
    local = _absolute_path(path)
    _check_unicode(local)
    info = _stat(local)
    if stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"Supplied file is a directory: {local}")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"Supplied file is not a regular file: {local}")
    _check_readable(local)
    if info.st_size == 0:
        raise InvalidInput(f"Supplied file is zero size: {local}")
    return local, info.st_size


def _check_unicode(local: Path) -> None:
    # The upload's record is UTF-8 text: it could not hold the path to read the file again from.
    text = str(local)
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"Supplied file name is not valid Unicode: {os.fsencode(local)!r}: "
            f"{_not_unicode(text[exc.start])} (rename the file to upload it)"
        ) from None


def _absolute_path(path: object) -> Path:
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"A local file path is required, not {path!r}")
    # abspath, not resolve(): keep the name the caller gave, symlinks included.
    return Path(os.path.abspath(text))


def _stat(local: Path) -> os.stat_result:
    try:
        return local.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidInput(f"Supplied file does not exist: {local}") from None
    except PermissionError:
        raise InvalidInput(f"Supplied file is not readable: {local}") from None
    except OSError as exc:
        raise InvalidInput(f"Supplied file cannot be examined: {local}: {exc.strerror}") from exc


def _check_readable(local: Path) -> None:
    try:
        with open(local, "rb"):
            pass
    except PermissionError:
        raise InvalidInput(f"Supplied file is not readable: {local}") from None
    except OSError as exc:
        raise InvalidInput(f"Supplied file cannot be opened: {local}: {exc.strerror}") from exc
