"""
Operations made by hand, as DIRAC's ``FailoverTransfer._set*Request`` helpers make them, checked first.

DIRAC's workflow modules add operations of their own to the job's request besides what the uploads emit
(``UploadOutputData`` queues a replication to a second SE with ``_setFileReplicationRequest``). DIRAC
builds them blindly: an unknown SE or a RegisterFile without a checksum is found only when the request is
committed ("Failover request is not valid") or executed. Here each one is checked as it is made: the LFN
as an upload's, the SE and catalog names against the configuration, the metadata as ``fileMetaDict``'s,
and the operation as :func:`~failover.request.find_problems` checks a stored one.

>>> from failover.checksum import ChecksumType
>>> facts = FileFacts.from_meta({"Checksum": "0x1A2b", "Size": "42"}, ChecksumType.ADLER32)
>>> (facts.checksum, facts.checksum_type, facts.size, facts.guid)
('00001a2b', 'ADLER32', 42, '')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from failover.checksum import ChecksumType, normalize_checksum
from failover.environment import Environment
from failover.errors import InvalidInput
from failover.request import File, Operation, OperationType
from failover.validation.metadata import parse_size, validate_checksum_type, validate_guid
from failover.validation.names import parse_name_list, select_catalogs, validate_ses
from failover.validation.paths import validate_lfn

__all__ = ["FileFacts", "file_removal", "registrations", "replica_removal", "replication"]


@dataclass(frozen=True)
class FileFacts:
    """
    What the caller says of a file: each field empty (or 0) when not given.

    Args:
        size: bytes.
        checksum: the checksum, canonical for its type.
        checksum_type: ``ADLER32``, ``MD5`` or ``SHA1``; set exactly when ``checksum`` is.
        guid: 8-4-4-4-12 hex, upper case.
    """

    size: int = 0
    checksum: str = ""
    checksum_type: str = ""
    guid: str = ""

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], default_type: str | ChecksumType | None) -> FileFacts:
        """
        Read DIRAC's ``fileMetaDict``: ``Size``, ``Checksum``, ``ChecksumType``, ``GUID`` (others ignored).

        Args:
            meta: the metadata.
            default_type: the checksum type when ``ChecksumType`` is absent or empty.

        Raises:
            InvalidInput: a value is malformed (size, checksum type, checksum, GUID).
        """
        if not isinstance(meta, Mapping):
            raise InvalidInput(f"File metadata must be a dict, not {meta!r}")
        checksum = meta.get("Checksum") or ""
        if not isinstance(checksum, str):
            raise InvalidInput(f"Checksum must be a string of hex digits, not {checksum!r}")
        kind = validate_checksum_type(meta.get("ChecksumType"), default_type)
        guid = meta.get("GUID")
        no_guid = guid is None or (isinstance(guid, str) and not guid.strip())
        return cls(
            size=parse_size(meta.get("Size")),
            checksum=normalize_checksum(checksum, kind) if checksum.strip() else "",
            checksum_type=kind.value if checksum.strip() else "",
            guid="" if no_guid else validate_guid(guid)[0],
        )

    def file(self, lfn: str, pfn: str = "") -> File:
        """An operation's file for ``lfn`` carrying these facts."""
        return File(lfn, pfn, self.checksum, self.checksum_type, self.size, self.guid)


def _ses(env: Environment, ses: str | Iterable[str] | None, what: str, lfn: str) -> list[str]:
    names = list(validate_ses(ses, env.storage))
    if not names:
        raise InvalidInput(f"{what} for {lfn} names no storage element", lfn=lfn)
    return names


def replication(
    env: Environment, lfn: str, target_se: str | Iterable[str], facts: FileFacts, source_se: str = ""
) -> Operation:
    """
    A ReplicateAndRegister of ``lfn`` to ``target_se`` (from ``source_se``, else from any good replica).

    Raises:
        InvalidInput: a bad LFN, no target SE or an SE that is not configured.
    """
    lfn = validate_lfn(lfn)
    targets = _ses(env, target_se, "ReplicateAndRegister", lfn)
    sources = list(validate_ses(source_se, env.storage))
    if len(sources) > 1:
        raise InvalidInput(f"ReplicateAndRegister for {lfn} has one source SE, not {sources}", lfn=lfn)
    return Operation(
        OperationType.ReplicateAndRegister,
        target_se=targets,
        source_se=sources[0] if sources else "",
        files=[facts.file(lfn)],
    )


def registrations(
    env: Environment, lfn: str, target_se: str, facts: FileFacts, catalogs: str | Iterable[str] | None
) -> list[Operation]:
    """
    One RegisterFile of ``lfn``'s replica at ``target_se`` per catalog (empty: every configured catalog,
    in one operation), with the replica's PFN on that SE.

    Raises:
        InvalidInput: a bad LFN, an SE or catalog that is not configured, or facts without the checksum
            or GUID a registration needs.
    """
    lfn = validate_lfn(lfn)
    ses = _ses(env, target_se, "RegisterFile", lfn)
    if len(ses) > 1:
        raise InvalidInput(f"RegisterFile for {lfn} registers the replica at one SE, not {ses}", lfn=lfn)
    missing = [name for name, value in (("Checksum", facts.checksum), ("GUID", facts.guid)) if not value]
    if missing:
        raise InvalidInput(f"RegisterFile for {lfn} needs the file's {' and '.join(missing)}", lfn=lfn)
    select_catalogs(catalogs, env.catalog_choices(), master_only=False)  # every name configured
    pfn = env.se(ses[0]).pfn(lfn)
    return [
        Operation(
            OperationType.RegisterFile,
            target_se=ses,
            catalog=[catalog] if catalog else [],
            files=[facts.file(lfn, pfn)],
        )
        for catalog in parse_name_list(catalogs) or [""]
    ]


def replica_removal(env: Environment, lfn: str, ses: str | Iterable[str]) -> Operation:
    """
    A RemoveReplica of ``lfn`` at each of ``ses`` (the executor never removes the last replica).

    Raises:
        InvalidInput: a bad LFN, no SE or an SE that is not configured.
    """
    lfn = validate_lfn(lfn)
    return Operation(
        OperationType.RemoveReplica, target_se=_ses(env, ses, "RemoveReplica", lfn), files=[File(lfn)]
    )


def file_removal(env: Environment, lfn: str, se: str | Iterable[str] = "", pfn: str = "") -> Operation:
    """
    A RemoveFile of ``lfn``: every replica and the catalog entries (``se`` and ``pfn`` are carried for
    DIRAC, as DIRAC carries them).

    Raises:
        InvalidInput: a bad LFN or an SE that is not configured.
    """
    lfn = validate_lfn(lfn)
    return Operation(
        OperationType.RemoveFile, target_se=list(validate_ses(se, env.storage)), files=[File(lfn, pfn)]
    )
