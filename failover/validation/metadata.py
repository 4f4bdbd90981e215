"""
The file metadata a caller supplies in DIRAC's ``fileMetaDict``: GUID, checksum type, checksum and size.

DIRAC's FailoverTransfer reads exactly four keys, with this casing: ``GUID``, ``Checksum``, ``ChecksumType``
and ``Size``. Other keys (other casings included) are not interpreted; the caller keeps them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

from failover.checksum import (
    ChecksumType,
    checksum_file,
    normalize_checksum,
    parse_checksum_type,
    same_checksum,
)
from failover.errors import ChecksumMismatch, InvalidInput

__all__ = [
    "CHECKSUM_KEY",
    "CHECKSUM_TYPE_KEY",
    "GUID_KEY",
    "SIZE_KEY",
    "new_guid",
    "parse_size",
    "validate_checksum",
    "validate_checksum_type",
    "validate_guid",
    "validate_size",
]

GUID_KEY = "GUID"
CHECKSUM_KEY = "Checksum"
CHECKSUM_TYPE_KEY = "ChecksumType"
SIZE_KEY = "Size"

_GUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")
_DIGITS = re.compile(r"[0-9]+")


def new_guid() -> str:
    """Return a fresh GUID: a random uuid4 in upper case, e.g. ``'0F8FAD5B-D9CB-469F-A165-70867728950E'``."""
    return str(uuid.uuid4()).upper()


def validate_guid(guid: str | None, factory: Callable[[], str] = new_guid) -> tuple[str, bool]:
    """
    Return the upload's GUID, upper-cased, and whether it was generated.

    ``None``, ``""`` or blank means "none given": ``factory`` is called once for a new one. The caller
    stores the result with the upload and reuses it on resume, so a GUID is generated once per upload.
    Surrounding spaces are stripped. A generated GUID is checked like a given one.

    Args:
        guid: the caller's GUID, 8-4-4-4-12 hexadecimal digits in any case, or ``None``.
        factory: makes a new GUID; :func:`new_guid` by default.

    Raises:
        InvalidInput: the given (or generated) GUID is not 8-4-4-4-12 hexadecimal digits.
    """
    if guid is None or (isinstance(guid, str) and not guid.strip()):
        return _checked_guid(factory(), "Generated GUID"), True
    return _checked_guid(guid, "GUID"), False


def _checked_guid(value: object, what: str) -> str:
    text = value.strip().upper() if isinstance(value, str) else ""
    if not _GUID.fullmatch(text):
        raise InvalidInput(f"{what} {value!r} is not 8-4-4-4-12 hexadecimal digits")
    return text


def validate_checksum_type(value: object, default: str | ChecksumType | None = "ADLER32") -> ChecksumType:
    """
    Return the checksum type named by ``fileMetaDict["ChecksumType"]``.

    ``AD``, ``Adler32`` and ``adler32`` all mean ADLER32; MD5 and SHA1 are accepted in any case. An absent
    or empty value means ``default``, the client's ``defaultChecksumType``, where ``None`` means ADLER32.

    Raises:
        InvalidInput: ``value`` (or ``default``) is not a supported checksum type.
    """
    fallback = parse_checksum_type(default)
    if value is not None and not isinstance(value, str | ChecksumType):
        raise InvalidInput(f"Unsupported checksum type {value!r}: use ADLER32, MD5 or SHA1")
    return parse_checksum_type(value, default=fallback)


def validate_checksum(value: object, local_path: Path, kind: ChecksumType) -> str | None:
    """
    Verify a supplied checksum against the local file and return it in canonical form.

    The file is streamed once (never loaded whole, never modified). ADLER32 comparison tolerates case,
    leading zeros and ``0x``; MD5 and SHA1 compare case-insensitively.

    Args:
        value: ``fileMetaDict["Checksum"]``; ``None``, ``""`` or blank means none supplied.
        local_path: the local file, already validated.
        kind: the checksum type the value is of.

    Returns:
        The canonical checksum (ADLER32: 8 lowercase hex digits), or ``None`` when none was supplied.

    Raises:
        InvalidInput: the value is not a well-formed checksum of type ``kind``.
        ChecksumMismatch: the local file has another checksum.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"Checksum must be a string of hexadecimal digits, not {value!r}")
    canonical = normalize_checksum(value, kind)
    actual = checksum_file(local_path, [kind]).hexdigest(kind)
    if not same_checksum(canonical, actual, kind):
        raise ChecksumMismatch(
            f"Supplied {kind.value} checksum {value!r} differs from the local file's {actual}"
        )
    return canonical


def parse_size(value: object) -> int:
    """
    Parse ``fileMetaDict["Size"]`` into a byte count, 0 meaning unknown.

    ``None``, ``""``, ``0`` and ``"0"`` mean unknown. Integers, integral floats and strings of decimal digits
    (surrounding spaces allowed) are accepted.

    Raises:
        InvalidInput: a negative, fractional or non-numeric size (booleans included).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidInput(f"Size must be a non-negative whole number of bytes, not {value!r}")


def validate_size(value: object, actual: int) -> None:
    """
    Check a supplied size against the local file's.

    Raises:
        InvalidInput: the size is malformed (see :func:`parse_size`).
        ChecksumMismatch: a known size differs from ``actual``.
    """
    expected = parse_size(value)
    if expected and expected != actual:
        raise ChecksumMismatch(f"Supplied size {expected} differs from the local file's {actual} bytes")
