"""The names of the upload machine: its states and triggers."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role", "UploadState", "UploadTrigger"]


class UploadState(StrEnum):
    """Where one file upload stands (DESIGN.md, "The upload machine")."""

    UPLOADING = "Uploading"
    REGISTERING = "Registering"
    REGISTERED = "Registered"
    FAILED_OVER = "FailedOver"
    REPLICATING = "Replicating"
    CLEANED = "Cleaned"
    FAILED = "Failed"
    STUCK = "Stuck"


class UploadTrigger(StrEnum):
    """The events that move an upload."""

    ATTEMPT_FAILED = "attempt_failed"
    EXHAUSTED = "exhausted"
    REFUSED = "refused"
    UPLOADED = "uploaded"
    REGISTRATION_DEFERRED = "registration_deferred"
    FAILED_OVER = "failed_over"
    REGISTERED = "registered"
    REGISTRATION_FAILED = "registration_failed"
    REPLICATION_STARTED = "replication_started"
    CLEANED = "cleaned"
    REQUEST_FAILED = "request_failed"
    OPERATOR_RETRY = "operator_retry"
    CANCELLED = "cancelled"


class Role(StrEnum):
    """Why an SE is in an upload's candidate list."""

    DESTINATION = "destination"
    FAILOVER = "failover"
