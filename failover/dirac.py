"""
The DIRAC-compatible edge: ``FailoverTransfer`` as DIRAC users know it, over the typed core.

This is the only module where DIRAC's ``{"OK": ...}`` result dicts exist. Each public method is a thin
wrapper: :func:`dirac_result` turns a return value into ``S_OK(value)`` and a failover error into
``S_ERROR`` (with ``Errno`` and, for a total failure, the per-SE ``Errors``). A drop-in replacement for
``DIRAC.DataManagementSystem.Client.FailoverTransfer.FailoverTransfer``::

    from failover import FailoverTransfer
    ft = FailoverTransfer()
    result = ft.transferAndRegisterFile("out.root", "/tmp/out.root", "/vo/user/a/out.root", ["SE-A"], {})
    if not result["OK"]:
        ...
    ft.commitRequest()
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import logging
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec

from failover.environment import Environment
from failover.errors import FailoverError, InvalidRequest, UploadFailed
from failover.hand_operations import FileFacts, file_removal, registrations, replica_removal, replication
from failover.request import Operation, Request, find_problems, refresh_statuses, validate_request
from failover.uploads import UploadResult, upload
from persistence.errors import StoreError
from persistence.requests import RequestHeader

__all__ = ["FailoverTransfer", "S_ERROR", "S_OK", "dirac_result"]

P = ParamSpec("P")
DiracResult = dict[str, Any]


def S_OK(value: Any = None) -> DiracResult:
    """DIRAC's success result."""
    return {"OK": True, "Value": value}


def S_ERROR(errno_: int, message: str, **extra: Any) -> DiracResult:
    """DIRAC's error result."""
    return {"OK": False, "Message": message, "Errno": errno_, **extra}


def dirac_result(method: Callable[P, Any]) -> Callable[P, DiracResult]:
    """Wrap a typed method so that it returns DIRAC's result dicts and never raises failover's errors."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> DiracResult:
        try:
            return S_OK(method(*args, **kwargs))
        except UploadFailed as err:
            return S_ERROR(err.dirac_errno, str(err), Errors=dict(err.errors))
        except FailoverError as err:
            return S_ERROR(err.dirac_errno, str(err))
        except (StoreError, sqlite3.Error) as err:
            return S_ERROR(errno.EIO, f"request store unavailable: {err}")

    return wrapper


def _content_key(operation: Operation) -> str:
    """What makes an operation added to a request the same one: its type, SEs, catalogs and files."""
    what = (
        str(operation.type),
        operation.target_se,
        operation.source_se,
        operation.catalog,
        [(f.lfn, f.pfn) for f in operation.files],
    )
    return hashlib.sha256(repr(what).encode()).hexdigest()[:32]


def _filedict(meta: Mapping[str, Any], result: UploadResult) -> dict[str, Any]:
    real = {"LFN": result.lfn, "Size": result.size, "Checksum": result.checksum}
    return {**meta, **real, "ChecksumType": result.checksum_type, "GUID": result.guid}


def _value(result: UploadResult, meta: Mapping[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = {"uploadedSE": result.se, "lfn": result.lfn}
    if result.deferred:
        value.update(filedict=_filedict(meta, result), registration="request")
    return value


class FailoverTransfer:
    """
    Transfer and register files with failover, accumulating the request that finishes the job later.

    Args:
        requestObject: a request to add operations to; a new ``noname_request`` otherwise.
        log: the logger to use (default: the ``failover`` logger).
        defaultChecksumType: the checksum type when ``fileMetaDict`` names none (``None`` = ADLER32).
        environment: storage, catalogs and database (default: the embedded workspace).
        client_key: identifies this client's request in the store (default: the key of the client that
            ``requestObject`` was given to before, so that clients sharing one request object add to one
            stored request; else a new random key).
    """

    def __init__(
        self,
        requestObject: Request | None = None,
        log: logging.Logger | None = None,
        defaultChecksumType: str | None = "ADLER32",
        *,
        environment: Environment | None = None,
        client_key: str | None = None,
    ) -> None:
        if environment is None:
            from failover.workspace import open_workspace

            environment = open_workspace()
        self.env = environment
        self.log = log or logging.getLogger("failover")
        self.defaultChecksumType = defaultChecksumType
        # The request object DIRAC code holds (``ft.request``, the workflow's shared request): the same
        # object all along, brought in step with the store whenever it is asked for (not after every
        # upload: a job of thousands of files would load its growing request each time). Operations added
        # to it directly, as DIRAC code adds to its request, are stored at the next call, in order.
        live = requestObject or Request(name="noname_request", source_component="FailoverTransfer")
        owner, group = environment.request_owner
        live.owner, live.owner_group = live.owner or owner, live.owner_group or group
        self._live = live
        # The operations the store gave the request object (held, so that their ids stay theirs): any
        # other one in it was added by the caller, even one carrying a DIRAC OperationID.
        self._from_store: list[Operation] = []
        live.client_key = client_key or live.client_key or uuid.uuid4().hex
        self._header = RequestHeader(
            live.client_key,
            live.name,
            live.owner,
            live.owner_group,
            live.source_component,
            live.job_id,
        )

    def _store_added(self) -> None:
        """
        Store the operations of the request object that are not stored yet, in order, after those stored.

        These are the passed-in request's own operations, then any that DIRAC code added to ``request``.
        Each is keyed by the client key, its content and how many alike come before it, so that a restarted
        job passing the same request and key does not store them twice, even once the first run committed
        (a repeat of a removal could remove what the job stored in between); a skipped one is logged.

        Raises:
            InvalidRequest: one of them would be refused at commit (nothing is stored; fix or remove it).
        """
        added = self._added()
        if not added:
            return
        problems = [
            f"{op.type} of {', '.join(f.lfn for f in op.files) or 'no file'}: {problem}"
            for op in added
            for problem in find_problems(self._alone(op))
        ]
        if problems:
            raise InvalidRequest(f"An operation added to the request is not valid: {'; '.join(problems)}")
        seen: Counter[str] = Counter()
        keys = []
        for op in added:
            content = _content_key(op)
            keys.append(f"{self._header.client_key}/added/{content}/{seen[content]}")
            seen[content] += 1
        held = self.env.requests.holding_requests(keys)
        for op, key in zip(added, keys, strict=True):
            if key in held:
                # Stored before: a restarted job making its calls again, or a repeat. A second RemoveFile
                # or RemoveReplica could remove what the job stored in between.
                lfns = ", ".join(f.lfn for f in op.files)
                self.log.warning(
                    "%s of %s is in request %d already: not added again", op.type, lfns, held[key]
                )
        fresh = [(op, key) for op, key in zip(added, keys, strict=True) if key not in held]
        if fresh:
            # Keyed, so that what another client stores meanwhile is not stored twice.
            request_id = self.env.requests.ensure(self._header)
            self.env.requests.add_operations(request_id, [op for op, _ in fresh], keys=[k for _, k in fresh])
        # Stored now (or found stored by their keys): the next refresh gives them their ids.
        self._from_store.extend(added)

    def _alone(self, operation: Operation) -> Request:
        """A request of this client holding only ``operation`` (a copy), to validate it."""
        header = self._header
        alone = Request(name=header.name, owner=header.owner, owner_group=header.owner_group)
        alone.add_operation(dataclasses.replace(operation))
        return alone

    def _refresh(self) -> Request:
        """
        Bring the request object in step with the store (the client's latest request) and return it; the
        operations added to it and not stored yet stay at its end.
        """
        row = self.env.requests.find(self._header.client_key)
        if row is None:
            return self._live
        stored = self.env.requests.load(row.id)
        refresh_statuses(stored)
        for name in (
            f.name for f in dataclasses.fields(Request) if f.name not in ("operations", "client_key")
        ):
            setattr(self._live, name, getattr(stored, name))
        added = self._added()
        self._live.operations[:] = stored.operations
        self._from_store = list(stored.operations)
        for operation in added:
            self._live.add_operation(operation)
        return self._live

    def _added(self) -> list[Operation]:
        """
        The operations of the request object that the store did not give it, in order. One with an
        idempotency key was loaded from the store (by another client given the same object): not added.
        """
        from_store = {id(op) for op in self._from_store}
        return [op for op in self._live.operations if id(op) not in from_store and op.idempotency_key is None]

    def _upload(
        self, local_path: str, lfn: str, meta: Mapping[str, Any] | None, **where: Any
    ) -> UploadResult:
        self._store_added()
        return upload(
            self.env,
            local_path,
            lfn,
            file_meta=meta,
            default_checksum_type=self.defaultChecksumType,
            request=self._header,
            **where,
        )

    @dirac_result
    def transferAndRegisterFile(
        self,
        fileName: str,
        localPath: str,
        lfn: str,
        destinationSEList: str | Iterable[str],
        fileMetaDict: Mapping[str, Any],
        fileCatalog: str | Iterable[str] | None = None,
        masterCatalogOnly: bool = False,
        retryUpload: bool = False,
    ) -> dict[str, Any]:
        """Upload to the first destination SE that takes the file; defer registration if a catalog is down."""
        self.log.info("uploading %s (%s) to %s", lfn, fileName, destinationSEList)
        result = self._upload(
            localPath,
            lfn,
            fileMetaDict,
            destinations=destinationSEList,
            catalogs=fileCatalog,
            master_only=masterCatalogOnly,
            retry_upload=retryUpload,
        )
        return _value(result, fileMetaDict or {})

    @dirac_result
    def transferAndRegisterFileFailover(
        self,
        fileName: str,
        localPath: str,
        lfn: str,
        targetSE: str | Iterable[str],
        failoverSEList: str | Iterable[str],
        fileMetaDict: Mapping[str, Any],
        fileCatalog: str | Iterable[str] | None = None,
        masterCatalogOnly: bool = False,
    ) -> dict[str, Any]:
        """Upload to a failover SE (targets skipped) and queue replication to the target and cleanup."""
        self.log.info("uploading %s (%s) to failover %s for %s", lfn, fileName, failoverSEList, targetSE)
        result = self._upload(
            localPath,
            lfn,
            fileMetaDict,
            failovers=failoverSEList,
            targets=targetSE,
            catalogs=fileCatalog,
            master_only=masterCatalogOnly,
        )
        return _value(result, fileMetaDict or {})

    @dirac_result
    def transferAndRegisterFileWithFailover(
        self,
        fileName: str,
        localPath: str,
        lfn: str,
        destinationSEList: str | Iterable[str],
        failoverSEList: str | Iterable[str],
        fileMetaDict: Mapping[str, Any],
        fileCatalog: str | Iterable[str] | None = None,
        masterCatalogOnly: bool = False,
    ) -> dict[str, Any]:
        """Try the destination SEs in order, then fall back to the failover SEs (one call)."""
        self.log.info(
            "uploading %s (%s) to %s, failover %s", lfn, fileName, destinationSEList, failoverSEList
        )
        result = self._upload(
            localPath,
            lfn,
            fileMetaDict,
            destinations=destinationSEList,
            failovers=failoverSEList,
            catalogs=fileCatalog,
            master_only=masterCatalogOnly,
        )
        return _value(result, fileMetaDict or {})

    def _add_by_hand(self, operations: list[Operation]) -> None:
        """
        Append operations made by hand to the request, after everything before them (operations added to
        the request object first, so that a refusal of one of those leaves these out of it).

        The same operation made again, by this job or by it restarted, is stored once (:meth:`_store_added`).

        Raises:
            InvalidRequest: an operation the request validation would refuse at commit.
        """
        for operation in operations:
            validate_request(self._alone(operation))
        self._store_added()
        for operation in operations:
            self._live.add_operation(operation)
        self._store_added()

    @dirac_result
    def _setFileReplicationRequest(
        self, lfn: str, targetSE: str | Iterable[str], fileMetaDict: Mapping[str, Any], sourceSE: str = ""
    ) -> None:
        """Queue a ReplicateAndRegister of ``lfn`` to ``targetSE`` (from ``sourceSE``, else any replica)."""
        self.log.info("setting ReplicateAndRegister request for %s to %s", lfn, targetSE)
        facts = FileFacts.from_meta(fileMetaDict, self.defaultChecksumType)
        self._add_by_hand([replication(self.env, lfn, targetSE, facts, sourceSE)])

    @dirac_result
    def _setRegistrationRequest(
        self, lfn: str, targetSE: str, fileDict: Mapping[str, Any], catalog: str | Iterable[str] | None
    ) -> None:
        """Queue one RegisterFile of ``lfn``'s replica at ``targetSE`` per catalog (none named: all)."""
        self.log.info("setting registration request for %s at %s", lfn, targetSE)
        facts = FileFacts.from_meta(fileDict, self.defaultChecksumType)
        self._add_by_hand(registrations(self.env, lfn, targetSE, facts, catalog))

    @dirac_result
    def _setReplicaRemovalRequest(self, lfn: str, se: str | Iterable[str]) -> None:
        """Queue a RemoveReplica of ``lfn`` at ``se`` (a name, a list or a comma-separated string)."""
        self.log.info("setting replica removal request for %s at %s", lfn, se)
        self._add_by_hand([replica_removal(self.env, lfn, se)])

    @dirac_result
    def _setFileRemovalRequest(self, lfn: str, se: str | Iterable[str] = "", pfn: str = "") -> None:
        """Queue a RemoveFile of ``lfn``: every replica and its catalog entries."""
        self.log.info("setting file removal request for %s", lfn)
        self._add_by_hand([file_removal(self.env, lfn, se, pfn)])

    def getRequest(self) -> Request:
        """
        The accumulated request: the passed-in request's operations, then every operation made since, in
        order. It is always the same object (the passed-in one, if any), brought in step with the store
        by this call.
        """
        return self._refresh()

    @property
    def request(self) -> Request:
        """DIRAC code reads ``failoverTransfer.request``: the same as :meth:`getRequest`."""
        return self._refresh()

    @dirac_result
    def commitRequest(self) -> int | None:
        """Make the request executable; ``None`` when it is empty. Committing again returns the same id."""
        try:
            self._store_added()
        except InvalidRequest as err:
            raise InvalidRequest(f"Failover request is not valid: {err}") from err
        row = self.env.requests.find(self._header.client_key)
        if row is None:
            return None
        try:
            self.env.requests.commit(row.id)
        except InvalidRequest as err:
            raise InvalidRequest(f"Failover request is not valid: {err}") from err
        self._refresh()
        return row.id
