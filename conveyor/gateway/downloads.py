"""`GET /v1/runs/{run_id}/artifacts/{artifact_id}/content`: an artifact's bytes over HTTP.

Streamed from the artifact service's DownloadArtifact, chunk by chunk (the gateway never
holds more than the gRPC stream's window), with `Range: bytes=…` (one range) answered as
206 with `Content-Range`, an unsatisfiable range as 416, and HEAD answered with the headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conveyor.artifacts.v1 import artifacts_service_pb2
from conveyor.auth.authn import Denied, bearer
from conveyor.gateway.forward import Forwarder
from conveyor.gateway.responses import ACCESS_TOKEN_PARAM, denied_response, error_response
from conveyor.gateway.transcode import CallError, error_body
from conveyor.shared.ranges import ByteRange, RangeNotSatisfiable, parse_http_range

SERVICE = artifacts_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name
PATH = "/v1/runs/{run_id}/artifacts/{artifact_id}/content"
Chunk = artifacts_service_pb2.DownloadArtifactResponse
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _filename(name: str) -> str:
    base = name.rsplit("/", 1)[-1] or "artifact"
    return _SAFE_NAME.sub("_", base)[:200]


def routes(gateway: Any) -> list[Route]:
    """The download route, served through the gateway's forwarder to the artifact service."""
    forwarder: Forwarder = gateway.forwarder

    async def download(request: Request) -> Response:
        get = forwarder.method(f"/{SERVICE}/GetArtifact")
        stream = forwarder.method(f"/{SERVICE}/DownloadArtifact")
        if get is None or stream is None:
            return error_response(
                CallError(grpc.StatusCode.UNIMPLEMENTED, "no artifact service routed")
            )
        # The artifact service trusts the gateway's internal credential, so the caller's token
        # is checked here, against DownloadArtifact's declared role, before anything is read.
        token = bearer(request.headers.get("authorization"))
        if token is None:
            token = request.query_params.get(ACCESS_TOKEN_PARAM)
        try:
            caller = await gateway.authenticator.authorize(token, f"/{SERVICE}/DownloadArtifact")
        except Denied as denied:
            return denied_response(denied)
        run_id, artifact_id = request.path_params["run_id"], request.path_params["artifact_id"]
        metadata = forwarder.metadata(
            request.headers.items(), actor=caller.name if caller.token_id else ""
        )
        try:
            found = await forwarder.call(
                get,
                artifacts_service_pb2.GetArtifactRequest(run_id=run_id, artifact_id=artifact_id),
                metadata=metadata,
            )
        except CallError as failure:
            return error_response(failure)
        artifact = cast(artifacts_service_pb2.GetArtifactResponse, found).artifact
        size = artifact.size_bytes
        try:
            span = parse_http_range(request.headers.get("range", ""), size)
        except RangeNotSatisfiable as exc:
            problem = error_body(CallError(grpc.StatusCode.OUT_OF_RANGE, str(exc)))
            problem["error"]["code"] = 416
            return JSONResponse(
                problem, status_code=416, headers={"content-range": f"bytes */{size}"}
            )
        except ValueError as exc:
            return error_response(CallError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
        whole = span is None
        span = span or ByteRange(0, size)
        headers = {
            "accept-ranges": "bytes",
            "content-length": str(span.length),
            "etag": f'"{artifact.sha256}"',
            "content-disposition": f'attachment; filename="{_filename(artifact.name)}"',
        }
        if not whole:
            headers["content-range"] = f"bytes {span.offset}-{span.offset + span.length - 1}/{size}"
        status = 200 if whole else 206
        media = artifact.content_type or "application/octet-stream"
        if request.method == "HEAD" or span.length == 0:
            return Response(b"", status_code=status, headers=headers, media_type=media)
        chunks = forwarder.stream(
            stream,
            artifacts_service_pb2.DownloadArtifactRequest(
                artifact_id=artifact_id, run_id=run_id, offset=span.offset, length=span.length
            ),
            metadata=metadata,
        )

        async def body() -> AsyncIterator[bytes]:
            try:
                async for item in chunks:
                    reply = cast(
                        artifacts_service_pb2.DownloadArtifactResponse, stream.decoded(item)
                    )
                    if reply.data:
                        yield reply.data
            finally:
                await chunks.aclose()

        return StreamingResponse(body(), status_code=status, headers=headers, media_type=media)

    return [Route(PATH, download, methods=["GET", "HEAD"])]
