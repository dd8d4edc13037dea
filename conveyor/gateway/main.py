"""Wiring: one forwarder behind the gateway's gRPC server (proxy) and its HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import structlog
import uvicorn

from conveyor.auth.authn import Authenticator
from conveyor.auth.interceptors import PublicAuth
from conveyor.gateway import service
from conveyor.gateway.forward import CALL_TIMEOUT_S, Channels, Forwarder
from conveyor.gateway.http import KEEPALIVE_S, HttpGateway, build_http_app
from conveyor.gateway.proxy import Proxy
from conveyor.kernel.grpcserver import start_server, tls_files

log = structlog.get_logger(__name__)

GRPC_GRACE_S = 2.0
HTTP_GRACE_S = 2


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process hosting it."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the CLI or suite owns SIGINT/SIGTERM and calls `stop()`."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Listen, then tell `serve_gateway` it may return."""
        await super().startup(sockets=sockets)
        self.ready.set()


def bind_socket(address: str) -> socket.socket:
    """A listening-ready TCP socket for `host:port` (port 0 picks a free one; [v6] allowed)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an empty host means every interface
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class GatewayHandle:
    """A running gateway: its bound ports and how to stop it."""

    grpc_port: int
    http_port: int
    _server: grpc.aio.Server
    _forwarder: Forwarder
    _http: _EmbeddedServer
    _http_task: asyncio.Task[None]
    _gateway: HttpGateway

    async def stop(self) -> None:
        """Stop HTTP (ending open event streams), then gRPC, then close backend channels."""
        self._gateway.begin_shutdown()
        self._http.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._http_task
        await self._server.stop(grace=GRPC_GRACE_S)
        await self._gateway.close()
        await self._forwarder.close()


async def serve_gateway(
    *,
    routes: Mapping[str, str],
    grpc_address: str,
    http_address: str,
    mode: str,
    keepalive_s: float = KEEPALIVE_S,
    metrics_targets: Mapping[str, str] | None = None,
    authenticator: Authenticator,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int | None = None,
    call_timeout_s: float | None = CALL_TIMEOUT_S,
) -> GatewayHandle:
    """Start the gateway: gRPC (GatewayService + proxied services) and HTTP/JSON + SSE.

    `keepalive_s` is the idle time after which an event stream sends a `: keepalive` comment.
    `metrics_targets` (service -> /metrics URL) are scraped into the gateway's `/metrics`;
    None serves this process's own registry (the embedded suite, where every service shares it).
    `authenticator` checks every public call, gRPC and HTTP alike. `call_timeout_s` is the
    deadline of a unary call whose client set none.
    """
    channels = Channels()
    servicer = service.GatewayServicer(
        routes=routes, mode=mode, authenticator=authenticator, channels=channels
    )
    # One table for both front ends: the backends, and the gateway's own service in-process.
    forwarder = Forwarder(
        routes=routes,
        local={service.SERVICE_NAME: servicer},
        call_timeout_s=call_timeout_s,
        channels=channels,
    )
    # Every routed service is registered by name, so reflection and health list them.
    server, grpc_port = await start_server(
        Proxy(forwarder).registrations(),
        grpc_address,
        interceptors=[PublicAuth(authenticator)],
    )
    app = build_http_app(
        forwarder=forwarder,
        health_targets=routes,
        keepalive_s=keepalive_s,
        metrics_targets=metrics_targets,
        authenticator=authenticator,
        cors_origins=cors_origins,
        **({"max_body_bytes": max_body_bytes} if max_body_bytes else {}),
    )
    gateway: HttpGateway = app.state.gateway
    try:
        sock = bind_socket(http_address)
    except OSError:
        await server.stop(grace=None)
        await forwarder.close()
        raise
    http_port = int(sock.getsockname()[1])
    host = http_address.rpartition(":")[0] or "127.0.0.1"
    scheme = "https" if tls_files() is not None else "http"
    servicer.http_url = f"{scheme}://{host}:{http_port}"
    tls = tls_files()
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=HTTP_GRACE_S,
        ssl_certfile=None if tls is None else tls.cert_path,
        ssl_keyfile=None if tls is None else tls.key_path,
    )
    http = _EmbeddedServer(config)
    task = asyncio.create_task(http.serve(sockets=[sock]))
    ready = asyncio.create_task(http.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        await server.stop(grace=None)
        await gateway.close()
        await forwarder.close()
        task.result()
        raise RuntimeError(f"HTTP server on {http_address} did not start")
    log.info("gateway started", grpc_port=grpc_port, http_port=http_port, mode=mode)
    return GatewayHandle(
        grpc_port=grpc_port,
        http_port=http_port,
        _server=server,
        _forwarder=forwarder,
        _http=http,
        _http_task=task,
        _gateway=gateway,
    )
