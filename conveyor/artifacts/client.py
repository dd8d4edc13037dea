"""Synchronous client of the ArtifactService, and the worker's artifact sink over it.

A worker never needs the service's disk: `ServiceArtifactSink.open` starts an
UploadArtifact client stream fed from a small bounded queue, so a step's output reaches the
object store while the step runs, and a fast writer waits for the network instead of
growing the worker's memory.
"""

from __future__ import annotations

import mimetypes
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from conveyor.artifacts.v1 import artifact_pb2, artifacts_service_pb2, artifacts_service_pb2_grpc
from conveyor.kernel.grpcserver import sync_channel

UPLOAD_QUEUE_CHUNKS = 16
MAX_MESSAGE = 1024 * 1024
TEXT = "text/plain; charset=utf-8"
_END = object()
_ABORT = object()

KINDS = {
    "STDOUT": artifact_pb2.ARTIFACT_KIND_STDOUT,
    "STDERR": artifact_pb2.ARTIFACT_KIND_STDERR,
    "FILE": artifact_pb2.ARTIFACT_KIND_FILE,
    "ARCHIVE": artifact_pb2.ARTIFACT_KIND_ARCHIVE,
}


def kind_name(kind: int) -> str:
    """`ARTIFACT_KIND_STDOUT` -> `STDOUT`."""
    return str(artifact_pb2.ArtifactKind.Name(kind)).removeprefix("ARTIFACT_KIND_")  # type: ignore[arg-type]


def artifact_uri(artifact_id: str) -> str:
    """How step outputs refer to an artifact (`artifact://<id>`)."""
    return f"artifact://{artifact_id}"


def record_of(artifact: Any) -> dict[str, Any]:
    """The artifact record a runner keeps in its outcome."""
    return {
        "artifact_id": artifact.artifact_id,
        "name": artifact.name,
        "uri": artifact_uri(artifact.artifact_id),
        "size": artifact.size_bytes,
        "sha256": artifact.sha256,
        "kind": kind_name(artifact.kind),
    }


class ArtifactClient:
    """Typed calls to the ArtifactService: directly with this process's internal credential,
    or through the gateway for reads with a `channel` that carries a token."""

    def __init__(self, address: str, *, channel: grpc.Channel | None = None) -> None:
        self._own = channel is None
        self._channel = channel or sync_channel(address)
        self.stub = artifacts_service_pb2_grpc.ArtifactServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel (when this client opened it)."""
        if self._own:
            self._channel.close()

    def upload(
        self,
        *,
        run_id: str,
        node_id: str,
        attempt: int,
        kind: str,
        name: str,
        chunks: Iterable[bytes],
        content_type: str = "",
    ) -> Any:
        """Upload an artifact from an iterator of chunks; returns the stored Artifact."""
        header = artifacts_service_pb2.UploadHeader(
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            kind=KINDS[kind],
            name=name,
            content_type=content_type,
        )

        def messages() -> Iterator[Any]:
            yield artifacts_service_pb2.UploadArtifactRequest(header=header)
            for chunk in chunks:
                for start in range(0, len(chunk), MAX_MESSAGE):
                    yield artifacts_service_pb2.UploadArtifactRequest(
                        data=chunk[start : start + MAX_MESSAGE]
                    )

        return self.stub.UploadArtifact(messages()).artifact

    def download(
        self, artifact_id: str, *, run_id: str = "", offset: int = 0, length: int = 0
    ) -> Iterator[bytes]:
        """The bytes of an artifact (or a range of it), streamed."""
        call = self.stub.DownloadArtifact(
            artifacts_service_pb2.DownloadArtifactRequest(
                artifact_id=artifact_id, run_id=run_id, offset=offset, length=length
            )
        )
        try:
            for reply in call:
                if reply.data:
                    yield reply.data
        finally:
            call.cancel()

    def list(self, run_id: str, *, node_id: str = "") -> Iterator[Any]:
        """Every artifact of a run (or step), page by page."""
        token = ""
        while True:
            reply = self.stub.ListArtifacts(
                artifacts_service_pb2.ListArtifactsRequest(
                    run_id=run_id, node_id=node_id, page_size=500, page_token=token
                ),
                timeout=30,
            )
            yield from reply.artifacts
            token = reply.next_page_token
            if not token:
                return

    def get(self, artifact_id: str, *, run_id: str = "") -> Any:
        """An artifact's metadata (and presigned URL for S3)."""
        return self.stub.GetArtifact(
            artifacts_service_pb2.GetArtifactRequest(artifact_id=artifact_id, run_id=run_id),
            timeout=30,
        )


class StreamingUpload:
    """An artifact being written: `write` as bytes come, `close` for the record."""

    def __init__(
        self,
        client: ArtifactClient,
        *,
        run_id: str,
        node_id: str,
        attempt: int,
        kind: str,
        name: str,
        content_type: str = "",
    ) -> None:
        header = {
            "run_id": run_id,
            "node_id": node_id,
            "attempt": attempt,
            "kind": kind,
            "name": name,
            "content_type": content_type,
        }
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=UPLOAD_QUEUE_CHUNKS)
        self._result: Any = None
        self._error: BaseException | None = None
        self._failed = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(client, header),
            name="conveyor-artifact-stream",
            daemon=True,
        )
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise RuntimeError("upload aborted")
            yield item

    def _run(self, client: ArtifactClient, header: dict[str, Any]) -> None:
        try:
            self._result = client.upload(chunks=self._chunks(), **header)
        except BaseException as exc:
            self._error = exc
            self._failed.set()
            # Unblock a writer waiting on a full queue: drain what is left.
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def write(self, data: bytes) -> None:
        """Queue bytes for the upload; blocks while the queue is full (back-pressure)."""
        if not data:
            return
        while not self._failed.is_set():
            try:
                self._queue.put(bytes(data), timeout=0.5)
                return
            except queue.Full:
                continue
        raise OSError(f"artifact upload failed: {self._error}")

    def close(self) -> dict[str, Any]:
        """Finish the upload; returns the artifact record (raises if the upload failed)."""
        self._put_control(_END)
        self._thread.join()
        if self._error is not None or self._result is None:
            raise OSError(f"artifact upload failed: {self._error}")
        return record_of(self._result)

    def abort(self) -> None:
        """Give up: the service discards what it received."""
        self._put_control(_ABORT)
        self._thread.join(timeout=30)

    def _put_control(self, item: object) -> None:
        while self._thread.is_alive() and not self._failed.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


class ServiceArtifactSink:
    """The worker's `ArtifactSink`: every artifact goes to the ArtifactService."""

    def __init__(self, client: ArtifactClient) -> None:
        self.client = client

    def open(
        self, run_id: str, node_id: str, attempt: int, name: str, *, kind: str = ""
    ) -> StreamingUpload:
        """Start streaming an artifact; `kind` defaults from the name (stdout/stderr/file)."""
        kind = kind or default_kind(name)
        return StreamingUpload(
            self.client,
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            kind=kind,
            name=name,
            content_type=TEXT
            if kind in ("STDOUT", "STDERR")
            else mimetypes.guess_type(name)[0] or "",
        )

    def save(
        self, run_id: str, node_id: str, attempt: int, name: str, data_iter: Iterable[bytes]
    ) -> str:
        """Upload a whole artifact; returns its URI."""
        artifact = self.client.upload(
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            kind=default_kind(name),
            name=name,
            chunks=data_iter,
        )
        return artifact_uri(artifact.artifact_id)


def default_kind(name: str) -> str:
    """STDOUT/STDERR for the output streams, FILE for anything else."""
    return name.upper() if name in ("stdout", "stderr") else "FILE"
