"""gRPC server bootstrap and error mapping shared by every service."""

from __future__ import annotations

import collections
import dataclasses
import functools
import hmac
import inspect
import secrets
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
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
    Violation,
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


def as_domain_error(exc: BaseException) -> BaseException:
    """An unreachable database (any service's) as UNAVAILABLE, which clients may retry;
    every other exception unchanged."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return exc  # (and clients of this module need not import SQLAlchemy)
    from sqlalchemy.exc import DBAPIError

    from conveyor.kernel.db import is_unreachable

    if isinstance(exc, DBAPIError) and is_unreachable(exc):
        return Unavailable(
            f"database unavailable: {type(exc.orig).__name__ if exc.orig else type(exc).__name__}",
            reason="DATABASE_UNAVAILABLE",
        )
    return exc


def failure_status(exc: BaseException) -> status_pb2.Status:
    """The status a handler's exception ends its call with: a domain error's (`to_status`,
    an unreachable database's as UNAVAILABLE), anything else INTERNAL without details, logged.

    The one mapping for servicers, whether gRPC calls them or the gateway calls them
    in-process."""
    exc = as_domain_error(exc)
    if isinstance(exc, ConveyorError):
        return to_status(exc)
    log.exception("unhandled error in handler", exc_info=exc)
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error: {type(exc).__name__}"
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    status = failure_status(exc)
    if status.details:
        await context.abort_with_status(rpc_status.to_status(status))
    await context.abort(grpc.StatusCode.INTERNAL, status.message)


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
                if context is None:  # called in-process (the gateway's HTTP layer maps it)
                    mapped = as_domain_error(exc)
                    if mapped is exc:
                        raise
                    raise mapped from exc
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


def domain_error(err: grpc.RpcError, *, peer: str = "") -> ConveyorError:
    """The domain error a status from another service stands for: the inverse of
    `to_status`, so a caller sees the callee's reason and field violations unchanged.

    Statuses without a domain meaning (INTERNAL, UNKNOWN, UNAUTHENTICATED, ...) and the
    retryable ones (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are `Unavailable`:
    to the caller, the other service could not do it now. `peer` names it in the message.
    """
    code = err.code()  # type: ignore[attr-defined]
    message = err.details() or code.name  # type: ignore[attr-defined]
    reason, found = error_details(err)
    violations = [Violation(f, d, r) for f, r, d in found]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(message, reason=reason or "INVALID_ARGUMENT", violations=violations)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(message, reason=reason or "NOT_FOUND", violations=violations)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExists(message, reason=reason or "ALREADY_EXISTS")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(message, reason=reason or "FAILED_PRECONDITION")
    where = f"{peer}: " if peer else ""
    return Unavailable(f"{where}{code.name}: {message}", reason=reason or "UNAVAILABLE")


class ServiceRegistration:
    """What a service contributes to a server: its full name and a function adding it."""

    def __init__(self, name: str, add: Callable[[grpc.aio.Server], None]) -> None:
        self.name = name
        self.add = add


async def start_server(
    registrations: Iterable[ServiceRegistration],
    address: str,
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server with the services, health checking and reflection.

    Without `interceptors` the server is internal: every call but grpc.health.v1 must carry
    the internal credential. The gateway passes its own (public) authentication instead.
    Returns the server and the bound port (address may end in :0 for an ephemeral port).
    """
    regs = list(registrations)
    chosen = list(interceptors) if interceptors is not None else [InternalCredentialCheck()]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=chosen)
    for reg in regs:
        reg.add(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [reg.name for reg in regs]
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    tls = _tls[0] if _tls else None
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        # Internal servers (no interceptors given) require a client certificate from the CA
        # when one is configured (mTLS); the public gateway only presents its certificate.
        port = server.add_secure_port(
            address, tls.server_credentials(client_auth=interceptors is None)
        )
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
    """An aio channel to another Conveyor service: size limits and the internal credential
    (over TLS, with this process's client certificate, when TLS is configured)."""
    interceptors = [_AioUnaryCredential(), _AioStreamCredential(), _AioClientStreamCredential()]
    tls = _tls[0] if _tls else None
    if tls is None:
        return grpc.aio.insecure_channel(
            address, options=CHANNEL_OPTIONS, interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=tls.options(), interceptors=interceptors
    )


def sync_channel(address: str, *, credential: str | None = None) -> grpc.Channel:
    """A blocking channel to another Conveyor service (a worker's), with the credential
    (this process's, or the one given)."""
    tls = _tls[0] if _tls else None
    ch = (
        grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        if tls is None
        else grpc.secure_channel(address, tls.channel_credentials(), options=tls.options())
    )
    return with_metadata(ch, [(INTERNAL_KEY, credential or internal_credential())])


# --- TLS ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM files of CONVEYOR_TLS_*: this process's certificate and key, and the CA that signs
    every Conveyor certificate (internal servers then require client certificates: mTLS)."""

    cert_path: Path
    key_path: Path
    cert: bytes
    key: bytes
    ca: bytes | None
    server_name: str = ""

    @classmethod
    def load(cls, cert: Path, key: Path, ca: Path | None, server_name: str = "") -> TlsFiles:
        """Read the files (a missing or unreadable one is an error at start)."""
        return cls(
            cert, key, cert.read_bytes(), key.read_bytes(), ca.read_bytes() if ca else None,
            server_name,
        )  # fmt: skip

    def server_credentials(self, *, client_auth: bool) -> grpc.ServerCredentials:
        """Credentials of a server presenting this certificate."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca,
            require_client_auth=client_auth and self.ca is not None,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a channel verifying the server against the CA, showing this cert."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def options(self) -> list[tuple[str, Any]]:
        """Channel options (the name certificates are checked against, when overridden)."""
        extra = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return [*CHANNEL_OPTIONS, *extra]


_tls: list[TlsFiles | None] = []


def set_tls(files: TlsFiles | None) -> None:
    """Serve and call over TLS with these files (None: plaintext) in this process."""
    _tls[:] = [files]


def tls_files() -> TlsFiles | None:
    """This process's TLS files, if any."""
    return _tls[0] if _tls else None


# --- the internal credential -------------------------------------------------------------
# Every internal service refuses calls without it; only Conveyor's own processes hold it
# (CONVEYOR_INTERNAL_TOKEN, or one random value per embedded process). `x-conveyor-actor`
# names the public caller on whose behalf a call is made; it is trusted only alongside the
# credential, and the gateway drops both keys from what a client sends.
INTERNAL_KEY = "x-conveyor-internal"
ACTOR_KEY = "x-conveyor-actor"
OPEN_PATHS = ("/grpc.health.v1.Health/",)
_credential: list[str] = []


def set_internal_credential(secret: str) -> None:
    """Use this secret for every internal call this process makes and accepts."""
    if len(secret) < 16:
        raise ValueError("CONVEYOR_INTERNAL_TOKEN must be at least 16 characters")
    _credential[:] = [secret]


def internal_credential() -> str:
    """This process's internal credential (a random one until one is set)."""
    if not _credential:
        _credential.append(secrets.token_urlsafe(32))
    return _credential[0]


def actor(context: grpc.aio.ServicerContext[Any, Any] | None) -> str:
    """The public caller a call is made for ("" when a service calls on its own account)."""
    if context is None:
        return ""
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_KEY and isinstance(value, str):
            return value
    return ""


def _with_credential(metadata: Any, secret: str | None = None) -> list[tuple[str, Any]]:
    kept = [(k, v) for k, v in (metadata or ()) if k != INTERNAL_KEY]
    kept.append((INTERNAL_KEY, secret or internal_credential()))
    return kept


# A grpc.aio channel files each interceptor under its first matching kind only, so the two
# kinds are two classes.
class _AioUnaryCredential(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the internal credential to every unary call of an aio channel."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Unary calls."""
        return await continuation(
            details._replace(metadata=_with_credential(details.metadata)), request
        )


class _AioStreamCredential(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds the internal credential to every server-streaming call of an aio channel."""

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Server-streaming calls."""
        return await continuation(
            details._replace(metadata=_with_credential(details.metadata)), request
        )


class _AioClientStreamCredential(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the internal credential to every client-streaming call of an aio channel."""

    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        """Client-streaming calls."""
        return await continuation(
            details._replace(metadata=_with_credential(details.metadata)), request_iterator
        )


class _SyncDetails(
    collections.namedtuple(
        "_SyncDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """A blocking call's details with metadata replaced."""


class _SyncMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds fixed metadata to every call of a blocking channel (replacing those keys)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = list(pairs)
        self._keys = {k for k, _ in pairs}

    def _details(self, details: Any) -> _SyncDetails:
        kept = [(k, v) for k, v in (details.metadata or ()) if k not in self._keys]
        return _SyncDetails(
            details.method,
            details.timeout,
            [*kept, *self._pairs],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Unary calls."""
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Server-streaming calls."""
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        """Client-streaming calls (artifact uploads)."""
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        """Bidirectional calls."""
        return continuation(self._details(details), requests)


def with_metadata(ch: grpc.Channel, pairs: Sequence[tuple[str, str]]) -> grpc.Channel:
    """A blocking channel that sends `pairs` with every call."""
    return grpc.intercept_channel(ch, _SyncMetadata(pairs))


class InternalCredentialCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses (UNAUTHENTICATED) every call without the internal credential; health is open."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        """Let the call through, or answer it with UNAUTHENTICATED."""
        if details.method.startswith(OPEN_PATHS):
            return await continuation(details)
        presented = next(
            (v for k, v in details.invocation_metadata or () if k == INTERNAL_KEY), None
        )
        if isinstance(presented, str) and hmac.compare_digest(
            presented.encode(), internal_credential().encode()
        ):
            return await continuation(details)
        handler = await continuation(details)
        return refusal(
            handler,
            grpc.StatusCode.UNAUTHENTICATED,
            "internal service: calls need Conveyor's internal credential",
        )


def refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same shape as `handler` that ends the call with `code`."""

    async def unary(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def stream(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream)
    return grpc.unary_unary_rpc_method_handler(unary)


def replace_port(address: str, port: int) -> str:
    """'127.0.0.1:0' + 4242 -> '127.0.0.1:4242'."""
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
