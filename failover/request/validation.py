"""
Request validation before a request is stored, after DIRAC's ``RequestValidator``.

The checks, in DIRAC's order (operations are numbered from 0, as DIRAC numbers them):

1. the request has a name;
2. it has an Owner and an OwnerGroup (DIRAC 8.1+ requires both);
3. it has at least one operation;
4. each operation has a Type, and a known one;
5. each operation has at least one file, and at most DIRAC's :data:`MAX_FILES`;
6. each operation has the attributes its type requires, and so does each of its files (table below);
7. each file's Checksum and ChecksumType are both set or both unset.

Then the checks DIRAC makes when it loads a request, so that a valid request can be handed to DIRAC:
the ChecksumType is ADLER32, MD5 or SHA1; the LFN is an absolute path; the GUID has the 8-4-4-4-12 hex form.

====================  ================  ======================================
type                  operation needs   each file needs
====================  ================  ======================================
ReplicateAndRegister  TargetSE          LFN
RemoveReplica         TargetSE          LFN
RegisterFile          --                LFN, PFN, ChecksumType, Checksum, GUID
RegisterReplica       TargetSE          LFN, PFN
RemoveFile            --                LFN
====================  ================  ======================================

Deliberate differences from DIRAC: unknown operation types are rejected, and every check runs on every
operation (DIRAC stops checking files at the first operation of a type it has no table entry for, and
reports only the first problem). A message names the file's LFN where DIRAC names none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Final

from failover.checksum import parse_checksum_type
from failover.errors import InvalidInput, InvalidRequest
from failover.request.model import File, Operation, OperationType, Request

__all__ = ["MAX_FILES", "REQUIRED_ATTRIBUTES", "find_problems", "validate_request"]

#: DIRAC refuses to load an operation with more files than this (``Operation.MAX_FILES``).
MAX_FILES: Final = 10_000

#: DIRAC attribute names each operation type requires: (on the operation, on each file).
REQUIRED_ATTRIBUTES: Final[dict[OperationType, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    OperationType.ReplicateAndRegister: (("TargetSE",), ("LFN",)),
    OperationType.RemoveReplica: (("TargetSE",), ("LFN",)),
    OperationType.RegisterFile: ((), ("LFN", "PFN", "ChecksumType", "Checksum", "GUID")),
    OperationType.RegisterReplica: (("TargetSE",), ("LFN", "PFN")),
    OperationType.RemoveFile: ((), ("LFN",)),
}

_OPERATION_ATTRIBUTES: Final[dict[str, Callable[[Operation], object]]] = {
    "TargetSE": lambda op: [name for name in op.target_se if name.strip()],
}

_FILE_ATTRIBUTES: Final[dict[str, Callable[[File], object]]] = {
    "LFN": lambda file: file.lfn,
    "PFN": lambda file: file.pfn,
    "ChecksumType": lambda file: file.checksum_type,
    "Checksum": lambda file: file.checksum,
    "GUID": lambda file: file.guid,
}

# DIRAC's checkGuid, which accepts either case.
_GUID = re.compile(r"^[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}$", re.IGNORECASE)


def validate_request(request: Request) -> None:
    """
    Check that a request is complete enough to be stored and executed.

    Args:
        request: the request to check.

    Raises:
        InvalidRequest: one or more checks failed; the message lists every problem, separated by ``"; "``.
    """
    problems = find_problems(request)
    if problems:
        raise InvalidRequest("; ".join(problems))


def find_problems(request: Request) -> list[str]:
    """
    Run every check and return what is wrong, in check order.

    Args:
        request: the request to check.

    Returns:
        One DIRAC-style reason per problem found; empty when the request is valid.

    Example:
        >>> from failover.request.model import Request
        >>> find_problems(Request(name="", owner="alice", owner_group="user"))
        ['RequestName not set', "Operations not present in request ''"]
    """
    return [problem for check in _CHECKS for problem in check(request)]


def _known_type(operation: Operation) -> OperationType | None:
    try:
        return OperationType(operation.type)
    except ValueError:
        return None


def _is_checksum_type(name: str) -> bool:
    try:
        parse_checksum_type(name)
    except InvalidInput:
        return False
    return True


def _check_name(request: Request) -> Iterator[str]:
    if not request.name:
        yield "RequestName not set"


def _check_owner(request: Request) -> Iterator[str]:
    if not request.owner:
        yield f"Request '{request.name}' is missing Owner value"
    if not request.owner_group:
        yield f"Request '{request.name}' is missing OwnerGroup value"


def _check_has_operations(request: Request) -> Iterator[str]:
    if request.is_empty:
        yield f"Operations not present in request '{request.name}'"


def _check_types(request: Request) -> Iterator[str]:
    for index, operation in enumerate(request.operations):
        if not operation.type:
            yield f"Operation #{index} in request '{request.name}' hasn't got Type set"
        elif _known_type(operation) is None:
            yield f"Operation #{index} in request '{request.name}' has unknown Type '{operation.type}'"


def _check_has_files(request: Request) -> Iterator[str]:
    for index, operation in enumerate(request.operations):
        if not operation.files:
            yield f"Operation #{index} of type '{operation.type}' hasn't got files to process."
        elif len(operation.files) > MAX_FILES:
            yield f"Operation #{index} of type '{operation.type}' has more than {MAX_FILES} files."


def _check_required(request: Request) -> Iterator[str]:
    for index, operation in enumerate(request.operations):
        op_type = _known_type(operation)
        if op_type is not None:
            yield from _missing_attributes(f"Operation #{index} of type '{op_type}'", op_type, operation)


def _missing_attributes(where: str, op_type: OperationType, operation: Operation) -> Iterator[str]:
    op_attrs, file_attrs = REQUIRED_ATTRIBUTES[op_type]
    for attr in op_attrs:
        if not _OPERATION_ATTRIBUTES[attr](operation):
            yield f"{where} is missing {attr} attribute."
    for number, file in enumerate(operation.files):
        name = file.lfn or f"#{number}"
        for attr in file_attrs:
            if not _FILE_ATTRIBUTES[attr](file):
                yield f"{where} is missing {attr} attribute for file {name}"


def _check_checksums(request: Request) -> Iterator[str]:
    for index, operation in enumerate(request.operations):
        for file in operation.files:
            if bool(file.checksum) != bool(file.checksum_type):
                yield (
                    f"File {file.lfn} in operation #{index} is missing Checksum ({file.checksum!r})"
                    f" or ChecksumType ({file.checksum_type!r})"
                )
            elif file.checksum_type and not _is_checksum_type(file.checksum_type):
                yield (
                    f"File {file.lfn} in operation #{index} has unknown ChecksumType {file.checksum_type!r}"
                    " (use ADLER32, MD5 or SHA1)"
                )


def _check_dirac_formats(request: Request) -> Iterator[str]:
    for index, operation in enumerate(request.operations):
        for file in operation.files:
            if file.lfn and not file.lfn.startswith("/"):
                yield f"File {file.lfn} in operation #{index} has an LFN that is not an absolute path"
            if file.guid and not _GUID.match(file.guid):
                yield f"File {file.lfn} in operation #{index} has GUID {file.guid!r}, not 8-4-4-4-12 hex"


_CHECKS: Final[tuple[Callable[[Request], Iterator[str]], ...]] = (
    _check_name,
    _check_owner,
    _check_has_operations,
    _check_types,
    _check_has_files,
    _check_required,
    _check_checksums,
    _check_dirac_formats,
)
