"""
The data an upload instance carries, and the pure helpers that read it.

Stored as JSON in the instance row: the validated input (LFN, local path, size, checksum type, GUID,
catalogs), the candidate SEs with their roles, the retry policy, and the progress (current index,
attempts per SE, next attempt time, every failure with its reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from states.names import Role
from states.retry import DIRAC_PUT_RETRY, RetryPolicy

__all__ = ["current_candidate", "new_upload_data", "role_of"]


def new_upload_data(
    *,
    lfn: str,
    local_path: str,
    size: int,
    checksum_type: str,
    guid: str,
    catalogs: Sequence[str],
    destinations: Sequence[str] = (),
    failovers: Sequence[str] = (),
    targets: Sequence[str] = (),
    checksum: str | None = None,
    retry_upload: bool = False,
    policy: RetryPolicy = DIRAC_PUT_RETRY,
) -> dict[str, Any]:
    """
    Build a new upload's data.

    Candidates are the destination SEs in order, then the failover SEs that are not targets (an SE
    named as a target, or a destination when no target is named, is skipped in the failover list).
    """
    aims = list(targets) or list(destinations)
    candidates = [{"se": se, "role": Role.DESTINATION.value} for se in destinations]
    candidates += [{"se": se, "role": Role.FAILOVER.value} for se in failovers if se not in aims]
    return {
        "lfn": lfn,
        "local_path": local_path,
        "size": size,
        "checksum": checksum,
        "checksum_type": checksum_type,
        "guid": guid,
        "catalogs": list(catalogs),
        "targets": aims,
        "candidates": candidates,
        "retry_upload": retry_upload,
        "retry_delays": list(policy.delays),
        "index": 0,
        "attempts": {},
        "next_attempt_at": None,
        "failures": [],
    }


def current_candidate(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The SE being tried now, or None when every candidate has been tried."""
    candidates: list[dict[str, Any]] = data["candidates"]
    index: int = data["index"]
    return candidates[index] if index < len(candidates) else None


def role_of(data: Mapping[str, Any], se: str) -> Role | None:
    """The role of ``se`` among the candidates, or None when it is not one."""
    for candidate in data["candidates"]:
        if candidate["se"] == se:
            return Role(candidate["role"])
    return None
