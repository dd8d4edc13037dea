"""gRPC server bootstrap and error mapping shared by every service."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar, cast

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from conveyor.kernel import tracing
from conveyor.kernel.errors import (
    AlreadyExists,
    ConveyorError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from conveyor.kernel.logging import rpc_log_context

log = structlog.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

DOMAIN = "conveyor.dev"
_HEALTH: weakref.WeakKeyDictionary[grpc.aio.Server, Any] = weakref.WeakKeyDictionary()
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_CODES: list[tuple[type[ConveyorError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
CHANNEL_OPTIONS = [
    *SERVER_OPTIONS,
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
]


def to_status(exc: ConveyorError) -> status_pb2.Status:
    """Build a google.rpc.Status with ErrorInfo and, for bad input, BadRequest details."""
    code = next((c for t, c in _CODES if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
    info = error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=exc.metadata)
    details = [info]
    violations = exc.violations if isinstance(exc, InvalidArgument | NotFound) else []
    if violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in violations
                ]
            )
        )
    packed = []
    for d in details:
        any_msg = any_pb2.Any()
        any_msg.Pack(d)
        packed.append(any_msg)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=exc.message, details=packed)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    if isinstance(exc, ConveyorError):
        await context.abort_with_status(rpc_status.to_status(to_status(exc)))
    log.exception("unhandled error in handler", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")


def map_errors(fn: F) -> F:
    """Decorate a servicer method (unary or server-streaming) to map domain errors to statuses."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            with rpc_log_context(fn.__name__, request, context):
                try:
                    async for item in fn(self, request, context):
                        yield item
                except (grpc.aio.AbortError, GeneratorExit):
                    raise
                except Exception as exc:
                    await _abort(context, exc)

        return cast(F, stream)

    @functools.wraps(fn)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        metadata = context.invocation_metadata() if context is not None else None
        with rpc_log_context(fn.__name__, request, context):
            try:
                with tracing.span(fn.__name__, tracing.carrier_from(metadata), kind=tracing.SERVER):
                    return await fn(self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)
                raise  # unreachable: abort raises

    return cast(F, unary)


def error_details(err: grpc.RpcError) -> tuple[str, list[tuple[str, str, str]]]:
    """Read (ErrorInfo reason, [(field, reason, description)]) from a client-side RpcError."""
    status = rpc_status.from_call(cast(grpc.Call, err))
    reason = ""
    violations: list[tuple[str, str, str]] = []
    if status is None:
        return reason, violations
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.reason, v.description) for v in bad.field_violations]
    return reason, violations


class ServiceRegistration:
    """What a service contributes to a server: its full name and a function adding it."""

    def __init__(self, name: str, add: Callable[[grpc.aio.Server], None]) -> None:
        self.name = name
        self.add = add


async def start_server(
    registrations: Iterable[ServiceRegistration], address: str
) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server with the services, health checking and reflection.

    Returns the server and the bound port (address may end in :0 for an ephemeral port).
    """
    regs = list(registrations)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    for reg in regs:
        reg.add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [reg.name for reg in regs]
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC address {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _HEALTH[server] = health_servicer
    return server, port


async def set_not_serving(server: grpc.aio.Server) -> None:
    """Report NOT_SERVING for every service of a server: the first step of a shutdown."""
    health_servicer = _HEALTH.get(server)
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()


def channel(address: str) -> grpc.aio.Channel:
    """An insecure aio channel with Conveyor's message size limits."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def replace_port(address: str, port: int) -> str:
    """'127.0.0.1:0' + 4242 -> '127.0.0.1:4242'."""
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
