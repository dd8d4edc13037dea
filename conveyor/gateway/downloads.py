"""`GET /v1/runs/{run_id}/artifacts/{artifact_id}/content`: an artifact's bytes over HTTP.

Streamed from the artifact service's DownloadArtifact, chunk by chunk (the gateway never
holds more than the gRPC stream's window), with `Range: bytes=…` (one range) answered as
206 with `Content-Range`, an unsatisfiable range as 416, and HEAD answered with the headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conveyor.artifacts.v1 import artifacts_service_pb2
from conveyor.auth.authn import Denied, bearer
from conveyor.gateway.responses import ACCESS_TOKEN_PARAM, denied_response, error_response
from conveyor.gateway.transcode import CallError, error_body
from conveyor.kernel.grpcserver import ACTOR_KEY
from conveyor.kernel.ids import new_id
from conveyor.shared.ranges import ByteRange, RangeNotSatisfiable, parse_http_range

SERVICE = artifacts_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name
PATH = "/v1/runs/{run_id}/artifacts/{artifact_id}/content"
_FORWARDED = ("authorization", "x-request-id", "traceparent", "tracestate")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _filename(name: str) -> str:
    base = name.rsplit("/", 1)[-1] or "artifact"
    return _SAFE_NAME.sub("_", base)[:200]


def routes(gateway: Any) -> list[Route]:
    """The download route, served through the gateway's channels to the artifact service."""

    async def download(request: Request) -> Response:
        address = gateway._addresses.get(SERVICE)
        if address is None:
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
        channel = gateway._channel(address)
        run_id, artifact_id = request.path_params["run_id"], request.path_params["artifact_id"]
        metadata = tuple((h, request.headers[h]) for h in _FORWARDED if h in request.headers)
        if caller.token_id:
            metadata += ((ACTOR_KEY, caller.name),)
        if "x-request-id" not in request.headers:
            metadata += (("x-request-id", new_id()),)
        get = channel.unary_unary(
            f"/{SERVICE}/GetArtifact",
            request_serializer=artifacts_service_pb2.GetArtifactRequest.SerializeToString,
            response_deserializer=artifacts_service_pb2.GetArtifactResponse.FromString,
        )
        try:
            found = await get(
                artifacts_service_pb2.GetArtifactRequest(run_id=run_id, artifact_id=artifact_id),
                metadata=metadata,
                timeout=30,
            )
        except grpc.aio.AioRpcError as err:
            return error_response(CallError.from_rpc_error(err))
        artifact = found.artifact
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
        stream = channel.unary_stream(
            f"/{SERVICE}/DownloadArtifact",
            request_serializer=artifacts_service_pb2.DownloadArtifactRequest.SerializeToString,
            response_deserializer=artifacts_service_pb2.DownloadArtifactResponse.FromString,
        )
        call = stream(
            artifacts_service_pb2.DownloadArtifactRequest(
                artifact_id=artifact_id, run_id=run_id, offset=span.offset, length=span.length
            ),
            metadata=metadata,
        )

        async def body() -> AsyncIterator[bytes]:
            try:
                async for reply in call:
                    if reply.data:
                        yield reply.data
            finally:
                call.cancel()

        return StreamingResponse(body(), status_code=status, headers=headers, media_type=media)

    return [Route(PATH, download, methods=["GET", "HEAD"])]
