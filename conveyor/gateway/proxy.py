"""The gateway's gRPC face: every routed method, served as raw bytes through the `Forwarder`.

Messages are never decoded on the way to a backend, so a field added to a backend's contract
passes through without touching the gateway; only the shape of each method (unary or
server-streaming) is read from the service descriptors. The gateway's own services go the
same way, to their in-process servicers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeAlias

import grpc

from conveyor.gateway.forward import Forwarder, Method, status_trailers
from conveyor.gateway.transcode import CallError
from conveyor.kernel.grpcserver import ServiceRegistration

_Context: TypeAlias = grpc.aio.ServicerContext[bytes, bytes]


# grpc ships no type information, so its base classes are Any to mypy.
class Proxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves `/<service>/<Method>` calls of the forwarder's services."""

    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder
        self._installed: set[int] = set()

    def registrations(self) -> list[ServiceRegistration]:
        """One registration per routed service, so health and reflection list them too."""
        return [ServiceRegistration(name, self.install) for name in self._forwarder.services]

    def install(self, server: grpc.aio.Server) -> None:
        """Add this proxy to a server as a generic handler (once per server)."""
        if id(server) not in self._installed:
            self._installed.add(id(server))
            server.add_generic_rpc_handlers([self])

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The handler for a routed method; None (UNIMPLEMENTED) otherwise."""
        path: str = handler_call_details.method  # type: ignore[attr-defined]
        method = self._forwarder.method(path)
        # No public contract has client streams through the gateway; refuse rather than
        # half-support them.
        if method is None or method.descriptor.client_streaming:
            return None
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(self._unary_stream(method))
        return grpc.unary_unary_rpc_method_handler(self._unary_unary(method))

    def _unary_unary(self, method: Method) -> Callable[[bytes, _Context], Awaitable[bytes]]:
        async def handle(request: bytes, context: _Context) -> bytes:
            try:
                return await self._forwarder.relay(method, request, context=context)
            except CallError as failure:
                await _fail(context, failure)

        return handle

    def _unary_stream(self, method: Method) -> Callable[[bytes, _Context], AsyncIterator[bytes]]:
        async def handle(request: bytes, context: _Context) -> AsyncIterator[bytes]:
            messages = self._forwarder.relay_stream(method, request, context=context)
            try:
                async for message in messages:
                    yield message
            except CallError as failure:
                await _fail(context, failure)
            finally:
                await messages.aclose()

        return handle


async def _fail(context: _Context, failure: CallError) -> NoReturn:
    """End the call with the failure's code, message and google.rpc details."""
    await context.abort(failure.code, failure.message, status_trailers(failure))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises
