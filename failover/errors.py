"""
Errors raised by failover, classified by what the caller does next.

::

    FailoverError                  root: catch this to catch everything failover raises
    ├── UploadFailed               no SE took the file; ``errors`` gives each SE's last reason
    ├── InvalidInput               the caller's input is wrong; never retried, nothing uploaded
    │   ├── NameTooLong            an LFN basename over 128 characters (DIRAC errno 36)
    │   ├── ChecksumMismatch       a supplied checksum or size differs from the local file's
    │   ├── UnknownStorageElement  an SE name that is not configured
    │   ├── UnknownCatalog         a catalog name that is not configured, or no master catalog
    │   └── InvalidRequest         a request that fails validation
    ├── TransientError             may work later: retry, or move on to the next SE
    │   ├── StorageUnavailable     the SE cannot be reached, timed out or failed on its side
    │   ├── CatalogUnavailable     the catalog cannot be reached
    │   ├── TransferCorrupted      the SE holds other bytes than were sent (size/checksum/partial)
    │   ├── SoleReplica            a removal would delete the only verified copy: retried later
    │   ├── UploadInterrupted      the process uploading a file stopped before reporting its outcome
    │   └── ExecutorInterrupted    an executor process stopped before finishing its pass
    └── PermanentError             will not work on this SE or catalog: move on at once
        ├── PermissionDenied       the SE refuses access
        ├── StorageRefused         the SE's own refusal (name length, quota, other content)
        ├── RegistrationRefused    the catalog holds conflicting metadata for the LFN or GUID
        └── SourceMissing          the replica to copy from is gone

Every error carries structured fields (``se``, ``lfn``, ``catalog``, ``attempt``), a stable
``code`` and a ``dirac_errno`` used only at the DIRAC-compatible edge. ``to_record()`` and
``from_record()`` turn an error into a JSON-able dict and back, so reasons survive the journal.
"""

from __future__ import annotations

import errno
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ClassVar

__all__ = [
    "CatalogUnavailable",
    "ChecksumMismatch",
    "ErrorMapping",
    "ExecutorInterrupted",
    "FailoverError",
    "InvalidInput",
    "InvalidRequest",
    "NameTooLong",
    "PermanentError",
    "PermissionDenied",
    "RegistrationRefused",
    "SoleReplica",
    "SourceChanged",
    "SourceMissing",
    "StorageRefused",
    "StorageUnavailable",
    "TransferCorrupted",
    "TransientError",
    "UnknownCatalog",
    "UnknownStorageElement",
    "UploadFailed",
    "UploadInterrupted",
    "error_from_record",
]

_FIELDS = ("se", "lfn", "catalog", "attempt")


class FailoverError(Exception):
    """
    Root of every error failover raises.

    Args:
        message: what went wrong, for a human.
        se: the storage element involved, if any.
        lfn: the logical file name involved, if any.
        catalog: the catalog involved, if any.
        attempt: the attempt number (1-based) this error ended, if counted.
    """

    code: ClassVar[str] = "failover_error"
    dirac_errno: ClassVar[int] = 0
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        se: str | None = None,
        lfn: str | None = None,
        catalog: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.se = se
        self.lfn = lfn
        self.catalog = catalog
        self.attempt = attempt

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields are not restored by Exception's default pickling.
        return (error_from_record, (self.to_record(),))

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-able dict from which :func:`error_from_record` rebuilds this error."""
        record: dict[str, Any] = {"code": self.code, "message": self.message}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FailoverError:
        """Rebuild an error from :meth:`to_record` output (the class is chosen by ``code``)."""
        return error_from_record(record)


class UploadFailed(FailoverError):
    """
    No storage element took the file (SPEC §2 "total failure"); the local file is untouched.

    Args:
        message: the summary (DIRAC's "Failed to upload output data file").
        errors: the last reason of each SE tried, by SE name.
        lfn: the file.
    """

    code = "upload_failed"

    def __init__(self, message: str, *, errors: dict[str, str] | None = None, lfn: str | None = None) -> None:
        super().__init__(message, lfn=lfn)
        self.errors = dict(errors or {})

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-able dict, per-SE reasons included."""
        return {**super().to_record(), "errors": dict(self.errors)}


class InvalidInput(FailoverError):
    """The caller's input is invalid: nothing is uploaded and nothing is retried."""

    code = "invalid_input"
    dirac_errno = errno.EINVAL


class NameTooLong(InvalidInput):
    """An LFN (or its basename) is longer than allowed."""

    code = "name_too_long"
    dirac_errno = errno.ENAMETOOLONG


class ChecksumMismatch(InvalidInput):
    """A checksum or size supplied by the caller differs from the local file's."""

    code = "checksum_mismatch"


class UnknownStorageElement(InvalidInput):
    """A storage element name that is not configured."""

    code = "unknown_se"


class UnknownCatalog(InvalidInput):
    """A catalog name that is not configured, or no master catalog when one is required."""

    code = "unknown_catalog"


class InvalidRequest(InvalidInput):
    """A request that does not pass validation."""

    code = "invalid_request"


class TransientError(FailoverError):
    """May succeed later: retry on the same SE or catalog, or move on to the next SE."""

    code = "transient"
    dirac_errno = errno.EAGAIN
    retryable = True


class StorageUnavailable(TransientError):
    """The storage element cannot be reached, timed out, or failed on its side."""

    code = "storage_unavailable"


class CatalogUnavailable(TransientError):
    """The catalog cannot be reached."""

    code = "catalog_unavailable"


class TransferCorrupted(TransientError):
    """The storage holds other bytes than were sent: size or checksum differ, or a partial write."""

    code = "transfer_corrupted"
    dirac_errno = errno.EIO


class SoleReplica(TransientError):
    """Removing this replica would leave no verified, registered copy: refused now, retried later."""

    code = "sole_replica"


class UploadInterrupted(TransientError):
    """
    The process uploading the file stopped before reporting its outcome (see :mod:`failover.parallel`):
    an upload it left in flight is finished by ``resume``; the same upload run again continues it.
    """

    code = "upload_interrupted"


class ExecutorInterrupted(TransientError):
    """
    An executor process (see :mod:`failover.executor.processes`) stopped before finishing its pass: the
    requests it held stay Assigned until their leases expire, then any executor takes them again.
    """

    code = "executor_interrupted"


class PermanentError(FailoverError):
    """Will not succeed on this SE or catalog: move on at once, do not retry here."""

    code = "permanent"
    dirac_errno = errno.EPERM


class PermissionDenied(PermanentError):
    """The storage element refuses access."""

    code = "permission_denied"
    dirac_errno = errno.EACCES


class StorageRefused(PermanentError):
    """The storage element's own refusal: name length, quota, or other content under the name."""

    code = "storage_refused"


class RegistrationRefused(PermanentError):
    """The catalog holds conflicting metadata for the LFN, or the GUID belongs to another LFN."""

    code = "registration_refused"
    dirac_errno = errno.EEXIST


class SourceMissing(PermanentError):
    """The replica to copy from is gone."""

    code = "source_missing"
    dirac_errno = errno.ENOENT


class SourceChanged(PermanentError):
    """
    The local file to put is not the file the upload checked: its size or content changed since, or
    while it was read (a job still writing it). Nothing is published; the next SE reads it again.
    """

    code = "source_changed"
    dirac_errno = errno.EIO


def _all_subclasses(cls: type[FailoverError]) -> list[type[FailoverError]]:
    found: list[type[FailoverError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


def error_from_record(record: dict[str, Any]) -> FailoverError:
    """
    Rebuild an error from a record made by :meth:`FailoverError.to_record`.

    An unknown code (from a newer version, say) gives a plain :class:`FailoverError` with the message kept.
    """
    by_code = {cls.code: cls for cls in _all_subclasses(FailoverError)}
    cls = by_code.get(str(record.get("code")), FailoverError)
    fields = {name: record[name] for name in _FIELDS if name in record}
    if cls is UploadFailed:
        return UploadFailed(
            str(record.get("message", "")), errors=record.get("errors"), lfn=record.get("lfn")
        )
    return cls(str(record.get("message", "")), **fields)


class ErrorMapping(AbstractContextManager[None]):
    """
    A block whose foreign exceptions become failover errors (what :meth:`translate` makes of them).

    Failover errors pass through unchanged, so blocks can nest; a ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) is never touched. A class rather than a
    generator-based context manager: one wraps every storage and catalog call, and a generator costs
    several times more to enter and leave.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, FailoverError) or not isinstance(exc, Exception):
            return
        mapped = self.translate(exc)
        if mapped is not None:
            raise mapped from exc

    def translate(self, exc: Exception) -> FailoverError | None:
        """The failover error ``exc`` stands for, or None to let it through as it is."""
        raise NotImplementedError
