"""ArtifactService: a thin grpc.aio servicer over the artifact store and an object backend.

Uploads are streamed into the backend by one thread per upload through a small bounded
queue, so the service holds at most a few chunks (plus one multipart part for S3) per
upload however large the artifact; downloads read the backend range chunk by chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import structlog

from conveyor.artifacts import retention, store
from conveyor.artifacts.backends import ObjectStore
from conveyor.artifacts.domain import (
    Kind,
    RangeNotSatisfiable,
    State,
    check_id,
    check_name,
    object_key,
    resolve_range,
)
from conveyor.artifacts.upload import END, UploadSink
from conveyor.artifacts.v1 import artifact_pb2, artifacts_service_pb2, artifacts_service_pb2_grpc
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Unavailable, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.ids import utcnow
from conveyor.kernel.paging import page_size
from conveyor.kernel.protoconv import timestamp
from conveyor.kernel.settings import Settings

log = structlog.get_logger(__name__)

SERVICE_NAME = artifacts_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name
SEND_CHUNK = 1024 * 1024
MAX_UPLOAD_MESSAGE = 4 * 1024 * 1024
MAX_RUNS_PER_DELETE = 100
DELETE_BATCH = 500
DEFAULT_URL_TTL = timedelta(minutes=15)
MAX_URL_TTL = timedelta(days=7)
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(;[ \w.+=\"-]*)?$")
_KIND_PB = {
    Kind.STDOUT: artifact_pb2.ARTIFACT_KIND_STDOUT,
    Kind.STDERR: artifact_pb2.ARTIFACT_KIND_STDERR,
    Kind.FILE: artifact_pb2.ARTIFACT_KIND_FILE,
    Kind.ARCHIVE: artifact_pb2.ARTIFACT_KIND_ARCHIVE,
}
_PB_KIND = {v: k for k, v in _KIND_PB.items()}


def artifact_pb(rec: store.ArtifactRecord) -> artifact_pb2.Artifact:
    """Store record -> proto."""
    return artifact_pb2.Artifact(
        artifact_id=rec.id,
        run_id=rec.run_id,
        node_id=rec.node_id,
        attempt=rec.attempt,
        kind=_KIND_PB[rec.kind],
        name=rec.name,
        size_bytes=rec.size_bytes,
        sha256=rec.sha256,
        content_type=rec.content_type,
        backend=rec.backend,
        storage_key=rec.storage_key,
        create_time=timestamp(rec.created_at),
    )


def _header(first: Any) -> Any:
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument(
            "the first message of an upload must be its header",
            violations=[Violation("header", "send the header first", "REQUIRED")],
        )
    header = first.header
    if header.kind not in _PB_KIND:
        raise InvalidArgument(
            "header.kind is required",
            violations=[Violation("header.kind", "STDOUT, STDERR, FILE or ARCHIVE", "REQUIRED")],
        )
    check_name(header.name)
    content_type = header.content_type or "application/octet-stream"
    if len(content_type) > 200 or not _CONTENT_TYPE.match(content_type):
        raise InvalidArgument(
            "header.content_type is not a MIME type",
            violations=[Violation("header.content_type", "type/subtype", "INVALID")],
        )
    return header


class ArtifactServicer(artifacts_service_pb2_grpc.ArtifactServiceServicer):  # type: ignore[misc]
    """Uploads, downloads, lists and deletes artifacts; DB and backend work runs in threads."""

    def __init__(self, *, settings: Settings, db: Database, backend: ObjectStore) -> None:
        self._settings = settings
        self._db = db
        self._backend = backend
        self.sweeper = retention.Sweeper(
            self, executor_addr=settings.executor_addr, monitor_addr=settings.monitor_addr
        )

    def _tx(self, fn: Any, *args: Any, read: bool, **kwargs: Any) -> Any:
        with self._db.read() if read else self._db.transaction() as session:
            return fn(session, *args, **kwargs)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn(session, ...)` in one transaction, in a thread."""
        return await asyncio.to_thread(self._tx, fn, *args, read=False, **kwargs)

    async def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Like `_call` for a function that only reads (no write lock on SQLite)."""
        return await asyncio.to_thread(self._tx, fn, *args, read=True, **kwargs)

    @map_errors
    async def UploadArtifact(  # noqa: N802
        self,
        request_iterator: AsyncIterator[artifacts_service_pb2.UploadArtifactRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.UploadArtifactResponse:
        """See the proto."""
        first = None
        async for message in request_iterator:
            first = message
            break
        header = _header(first)
        key = object_key(header.run_id, header.node_id, header.attempt)
        content_type = header.content_type or "application/octet-stream"
        row: store.ArtifactRecord = await self._call(
            store.begin_upload,
            run_id=header.run_id,
            node_id=header.node_id,
            attempt=header.attempt,
            kind=_PB_KIND[header.kind],
            name=header.name,
            content_type=content_type,
            backend=self._backend.name,
            storage_key=key,
        )
        sink = UploadSink(self._backend, key, content_type)
        sink.start()
        received = 0
        ok = False
        try:
            async for message in request_iterator:
                if message.WhichOneof("part") != "data":
                    raise InvalidArgument(
                        "only the first message of an upload may be a header",
                        violations=[Violation("header", "sent twice", "DUPLICATE")],
                    )
                received += len(message.data)
                if received > self._settings.artifacts_max_bytes:
                    raise InvalidArgument(
                        f"artifact is larger than {self._settings.artifacts_max_bytes} bytes",
                        violations=[Violation("data", "too large", "TOO_LARGE")],
                    )
                if message.data:
                    await sink.offer(message.data)
                if sink.done.is_set():
                    break
            await sink.offer(END)
            await sink.finish()
            if sink.error is not None:
                raise Unavailable(f"artifact backend failed: {sink.error}") from sink.error
            ok = True
        finally:
            if not ok:
                await sink.offer(InvalidArgument("upload aborted"))
                await sink.finish()
                await self._discard(row)
        done = await self._call(
            store.complete_upload, row.id, size=sink.size, sha256=sink.digest.hexdigest()
        )
        log.info("artifact stored", run_id=done.run_id, step_id=done.node_id, size=done.size_bytes)
        return artifacts_service_pb2.UploadArtifactResponse(artifact=artifact_pb(done))

    async def _discard(self, row: store.ArtifactRecord) -> None:
        """Undo a failed upload: object first (if any part landed), then the row."""
        try:
            await self._call(store.mark_deleting, [row.id])
            await asyncio.to_thread(self._backend.delete, row.storage_key)
            await self._call(store.remove_rows, [row.id])
        except Exception:  # the stale-row sweep retries
            log.exception("could not discard a failed upload", artifact_id=row.id)

    async def store_bytes(
        self,
        *,
        run_id: str,
        node_id: str,
        kind: Kind,
        name: str,
        content_type: str,
        chunks: AsyncIterator[bytes],
    ) -> store.ArtifactRecord:
        """Store an artifact the service makes itself (run archives), streamed."""
        key = object_key(run_id, node_id, 1)
        row: store.ArtifactRecord = await self._call(
            store.begin_upload,
            run_id=run_id,
            node_id=node_id,
            attempt=1,
            kind=kind,
            name=name,
            content_type=content_type,
            backend=self._backend.name,
            storage_key=key,
        )
        sink = UploadSink(self._backend, key, content_type)
        sink.start()
        try:
            async for chunk in chunks:
                await sink.offer(chunk)
            await sink.offer(END)
        except BaseException:
            await sink.offer(InvalidArgument("archive aborted"))
            await sink.finish()
            await self._discard(row)
            raise
        await sink.finish()
        if sink.error is not None:
            await self._discard(row)
            raise Unavailable(f"artifact backend failed: {sink.error}") from sink.error
        done: store.ArtifactRecord = await self._call(
            store.complete_upload, row.id, size=sink.size, sha256=sink.digest.hexdigest()
        )
        return done

    @map_errors
    async def DownloadArtifact(  # noqa: N802
        self,
        request: artifacts_service_pb2.DownloadArtifactRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[artifacts_service_pb2.DownloadArtifactResponse]:
        """See the proto."""
        rec: store.ArtifactRecord = await self._read(
            store.get, request.artifact_id, run_id=request.run_id
        )
        try:
            span = resolve_range(rec.size_bytes, request.offset, request.length)
        except RangeNotSatisfiable as exc:
            raise InvalidArgument(
                str(exc),
                reason="RANGE_NOT_SATISFIABLE",
                metadata={"size": str(rec.size_bytes)},
                violations=[Violation("offset", str(exc), "OUT_OF_RANGE")],
            ) from exc
        except ValueError as exc:
            raise InvalidArgument(
                str(exc), violations=[Violation("offset", str(exc), "OUT_OF_RANGE")]
            ) from exc
        chunks = self._backend.read(rec.storage_key, span.offset, span.length)
        position = span.offset
        first = True
        try:
            while True:
                block = await asyncio.to_thread(next, chunks, None)
                if block is None:
                    break
                for start in range(0, len(block), SEND_CHUNK):
                    piece = block[start : start + SEND_CHUNK]
                    reply = artifacts_service_pb2.DownloadArtifactResponse(
                        data=piece, offset=position
                    )
                    if first:
                        reply.artifact.CopyFrom(artifact_pb(rec))
                        first = False
                    position += len(piece)
                    yield reply
            if first:  # an empty range still tells the caller what it asked for
                yield artifacts_service_pb2.DownloadArtifactResponse(
                    artifact=artifact_pb(rec), offset=position
                )
        finally:
            await asyncio.to_thread(chunks.close)

    @map_errors
    async def GetArtifact(  # noqa: N802
        self,
        request: artifacts_service_pb2.GetArtifactRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.GetArtifactResponse:
        """See the proto."""
        rec: store.ArtifactRecord = await self._read(
            store.get, request.artifact_id, run_id=request.run_id
        )
        ttl = DEFAULT_URL_TTL
        if request.HasField("url_ttl"):
            ttl = request.url_ttl.ToTimedelta()
            if ttl <= timedelta(0) or ttl > MAX_URL_TTL:
                raise InvalidArgument(
                    "url_ttl must be positive and at most 7 days",
                    violations=[Violation("url_ttl", "out of range", "OUT_OF_RANGE")],
                )
        reply = artifacts_service_pb2.GetArtifactResponse(artifact=artifact_pb(rec))
        url = await asyncio.to_thread(self._backend.presign, rec.storage_key, ttl)
        if url:
            reply.download_url = url
            reply.download_url_expire_time.FromDatetime(utcnow() + ttl)
        return reply

    @map_errors
    async def ListArtifacts(  # noqa: N802
        self,
        request: artifacts_service_pb2.ListArtifactsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.ListArtifactsResponse:
        """See the proto."""
        if not request.run_id:
            raise InvalidArgument(
                "run_id is required", violations=[Violation("run_id", "empty", "REQUIRED")]
            )
        records, token = await self._read(
            store.list_artifacts,
            run_id=request.run_id,
            node_id=request.node_id,
            page_size=page_size(request.page_size),
            page_token=request.page_token,
        )
        return artifacts_service_pb2.ListArtifactsResponse(
            artifacts=[artifact_pb(r) for r in records], next_page_token=token
        )

    @map_errors
    async def DeleteArtifact(  # noqa: N802
        self,
        request: artifacts_service_pb2.DeleteArtifactRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.DeleteArtifactResponse:
        """See the proto."""
        rec: store.ArtifactRecord = await self._read(
            store.get, request.artifact_id, run_id=request.run_id
        )
        await self.delete_ids([rec.id])
        return artifacts_service_pb2.DeleteArtifactResponse()

    @map_errors
    async def DeleteRunArtifacts(  # noqa: N802
        self,
        request: artifacts_service_pb2.DeleteRunArtifactsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.DeleteRunArtifactsResponse:
        """See the proto."""
        run_ids = list(request.run_ids)
        if not run_ids or len(run_ids) > MAX_RUNS_PER_DELETE:
            raise InvalidArgument(
                f"run_ids must hold 1 to {MAX_RUNS_PER_DELETE} ids",
                violations=[Violation("run_ids", f"got {len(run_ids)}", "OUT_OF_RANGE")],
            )
        for run_id in run_ids:
            check_id(run_id, "run_ids")
        deleted = 0
        while True:
            ids = await self._read(store.run_artifact_ids, run_ids, limit=DELETE_BATCH)
            if not ids:
                break
            deleted += await self.delete_ids(ids)
        return artifacts_service_pb2.DeleteRunArtifactsResponse(deleted=deleted)

    async def delete_ids(self, ids: list[str]) -> int:
        """Row DELETING → object gone → row gone; a crash in between is retried later."""
        records: list[store.ArtifactRecord] = await self._call(store.mark_deleting, ids)
        for rec in records:
            await asyncio.to_thread(self._backend.delete, rec.storage_key)
        count: int = await self._call(store.remove_rows, [r.id for r in records])
        return count

    @map_errors
    async def SetRetentionPolicy(  # noqa: N802
        self,
        request: artifacts_service_pb2.SetRetentionPolicyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.SetRetentionPolicyResponse:
        """See the proto."""
        stored = await self._call(retention.set_policy, policy_of(request.policy))
        return artifacts_service_pb2.SetRetentionPolicyResponse(policy=policy_pb(stored))

    @map_errors
    async def ListRetentionPolicies(  # noqa: N802
        self,
        request: artifacts_service_pb2.ListRetentionPoliciesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.ListRetentionPoliciesResponse:
        """See the proto."""
        found = await self._read(retention.list_policies)
        return artifacts_service_pb2.ListRetentionPoliciesResponse(
            policies=[policy_pb(p) for p in found]
        )

    @map_errors
    async def DeleteRetentionPolicy(  # noqa: N802
        self,
        request: artifacts_service_pb2.DeleteRetentionPolicyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.DeleteRetentionPolicyResponse:
        """See the proto."""
        await self._call(retention.delete_policy, request.job_id)
        return artifacts_service_pb2.DeleteRetentionPolicyResponse()

    @map_errors
    async def SweepRetention(  # noqa: N802
        self,
        request: artifacts_service_pb2.SweepRetentionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> artifacts_service_pb2.SweepRetentionResponse:
        """See the proto."""
        limit = request.limit or 100
        if not 0 < limit <= retention.MAX_SWEEP:
            raise InvalidArgument(
                f"limit must be between 1 and {retention.MAX_SWEEP}",
                violations=[Violation("limit", f"got {limit}", "OUT_OF_RANGE")],
            )
        done = await self.sweeper.sweep(dry_run=request.dry_run, limit=limit)
        return artifacts_service_pb2.SweepRetentionResponse(
            run_ids=done.run_ids,
            artifacts=done.artifacts,
            archived=done.archived,
            dry_run=done.dry_run,
        )

    async def retain_forever(self) -> None:
        """Apply the retention policies every `retention_sweep_interval_s` (0: never)."""
        every = self._settings.retention_sweep_interval_s
        if every <= 0:
            return
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweeper.sweep(dry_run=False, limit=retention.MAX_SWEEP)
            except Exception:  # retried at the next interval
                log.exception("retention sweep failed")

    async def sweep_stale_forever(self, *, every_s: float = 600.0) -> None:
        """Finish deletes and failed uploads a crash left behind (WRITING rows after 2 days)."""
        while True:
            with contextlib.suppress(Exception):
                stale: list[store.ArtifactRecord] = await self._read(
                    store.stale_rows, older_than=timedelta(days=2), limit=DELETE_BATCH
                )
                deleting = [r.id for r in stale if r.state == State.DELETING]
                writing = [r.id for r in stale if r.state == State.WRITING]
                if deleting or writing:
                    await self.delete_ids(deleting + writing)
            await asyncio.sleep(every_s)


def policy_of(pb: Any) -> retention.Policy:
    """Proto -> domain policy."""
    return retention.Policy(
        job_id=pb.job_id,
        keep_runs_for=pb.keep_runs_for.ToTimedelta() if pb.HasField("keep_runs_for") else None,
        keep_last_runs=pb.keep_last_runs,
        keep_artifacts_for=pb.keep_artifacts_for.ToTimedelta()
        if pb.HasField("keep_artifacts_for")
        else None,
        archive=pb.archive,
        updated_at=utcnow(),
    )


def policy_pb(policy: retention.Policy) -> Any:
    """Domain policy -> proto."""
    pb = artifacts_service_pb2.RetentionPolicy(
        job_id=policy.job_id,
        keep_last_runs=policy.keep_last_runs,
        archive=policy.archive,
        update_time=timestamp(policy.updated_at),
    )
    if policy.keep_runs_for is not None:
        pb.keep_runs_for.FromTimedelta(policy.keep_runs_for)
    if policy.keep_artifacts_for is not None:
        pb.keep_artifacts_for.FromTimedelta(policy.keep_artifacts_for)
    return pb


def registration(servicer: ArtifactServicer) -> ServiceRegistration:
    """Register the servicer on a server."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: artifacts_service_pb2_grpc.add_ArtifactServiceServicer_to_server(
            servicer, server
        ),
    )
