"""
Input validation for an upload (SPEC §1): every check runs before anything is uploaded.

:func:`validate_upload` checks all inputs in SPEC order and returns an :class:`UploadInput`; the
single-input checks are public too, for callers that need one of them alone (e.g. SE names for the
failover list). Errors are the :class:`~failover.errors.InvalidInput` family.
"""

from __future__ import annotations

from failover.validation.metadata import (
    CHECKSUM_KEY,
    CHECKSUM_TYPE_KEY,
    GUID_KEY,
    SIZE_KEY,
    new_guid,
    parse_size,
    validate_checksum,
    validate_checksum_type,
    validate_guid,
    validate_size,
)
from failover.validation.names import CatalogChoice, parse_name_list, select_catalogs, validate_ses
from failover.validation.paths import MAX_BASENAME_LENGTH, MAX_LFN_LENGTH, validate_lfn, validate_local_file
from failover.validation.upload import UploadInput, validate_upload

__all__ = [
    "CHECKSUM_KEY",
    "CHECKSUM_TYPE_KEY",
    "CatalogChoice",
    "GUID_KEY",
    "MAX_BASENAME_LENGTH",
    "MAX_LFN_LENGTH",
    "SIZE_KEY",
    "UploadInput",
    "new_guid",
    "parse_name_list",
    "parse_size",
    "select_catalogs",
    "validate_checksum",
    "validate_checksum_type",
    "validate_guid",
    "validate_lfn",
    "validate_local_file",
    "validate_ses",
    "validate_size",
    "validate_upload",
]
