"""The HTTP/JSON face of the gateway: transcoded unary calls, SSE for streams, /healthz.

Routes come from the `google.api.http` options of the routed services, so a new annotated
RPC is reachable over HTTP without code here. Calls go through the gateway's `Forwarder`
(`forward.py`), the same path as its gRPC proxy: the same backends and channels, metadata,
deadline and failures. Services the gateway implements itself are called in-process there,
which keeps `/v1/info` answering even while the gateway's own gRPC port is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from conveyor.auth import webhooks
from conveyor.auth.authn import CURRENT_CALLER, Authenticator, Denied, StreamGuard, bearer
from conveyor.executor.v1 import run_pb2
from conveyor.gateway import downloads
from conveyor.gateway.dashboard import dashboard_routes
from conveyor.gateway.forward import Forwarder, Metadata, Method, request_id
from conveyor.gateway.frames import resume_field, sse_encoder, sse_event, ws_events
from conveyor.gateway.responses import ACCESS_TOKEN_PARAM, denied_response, error_response
from conveyor.gateway.transcode import (
    CallError,
    HttpRoute,
    InputError,
    build_request,
    error_body,
    parse_body,
    routes_for,
    sse_error,
    to_json,
)
from conveyor.kernel.errors import ConveyorError
from conveyor.kernel.grpcserver import MAX_MESSAGE_BYTES
from conveyor.kernel.metrics import aggregate, local_exposition
from conveyor.kernel.protoconv import json_text

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = MAX_MESSAGE_BYTES
#: The WebSocket subprotocol a browser offers (with `bearer.<token>`) and the server selects.
WS_PROTOCOL = "conveyor.v1"
KEEPALIVE_S = 15.0
HEALTH_TIMEOUT_S = 1.0
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# How many decoded stream messages may wait for a slow HTTP client before the backend is paused.
_STREAM_BUFFER = 64

REVOKED = "the token was revoked or expired"
_Item = tuple[str, Any]  # ("message", Message | bytes) | ("end", None) | ("failure", CallError)


class BodyTooLarge(Exception):
    """The request body exceeds the limit."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused by its declared length before reading and stopped at the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> JSONResponse:
    failure = CallError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request body is larger than {limit} bytes"
    )
    body = error_body(failure)
    body["error"]["code"] = 413
    return JSONResponse(body, status_code=413)


class _EventStream(Response):
    """A text/event-stream response fed from a queue, with keepalives and disconnect handling."""

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        queue: asyncio.Queue[_Item],
        pump: asyncio.Task[None],
        first: _Item | None,
        keepalive_s: float,
        closing: asyncio.Event,
        encode: Any = sse_event,
        guard: StreamGuard | None = None,
    ) -> None:
        # Not Response.__init__: it would declare Content-Length: 0 for the empty content.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self._queue, self._pump, self._first = queue, pump, first
        self._keepalive_s, self._closing = keepalive_s, closing
        self._encode = encode
        self._guard = guard
        self._started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send events until the stream ends, the client leaves or the gateway stops."""
        writer = asyncio.create_task(self._write(send))
        watchers = [
            asyncio.create_task(self._disconnected(receive)),
            asyncio.create_task(self._closing.wait()),
        ]
        try:
            await asyncio.wait([writer, *watchers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [writer, *watchers, self._pump]:
                task.cancel()
            await asyncio.gather(writer, *watchers, self._pump, return_exceptions=True)
        failed = not writer.cancelled() and writer.exception() is not None
        disconnected = not watchers[0].cancelled()
        if self._started and not failed and not disconnected:
            # Still connected (the stream ended or the gateway is stopping): finish the body.
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _disconnected(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _write(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self._started = True
        item = self._first
        while True:
            if item is None:
                chunk = b": keepalive\n\n"
            elif item[0] == "message":
                chunk = self._encode(item[1])
            elif item[0] == "failure":
                chunk = sse_error(item[1])
            else:
                return
            if self._guard is not None and not await self._guard.valid():
                # Revoked or expired since the stream opened: it ends at its next event.
                failure = CallError(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
                item, chunk = ("failure", failure), sse_error(failure)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if item is not None and item[0] == "failure":
                return
            item = await _next(self._queue, self._keepalive_s)


async def _next(queue: asyncio.Queue[_Item], wait_s: float) -> _Item | None:
    """The next stream item, or None after `wait_s` seconds of silence."""
    with contextlib.suppress(asyncio.QueueEmpty):
        return queue.get_nowait()
    try:
        # Not wait_for: on Python 3.11 it starts a task per wait, per watcher and event.
        async with asyncio.timeout(wait_s):
            return await queue.get()
    except TimeoutError:
        return None


async def _pump(
    messages: AsyncGenerator[Message | bytes, None], queue: asyncio.Queue[_Item]
) -> None:
    try:
        async for message in messages:
            await queue.put(("message", message))
        await queue.put(("end", None))
    except CallError as failure:
        await queue.put(("failure", failure))
    finally:
        # Closing the generator cancels the backend call even when we stopped mid-put.
        await messages.aclose()


class HttpGateway:
    """Transcodes HTTP requests into calls through the forwarder and their answers back."""

    def __init__(
        self,
        *,
        forwarder: Forwarder,
        health_targets: Mapping[str, str],
        keepalive_s: float,
        authenticator: Authenticator,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.authenticator = authenticator
        self.forwarder = forwarder
        self._max_body = max_body_bytes
        self._health_targets = dict(health_targets)
        self._keepalive_s = keepalive_s
        self.routes = routes_for(forwarder.descriptors())
        self._closing = asyncio.Event()

    def match(self, verb: str, path: str) -> tuple[HttpRoute, Sequence[str]] | CallError:
        """The route for a request, or the failure to answer with (404, or 405 as 501)."""
        path_matched = False
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            path_matched = True
            if route.verb == verb or (verb == "HEAD" and route.verb == "GET"):
                return route, [found.group(f"v{i}") for i in range(len(route.variables))]
        if path_matched:
            return CallError(grpc.StatusCode.UNIMPLEMENTED, f"method {verb} not allowed on {path}")
        return CallError(grpc.StatusCode.NOT_FOUND, f"no route for {verb} {path}")

    async def dispatch(self, request: Request) -> Response:
        """Transcode one HTTP request into a call and its answer back into JSON or SSE."""
        matched = self.match(request.method, request.scope["path"])
        if isinstance(matched, CallError):
            response = error_response(matched)
            if matched.code == grpc.StatusCode.UNIMPLEMENTED:
                response.status_code = 405
            return response
        route, values = matched
        query = request.query_params.multi_items()
        token = bearer(request.headers.get("authorization"))
        if route.server_streaming:
            presented = [v for k, v in query if k == ACCESS_TOKEN_PARAM]
            query = [(k, v) for k, v in query if k != ACCESS_TOKEN_PARAM]
            if token is None and presented:
                token = presented[0]
        try:
            caller = await self.authenticator.authorize(token, route.grpc_path)
        except Denied as denied:
            return denied_response(denied)
        CURRENT_CALLER.set(caller)
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return _too_large(self._max_body)
        try:
            message = self._request_message(route, values, request, query, body)
        except InputError as bad:
            return error_response(bad.failure())
        metadata = self.forwarder.metadata(request.headers.items())
        rid = request_id(metadata)
        with structlog.contextvars.bound_contextvars(request_id=rid, rpc=route.grpc_path):
            if route.server_streaming:
                guard = self.authenticator.guard(caller)
                return await self._stream(route, message, metadata, guard)
            try:
                return JSONResponse(to_json(await self._unary(route, message, metadata)))
            except CallError as failure:
                return error_response(failure)

    @staticmethod
    def _request_message(
        route: HttpRoute,
        values: Sequence[str],
        request: Request,
        query: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Message:
        message = build_request(route, path_values=values, query=query, body=body)
        last_id = request.headers.get("last-event-id")
        # A streaming request's field declared `resume_after` resumes after the last event id
        # the client saw (EventSource sends it on reconnect).
        resume = resume_field(message.DESCRIPTOR)
        if route.server_streaming and last_id and resume is not None:
            try:
                setattr(message, resume, int(last_id))
            except ValueError:
                raise InputError(
                    f"Last-Event-ID must be an integer sequence, not {last_id!r}",
                    field="Last-Event-ID",
                ) from None
        return message

    def _method(self, route: HttpRoute) -> Method:
        method = self.forwarder.method(route.grpc_path)
        if method is None:  # pragma: no cover - routes are built from the forwarder's services
            raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"{route.grpc_path} is not routed")
        return method

    async def _unary(self, route: HttpRoute, message: Message, metadata: Metadata) -> Message:
        return await self.forwarder.call(self._method(route), message, metadata=metadata)

    def _messages(
        self, route: HttpRoute, message: Message, metadata: Metadata
    ) -> AsyncGenerator[Message | bytes, None]:
        """The stream's messages: decoded from a local servicer, raw bytes from a backend."""
        return self.forwarder.stream(self._method(route), message, metadata=metadata)

    async def _stream(
        self,
        route: HttpRoute,
        message: Message,
        metadata: Metadata,
        guard: StreamGuard | None = None,
    ) -> Response:
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=_STREAM_BUFFER)
        pump = asyncio.create_task(_pump(self._messages(route, message, metadata), queue))
        # Wait briefly for the first item so an immediate failure (NOT_FOUND, bad argument)
        # is a proper HTTP error rather than an error event inside a 200 stream.
        first = await _next(queue, self._keepalive_s)
        if first is not None and first[0] == "failure":
            await pump
            return error_response(first[1])
        if first is not None and first[0] == "end":
            # Nothing to send (a finished run resumed at or past its end): 204 tells an
            # EventSource to stop reconnecting.
            await pump
            return Response(status_code=204)
        return _EventStream(
            queue=queue,
            pump=pump,
            first=first,
            keepalive_s=self._keepalive_s,
            closing=self._closing,
            encode=sse_encoder(route.response_cls),
            guard=guard,
        )

    async def hook(self, request: Request) -> Response:
        """`POST /v1/hooks/{job}`: a signed delivery starts a run of a job with a
        trigger.webhook node (see conveyor.auth.webhooks); the JSON body is its parameters."""
        from conveyor.gateway.service import webhook_job

        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return _too_large(self._max_body)
        refused = CallError(grpc.StatusCode.UNAUTHENTICATED, "bad or missing signature")
        db = self.authenticator.db
        try:
            job = await webhook_job(
                self.forwarder.backends, self.forwarder.channels, request.path_params["job"]
            )
        except ConveyorError:
            job = None  # answered like a bad signature: no oracle for which jobs exist
        if job is None or db is None:
            return error_response(refused)

        def secret() -> str | None:
            assert db is not None
            with db.read() as session:
                return webhooks.secret_of(session, job.job_id)

        why = webhooks.check(
            await asyncio.to_thread(secret),
            timestamp=request.headers.get(webhooks.TIMESTAMP_HEADER),
            signature=request.headers.get(webhooks.SIGNATURE_HEADER),
            body=body,
            now=time.time(),
        )
        if why is not None:
            return error_response(CallError(grpc.StatusCode.UNAUTHENTICATED, why))
        delivery = request.headers.get(webhooks.DELIVERY_HEADER)
        if not webhooks.delivery_ok(delivery):
            failure = InputError(
                f"{webhooks.DELIVERY_HEADER} must be 1-100 characters: letters, digits, . _ : -",
                field=webhooks.DELIVERY_HEADER,
            )
            return error_response(failure.failure())
        route = next(r for r in self.routes if r.grpc_path.endswith("/StartRun"))
        try:
            parsed = parse_body(body)
            if parsed is not None and not isinstance(parsed, dict):
                raise InputError("the body must be a JSON object of parameters", field="body")
            # The route's class is the StartRun request's, known only at run time; the
            # stubs type a message class's constructor as taking no fields.
            make: Any = route.request_cls
            start = make(
                job_id=job.job_id,
                request_id=f"hook:{job.job_id}:{delivery}",
                trigger=run_pb2.RUN_TRIGGER_WEBHOOK,
                parameters_json=json_text(parsed or {}),
            )
        except InputError as bad:
            return error_response(bad.failure())
        metadata = self.forwarder.metadata((), actor="webhook")
        try:
            return JSONResponse(to_json(await self._unary(route, start, metadata)))
        except CallError as failure:
            return error_response(failure)

    async def websocket(self, ws: WebSocket) -> None:
        """The run event streams over WebSocket: same routes, events and resume rule as SSE.

        Browsers cannot set headers on a WebSocket, so the token may come as a subprotocol
        `bearer.<token>` offered next to `conveyor.v1` (or `?access_token=`). Each event is a
        JSON text frame {id, event, data}; the stream ends with close code 1000, or with an
        {"event": "error"} frame and close code 4000 + the HTTP status (4401, 4403, 4404, ...).
        """
        offered = list(ws.scope.get("subprotocols") or [])
        await ws.accept(subprotocol=WS_PROTOCOL if WS_PROTOCOL in offered else None)
        token = bearer(ws.headers.get("authorization")) or next(
            (p.removeprefix("bearer.") for p in offered if p.startswith("bearer.")), None
        )
        query = [(k, v) for k, v in ws.query_params.multi_items() if k != ACCESS_TOKEN_PARAM]
        token = token or ws.query_params.get(ACCESS_TOKEN_PARAM)
        matched = self.match("GET", ws.scope["path"])
        try:
            if isinstance(matched, CallError):
                raise matched
            route, values = matched
            if not route.server_streaming:
                raise CallError(grpc.StatusCode.NOT_FOUND, "only streams are served here")
            try:
                caller = await self.authenticator.authorize(token, route.grpc_path)
            except Denied as denied:
                raise CallError(denied.code, denied.message) from None
            CURRENT_CALLER.set(caller)
            try:
                message = build_request(route, path_values=values, query=query, body=b"")
            except InputError as bad:
                raise bad.failure() from None
            metadata = self.forwarder.metadata(ws.headers.items())
            await self._ws_pump(ws, route, message, metadata, self.authenticator.guard(caller))
        except CallError as failure:
            await _ws_fail(ws, failure)

    async def _ws_pump(
        self,
        ws: WebSocket,
        route: HttpRoute,
        message: Message,
        metadata: Metadata,
        guard: StreamGuard,
    ) -> None:
        messages = self._messages(route, message, metadata)

        async def forward() -> None:
            async for item in messages:
                if not await guard.valid():
                    raise CallError(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
                decoded = item if isinstance(item, Message) else route.response_cls.FromString(item)
                for frame in ws_events(decoded):
                    await ws.send_text(frame)

        async def disconnected() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass

        sender = asyncio.create_task(forward())
        watchers = [
            asyncio.create_task(disconnected()),
            asyncio.create_task(self._closing.wait()),
        ]
        try:
            await asyncio.wait([sender, *watchers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [sender, *watchers]:
                task.cancel()
            await asyncio.gather(sender, *watchers, return_exceptions=True)
            await messages.aclose()
        if not sender.cancelled() and sender.exception() is not None:
            failure = sender.exception()
            if isinstance(failure, CallError):
                raise failure
            raise CallError(grpc.StatusCode.INTERNAL, f"stream failed: {type(failure).__name__}")
        if watchers[0].done() and not watchers[0].cancelled():
            return  # the client left
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code=1000)

    async def healthz(self, request: Request) -> Response:
        """200 when every health target reports SERVING, 503 otherwise; per-target detail."""
        names = list(self._health_targets)
        results = await asyncio.gather(*(self._check(self._health_targets[n]) for n in names))
        services = dict(zip(names, results, strict=True))
        serving = all(r["status"] == "SERVING" for r in results)
        return JSONResponse(
            {"status": "SERVING" if serving else "NOT_SERVING", "services": services},
            status_code=200 if serving else 503,
        )

    async def _check(self, address: str) -> dict[str, str]:
        check = self.forwarder.channel(address).unary_unary(
            _HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            return {"status": err.code().name, "address": address, "message": err.details() or ""}
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return {"status": status, "address": address}

    def begin_shutdown(self) -> None:
        """End open event streams so the HTTP server can stop promptly."""
        self._closing.set()

    async def close(self) -> None:
        """End open streams (the forwarder's channels are closed by its owner)."""
        self.begin_shutdown()


async def _not_found(request: Request, exc: Exception) -> Response:
    code = getattr(exc, "status_code", 404)
    grpc_code = grpc.StatusCode.NOT_FOUND if code == 404 else grpc.StatusCode.UNIMPLEMENTED
    response = error_response(
        CallError(grpc_code, f"no route for {request.method} {request.url.path!r}")
    )
    response.status_code = code
    return response


async def _ws_fail(ws: WebSocket, failure: CallError) -> None:
    body = error_body(failure)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await ws.send_text(json.dumps({"event": "error", "data": body}, separators=(",", ":")))
        await ws.close(code=4000 + int(body["error"]["code"]), reason=failure.message[:120])


def cors_middleware(origins: Sequence[str]) -> list[Middleware]:
    """CORS for the listed browser origins ("*" = any origin, then without credentials).

    Authentication is a bearer header, not a cookie, so credentials are never needed; they are
    allowed only for explicitly listed origins, never together with "*".
    """
    allowed = [o.strip() for o in origins if o.strip()]
    if not allowed:
        return []
    wildcard = "*" in allowed
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=["*"] if wildcard else allowed,
            allow_credentials=not wildcard,
            allow_methods=[*_METHODS, "HEAD"],
            allow_headers=["authorization", "content-type", "last-event-id", "x-request-id"],
            expose_headers=["www-authenticate", "x-request-id"],
            max_age=600,
        )
    ]


def build_http_app(
    *,
    forwarder: Forwarder,
    health_targets: Mapping[str, str] | None = None,
    keepalive_s: float = KEEPALIVE_S,
    metrics_targets: Mapping[str, str] | None = None,
    authenticator: Authenticator,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The gateway's Starlette app; `app.state.gateway` is the `HttpGateway` (call `close()`)."""
    gateway = HttpGateway(
        forwarder=forwarder,
        health_targets=health_targets or {},
        keepalive_s=keepalive_s,
        authenticator=authenticator,
        max_body_bytes=max_body_bytes,
    )
    document: dict[str, Any] = {}

    async def openapi_endpoint(_: Request) -> Response:
        if not document:
            from conveyor.gateway.openapi import openapi_document
            from conveyor.gateway.service import conveyor_version

            document.update(openapi_document(gateway.routes, version=conveyor_version()))
        return JSONResponse(document)

    async def metrics_endpoint(request: Request) -> Response:
        # Any valid token may read the metrics (they name jobs, queues and workers).
        try:
            await authenticator.authenticate(bearer(request.headers.get("authorization")))
        except Denied as denied:
            return denied_response(denied)
        if metrics_targets is None:
            body = local_exposition()
        else:
            body = await asyncio.to_thread(aggregate, {"gateway": REGISTRY}, metrics_targets)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.close()

    app = Starlette(
        routes=[
            Route("/healthz", gateway.healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *downloads.routes(gateway),
            *dashboard_routes(),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            Route("/v1/hooks/{job}", gateway.hook, methods=["POST"]),
            Route("/{path:path}", gateway.dispatch, methods=_METHODS),
            WebSocketRoute("/{path:path}", gateway.websocket),
        ],
        lifespan=lifespan,
        middleware=cors_middleware(cors_origins),
        # Paths no route pattern matches (a newline in an id) still get the JSON error shape.
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.gateway = gateway
    return app
