"""A generic gRPC proxy: forwards raw request bytes of the routed services to their backends.

Messages are never decoded, so a field added to a backend's contract passes through without
touching the gateway. Only the shape of each method (unary or server-streaming) is read from
the service descriptors in the default pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from conveyor.auth.authn import CURRENT_CALLER

# Imported for their side effect: the public services' descriptors land in the default pool.
from conveyor.executor.v1 import executor_service_pb2  # noqa: F401
from conveyor.kernel import tracing
from conveyor.kernel.grpcserver import ACTOR_KEY, INTERNAL_KEY, ServiceRegistration, channel
from conveyor.kernel.ids import new_id
from conveyor.monitor.v1 import monitor_service_pb2  # noqa: F401
from conveyor.translator.v1 import translator_service_pb2  # noqa: F401

Metadata = tuple[tuple[str, str | bytes], ...]

# Connection-level headers owned by the transport: forwarding them would be wrong or rejected.
_HOP_HEADERS = frozenset(
    {"content-type", "te", "user-agent", "host", "connection", "keep-alive", "upgrade"}
)
# The one reserved grpc-* key that carries application data (google.rpc.Status details).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def traced(metadata: Metadata) -> Metadata:
    """Metadata with the trace headers of the current span (the gateway's) instead."""
    kept = [(k, v) for k, v in metadata if k not in tracing.HEADERS]
    return (*kept, *tracing.inject().items())


def forwardable(metadata: Sequence[tuple[str, Any]] | None) -> Metadata:
    """Keep application metadata; drop pseudo headers, grpc-* transport keys and hop headers."""
    kept: list[tuple[str, str | bytes]] = []
    for key, value in metadata or ():
        name = key.lower()
        if name.startswith(":") or name in _HOP_HEADERS:
            continue
        if name.startswith("grpc-") and name != STATUS_DETAILS_KEY:
            continue
        kept.append((name, value))
    return tuple(kept)


# What a client sends that a backend must not see: its secret, and keys only Conveyor sets.
_CLIENT_ONLY = frozenset({"authorization", INTERNAL_KEY, ACTOR_KEY})


def on_behalf(metadata: Metadata) -> Metadata:
    """Client metadata for a backend: token and Conveyor's own keys dropped, the actor added
    (the caller the gateway authenticated for this request)."""
    kept = tuple((k, v) for k, v in metadata if k not in _CLIENT_ONLY)
    caller = CURRENT_CALLER.get()
    # Open mode has no caller to name: the request's own fields (an approver) stand.
    if caller is None or not caller.token_id:
        return kept
    return (*kept, (ACTOR_KEY, caller.name))


def with_request_id(metadata: Metadata) -> Metadata:
    """The metadata with an x-request-id, so one id follows the call through every service."""
    if any(name == "x-request-id" for name, _ in metadata):
        return metadata
    return (*metadata, ("x-request-id", new_id()))


def service_descriptor(name: str) -> ServiceDescriptor:
    """The descriptor of a fully qualified service name; KeyError when it is not loaded."""
    return descriptor_pool.Default().FindServiceByName(name)


# grpc ships no type information, so its base classes are Any to mypy.
class Proxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Routes `/<service>/<Method>` calls of the configured services to their backends."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        self._routes = dict(routes)
        self._services = {name: service_descriptor(name) for name in self._routes}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._installed: set[int] = set()

    @property
    def services(self) -> list[str]:
        """The fully qualified names of the proxied services."""
        return list(self._routes)

    def registrations(self) -> list[ServiceRegistration]:
        """One registration per proxied service, so health and reflection list them too."""
        return [ServiceRegistration(name, self.install) for name in self._routes]

    def install(self, server: grpc.aio.Server) -> None:
        """Add this proxy to a server as a generic handler (once per server)."""
        if id(server) not in self._installed:
            self._installed.add(id(server))
            server.add_generic_rpc_handlers([self])

    def _channel(self, address: str) -> grpc.aio.Channel:
        # One long-lived channel per backend address, shared by every service it hosts.
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = channel(address)
        return ch

    def _method(self, path: str) -> tuple[str, MethodDescriptor] | None:
        service, _, method = path.lstrip("/").partition("/")
        desc = self._services.get(service)
        if desc is None or method not in desc.methods_by_name:
            return None
        return self._routes[service], desc.methods_by_name[method]

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The pass-through handler for a routed method; None (UNIMPLEMENTED) otherwise."""
        path: str = handler_call_details.method  # type: ignore[attr-defined]
        found = self._method(path)
        if found is None:
            return None
        address, method = found
        if method.client_streaming:
            # No public contract has client streams; refuse rather than half-support them.
            return None
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(self._unary_stream(path, address))
        return grpc.unary_unary_rpc_method_handler(self._unary_unary(path, address))

    def _unary_unary(
        self, path: str, address: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
        async def handle(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            multi = self._channel(address).unary_unary(path)
            incoming = context.invocation_metadata()
            with tracing.span(path, tracing.carrier_from(incoming), kind=tracing.SERVER):
                call = multi(
                    request,
                    metadata=traced(with_request_id(on_behalf(forwardable(incoming)))),
                    timeout=context.time_remaining(),
                )
                try:
                    response: bytes = await call
                except grpc.aio.AioRpcError as err:
                    await _relay_failure(context, err)
            await _relay_metadata(context, call)
            return response

        return handle

    def _unary_stream(
        self, path: str, address: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], AsyncIterator[bytes]]:
        async def handle(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> AsyncIterator[bytes]:
            multi = self._channel(address).unary_stream(path)
            call = multi(
                request,
                metadata=with_request_id(on_behalf(forwardable(context.invocation_metadata()))),
                timeout=context.time_remaining(),
            )
            try:
                headers = forwardable(await call.initial_metadata())
                if headers:
                    await context.send_initial_metadata(headers)
                async for message in call:
                    yield message
                context.set_trailing_metadata(forwardable(await call.trailing_metadata()))
            except grpc.aio.AioRpcError as err:
                await _relay_failure(context, err)
            finally:
                # The client went away or failed: stop the backend stream too.
                call.cancel()

        return handle

    async def close(self) -> None:
        """Close the backend channels."""
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            await ch.close()


async def _relay_metadata(
    context: grpc.aio.ServicerContext[bytes, bytes], call: grpc.aio.UnaryUnaryCall[bytes, bytes]
) -> None:
    headers = forwardable(await call.initial_metadata())
    if headers:
        await context.send_initial_metadata(headers)
    context.set_trailing_metadata(forwardable(await call.trailing_metadata()))


async def _relay_failure(
    context: grpc.aio.ServicerContext[bytes, bytes], err: grpc.aio.AioRpcError
) -> NoReturn:
    """End the call with the backend's code, message and trailers (status details included)."""
    await context.abort(err.code(), err.details() or "", forwardable(err.trailing_metadata()))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises
