"""What one pass of the executor did: how many requests it took, how it left them, which failed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from failover.environment import Environment
from failover.request import failure_reason
from persistence.requests import count_uploads_of_request
from states import UploadState

__all__ = ["FailedRequest", "PassReport", "failed_requests"]


@dataclass(frozen=True)
class PassReport:
    """
    The account of one :meth:`~failover.Executor.run_pass` (or of several, merged).

    Args:
        taken: how many requests were taken (a request put back unfinished and taken again counts
            once per take).
        left: by status, how many requests the pass left so: ``Done``, ``Failed`` and ``Canceled`` are
            final; ``Waiting`` waits for a retry (or for its next run, if the executor was stopped);
            ``Assigned``: another executor took it over.
        failed: the ids of the requests the pass left ``Failed``, in the order they ended.
    """

    taken: int = 0
    left: dict[str, int] = field(default_factory=dict)
    failed: tuple[int, ...] = ()

    @classmethod
    def merged(cls, reports: Iterable[PassReport]) -> PassReport:
        """One report for passes run side by side (an executor per worker process)."""
        taken, left, failed = 0, Counter[str](), list[int]()
        for report in reports:
            taken += report.taken
            left.update(report.left)
            failed += report.failed
        return cls(taken, dict(left), tuple(failed))


@dataclass(frozen=True)
class FailedRequest:
    """A request a pass left Failed: why (:func:`~failover.request.failure_reason`), and how many Stuck."""

    request_id: int
    reason: str
    stuck: int


def failed_requests(env: Environment, report: PassReport) -> list[FailedRequest]:
    """Each request ``report`` says the pass left Failed, with why and the uploads it left Stuck."""
    return [
        FailedRequest(
            request_id,
            failure_reason(env.requests.load(request_id)),
            count_uploads_of_request(env.store.conn, request_id, UploadState.STUCK),
        )
        for request_id in report.failed
    ]
