"""The gateway's one forwarding path, shared by its gRPC proxy and its HTTP/JSON transcoder.

A `Forwarder` holds one table from a method's full name to where it is served: a backend
address, or an in-process servicer (the gateway's own GatewayService, called with
`context=None`, never through a network hop). It owns one channel per backend address,
shared by both front ends and closed once. Every forwarded call gets here the same
metadata (`metadata`), the same deadline (`deadline`) and the same failure: a backend's
status with its google.rpc details, or a local servicer's exception mapped by the kernel's
`failure_status`, both as a `CallError` that the gRPC front end ends its call with and the
HTTP front end turns into its JSON error.

Requests and responses travel in the form the caller gives: raw bytes for the gRPC proxy
(a field added to a backend's contract passes through without touching the gateway),
decoded messages where the HTTP front end needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from conveyor.auth.authn import CURRENT_CALLER

# Imported for their side effect: the public services' descriptors land in the default pool.
from conveyor.executor.v1 import executor_service_pb2  # noqa: F401
from conveyor.gateway.transcode import STATUS_DETAILS_KEY, CallError
from conveyor.kernel import tracing
from conveyor.kernel.grpcserver import ACTOR_KEY, channel, failure_status
from conveyor.kernel.ids import new_id
from conveyor.kernel.logging import REQUEST_ID_HEADER
from conveyor.monitor.v1 import monitor_service_pb2  # noqa: F401
from conveyor.translator.v1 import translator_service_pb2  # noqa: F401

Metadata = tuple[tuple[str, str | bytes], ...]
M = TypeVar("M", Message, bytes)

#: The deadline of a unary call whose client set none (an HTTP client never can).
CALL_TIMEOUT_S = 60.0
#: The only keys a client may send on to a backend. Its token stays at the edge, and the
#: internal credential and the actor are set by Conveyor alone (backends trust them).
CLIENT_KEYS = frozenset({REQUEST_ID_HEADER, *tracing.HEADERS})

# Connection-level headers owned by the transport: relaying them would be wrong or rejected.
_HOP_HEADERS = frozenset(
    {"content-type", "te", "user-agent", "host", "connection", "keep-alive", "upgrade"}
)


def service_descriptor(name: str) -> ServiceDescriptor:
    """The descriptor of a fully qualified service name; KeyError when it is not loaded."""
    return descriptor_pool.Default().FindServiceByName(name)


def forwardable(metadata: Sequence[tuple[str, Any]] | None) -> Metadata:
    """A backend's response headers or trailers as a gRPC client may get them: pseudo
    headers, grpc-* transport keys (but the status details) and hop headers dropped."""
    kept: list[tuple[str, str | bytes]] = []
    for key, value in metadata or ():
        name = key.lower()
        if name.startswith(":") or name in _HOP_HEADERS:
            continue
        if name.startswith("grpc-") and name != STATUS_DETAILS_KEY:
            continue
        kept.append((name, value))
    return tuple(kept)


def status_trailers(failure: CallError) -> Metadata:
    """The trailers that carry a failure's google.rpc details to a gRPC client (none without)."""
    if not failure.details:
        return ()
    status = status_pb2.Status(
        code=failure.code.value[0], message=failure.message, details=failure.details
    )
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def request_id(metadata: Metadata) -> str:
    """The x-request-id of metadata built by `Forwarder.metadata`."""
    return next(str(v) for k, v in metadata if k == REQUEST_ID_HEADER)


@dataclass(frozen=True)
class Method:
    """A routed method: its path, descriptor and message classes, and where it is served."""

    path: str
    descriptor: MethodDescriptor
    request_cls: type[Message]
    response_cls: type[Message]
    #: The backend serving it, or None when `servicer` (in this process) does.
    address: str | None
    servicer: Any = None

    @property
    def server_streaming(self) -> bool:
        """Whether the method answers with a stream."""
        return bool(self.descriptor.server_streaming)

    def decoded(self, item: Message | bytes) -> Message:
        """A response (a stream item) as its message, decoding a backend's raw bytes."""
        return item if isinstance(item, Message) else _decode(self.response_cls, item)


class Channels:
    """One long-lived channel per backend address, shared by every service it hosts."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def get(self, address: str) -> grpc.aio.Channel:
        """The channel to an address (opened on first use)."""
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = channel(address)
        return ch

    async def close(self) -> None:
        """Close every channel."""
        channels, self._channels = self._channels, {}
        for ch in channels.values():
            await ch.close()


class Forwarder:
    """Routes calls to backends or in-process servicers; owns the backend channels."""

    def __init__(
        self,
        *,
        routes: Mapping[str, str],
        local: Mapping[str, Any] | None = None,
        call_timeout_s: float | None = CALL_TIMEOUT_S,
        channels: Channels | None = None,
    ) -> None:
        """`channels` lets the in-process servicers share the forwarder's channels (their
        own calls to backends); the forwarder closes them."""
        self._routes = dict(routes)
        self.channels = channels or Channels()
        self.call_timeout_s = call_timeout_s
        local = dict(local or {})
        self._services = {
            name: service_descriptor(name) for name in dict.fromkeys([*local, *self._routes])
        }
        self._methods: dict[str, Method] = {}
        for name, service in self._services.items():
            for desc in service.methods:
                path = f"/{name}/{desc.name}"
                self._methods[path] = Method(
                    path=path,
                    descriptor=desc,
                    request_cls=message_factory.GetMessageClass(desc.input_type),
                    response_cls=message_factory.GetMessageClass(desc.output_type),
                    address=None if name in local else self._routes[name],
                    servicer=local.get(name),
                )

    @property
    def services(self) -> list[str]:
        """The fully qualified names of every routed service (in-process ones first)."""
        return list(self._services)

    @property
    def backends(self) -> dict[str, str]:
        """Service name -> backend address, for the services that are not served in-process."""
        return dict(self._routes)

    def descriptors(self) -> list[ServiceDescriptor]:
        """The descriptors of every routed service."""
        return list(self._services.values())

    def method(self, path: str) -> Method | None:
        """The method at `/<service>/<Method>`, or None when nothing here serves it."""
        return self._methods.get(path)

    def channel(self, address: str) -> grpc.aio.Channel:
        """The one long-lived channel to a backend address, shared by every service it hosts."""
        return self.channels.get(address)

    def metadata(self, incoming: Iterable[tuple[str, Any]], *, actor: str = "") -> Metadata:
        """What a backend gets with a call: the client's x-request-id and trace headers (of its
        gRPC metadata or HTTP headers), the actor, and a new x-request-id when it sent none.

        The actor is `actor`, else the caller the gateway authenticated for this request
        (open mode names nobody: the request's own fields, an approver, stand).
        """
        kept: list[tuple[str, str | bytes]] = [
            (key.lower(), value)
            for key, value in incoming
            if key.lower() in CLIENT_KEYS and isinstance(value, str)
        ]
        if not actor:
            caller = CURRENT_CALLER.get()
            actor = caller.name if caller is not None and caller.token_id else ""
        if actor:
            kept.append((ACTOR_KEY, actor))
        if not any(key == REQUEST_ID_HEADER for key, _ in kept):
            kept.append((REQUEST_ID_HEADER, new_id()))
        return tuple(kept)

    def deadline(self, method: Method, client_s: float | None) -> float | None:
        """Seconds a call may take: the client's own deadline when it set one; else
        `call_timeout_s` for a unary call and none for a stream (it lasts while watched)."""
        if client_s is not None:
            return client_s
        return None if method.server_streaming else self.call_timeout_s

    async def call(self, method: Method, request: M, *, metadata: Metadata) -> M:
        """A unary call under the default deadline; bytes answer bytes, a message answers a
        message. Fails with CallError."""
        return await self._unary(method, request, metadata=metadata, client_deadline_s=None)

    async def relay(
        self,
        method: Method,
        request: bytes,
        *,
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> bytes:
        """A unary call for a gRPC client: its metadata and deadline, the backend's response
        headers and trailers passed back to it. Fails with CallError."""
        return await self._unary(
            method,
            request,
            metadata=self.metadata(context.invocation_metadata() or ()),
            client_deadline_s=context.time_remaining(),
            context=context,
        )

    async def _unary(
        self,
        method: Method,
        request: M,
        *,
        metadata: Metadata,
        client_deadline_s: float | None,
        context: grpc.aio.ServicerContext[bytes, bytes] | None = None,
    ) -> M:
        deadline = self.deadline(method, client_deadline_s)
        with tracing.span(method.path, tracing.carrier_from(metadata), kind=tracing.SERVER):
            # The backend's span is a child of the gateway's, not of the client's.
            traced = (
                *((k, v) for k, v in metadata if k not in tracing.HEADERS),
                *tracing.inject().items(),
            )
            if method.address is None:
                message = _message(method.request_cls, request)
                reply = await _local_unary(method, message, deadline)
                return reply if isinstance(request, Message) else reply.SerializeToString()
            call = self.channel(method.address).unary_unary(method.path)(
                _wire(request), metadata=traced, timeout=deadline
            )
            try:
                raw: bytes = await call
                if context is not None:
                    await _pass_headers(call, context)
                    context.set_trailing_metadata(forwardable(await call.trailing_metadata()))
            except grpc.aio.AioRpcError as err:
                raise CallError.from_rpc_error(err) from err
        return raw if isinstance(request, bytes) else _decode(method.response_cls, raw)

    def stream(
        self, method: Method, request: Message, *, metadata: Metadata
    ) -> AsyncGenerator[Message | bytes, None]:
        """A server stream's messages: a backend's as its raw bytes (decode with
        `method.response_cls`), an in-process servicer's as messages. Fails with CallError;
        closing the generator cancels the call."""
        return self._stream(
            method, request, metadata=metadata, client_deadline_s=None, context=None
        )

    def relay_stream(
        self, method: Method, request: bytes, *, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncGenerator[bytes, None]:
        """A server stream for a gRPC client, as raw bytes: its metadata and deadline, the
        backend's headers and trailers passed back to it. Fails with CallError."""
        return cast(
            AsyncGenerator[bytes, None],
            self._stream(
                method,
                request,
                metadata=self.metadata(context.invocation_metadata() or ()),
                client_deadline_s=context.time_remaining(),
                context=context,
            ),
        )

    async def _stream(
        self,
        method: Method,
        request: Message | bytes,
        *,
        metadata: Metadata,
        client_deadline_s: float | None,
        context: grpc.aio.ServicerContext[bytes, bytes] | None,
    ) -> AsyncGenerator[Message | bytes, None]:
        deadline = self.deadline(method, client_deadline_s)
        if method.address is None:
            message = _message(method.request_cls, request)
            async for item in _local_stream(method, message, deadline):
                yield item if isinstance(request, Message) else item.SerializeToString()
            return
        call = self.channel(method.address).unary_stream(method.path)(
            _wire(request), metadata=metadata, timeout=deadline
        )
        try:
            if context is not None:
                await _pass_headers(call, context)
            async for raw in call:
                yield raw
            if context is not None:
                context.set_trailing_metadata(forwardable(await call.trailing_metadata()))
        except grpc.aio.AioRpcError as err:
            raise CallError.from_rpc_error(err) from err
        finally:
            # The client went away or failed: stop the backend stream too.
            call.cancel()

    async def close(self) -> None:
        """Close the backend channels."""
        await self.channels.close()


async def _pass_headers(call: Any, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    """Send a backend call's response headers on to the gRPC client (if it sent any)."""
    headers = forwardable(await call.initial_metadata())
    if headers:
        await context.send_initial_metadata(headers)


async def _local_unary(method: Method, message: Message, deadline: float | None) -> Message:
    scope = asyncio.timeout(deadline)
    try:
        async with scope:
            reply: Message = await getattr(method.servicer, method.descriptor.name)(message, None)
    except Exception as exc:
        raise _local_failure(exc, scope) from exc
    return reply


async def _local_stream(
    method: Method, message: Message, deadline: float | None
) -> AsyncGenerator[Message, None]:
    when = None if deadline is None else asyncio.get_running_loop().time() + deadline
    items = getattr(method.servicer, method.descriptor.name)(message, None)
    try:
        while True:
            scope = asyncio.timeout_at(when)
            try:
                async with scope:
                    item: Message = await anext(items)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise _local_failure(exc, scope) from exc
            yield item
    finally:
        await items.aclose()


def _local_failure(exc: Exception, scope: asyncio.Timeout) -> CallError:
    """An in-process servicer's exception as the status gRPC would have ended the call with."""
    if isinstance(exc, TimeoutError) and scope.expired():
        return CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    return CallError.from_status(failure_status(exc))


def _wire(request: Message | bytes) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def _message(cls: type[Message], request: Message | bytes) -> Message:
    if isinstance(request, Message):
        return request
    try:
        return cls.FromString(request)
    except DecodeError:
        raise CallError(grpc.StatusCode.INTERNAL, "the request could not be decoded") from None


def _decode(cls: type[Message], raw: bytes) -> Message:
    try:
        return cls.FromString(raw)
    except DecodeError:
        raise CallError(
            grpc.StatusCode.INTERNAL, "the backend's response could not be decoded"
        ) from None
