"""GatewayService: the calls the public edge answers itself."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from conveyor.auth import tokens, webhooks
from conveyor.auth.authn import CURRENT_CALLER, Authenticator
from conveyor.gateway.forward import Channels
from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.kernel.db import Database
from conveyor.kernel.errors import FailedPrecondition, NotFound
from conveyor.kernel.grpcserver import domain_error, map_errors
from conveyor.kernel.protoconv import parse_json_object
from conveyor.shared import nodetypes as nt
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
TRANSLATOR = "conveyor.translator.v1.TranslatorService"


def conveyor_version() -> str:
    """The installed distribution's version, or "0+unknown" when running from a bare tree."""
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# The generated base is untyped (Any) to mypy; subclassing it is the point.
class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):  # type: ignore[misc]
    """Describes the gateway: version, mode and the backends it routes to."""

    def __init__(
        self,
        *,
        routes: Mapping[str, str],
        mode: str,
        authenticator: Authenticator,
        channels: Channels,
    ) -> None:
        self._routes = dict(routes)
        self._channels = channels
        self._mode = mode
        self._version = conveyor_version()
        self._auth = authenticator
        #: Base URL of the HTTP API (set once the HTTP port is bound), for webhook URLs.
        self.http_url = ""

    async def GetServerInfo(  # noqa: N802 - gRPC method name
        self,
        request: gateway_service_pb2.GetServerInfoRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> gateway_service_pb2.GetServerInfoResponse:
        """Version, mode and backends, sorted by service name."""
        return gateway_service_pb2.GetServerInfoResponse(
            version=self._version,
            mode=self._mode,
            backends=[
                gateway_service_pb2.Backend(service=name, address=address)
                for name, address in sorted(self._routes.items())
            ],
        )

    async def GetCaller(  # noqa: N802 - gRPC method name
        self,
        request: gateway_service_pb2.GetCallerRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> gateway_service_pb2.GetCallerResponse:
        """The name and role of the token the call was authenticated with."""
        caller = CURRENT_CALLER.get()
        if caller is None:  # pragma: no cover - every public call passes authentication
            raise RuntimeError("no authenticated caller")
        return gateway_service_pb2.GetCallerResponse(name=caller.name, role=caller.role)  # type: ignore[arg-type]

    def _db(self) -> Database:
        db = self._auth.db
        if db is None:
            raise FailedPrecondition(
                "this server runs without authentication (--open): there are no tokens",
                reason="AUTH_DISABLED",
            )
        return db

    @map_errors
    async def CreateToken(  # noqa: N802 - gRPC method name
        self, request: gateway_service_pb2.CreateTokenRequest, context: Any
    ) -> gateway_service_pb2.CreateTokenResponse:
        """See the proto."""
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        db = self._db()

        def work() -> tuple[str, tokens.TokenInfo]:
            with db.transaction() as session:
                return tokens.create_token(
                    session, name=request.name, role=request.role, expires_in=ttl
                )

        secret, info = await asyncio.to_thread(work)
        return gateway_service_pb2.CreateTokenResponse(token=token_pb(info), secret=secret)

    @map_errors
    async def ListTokens(  # noqa: N802 - gRPC method name
        self, request: gateway_service_pb2.ListTokensRequest, context: Any
    ) -> gateway_service_pb2.ListTokensResponse:
        """See the proto."""
        db = self._db()

        def work() -> list[tokens.TokenInfo]:
            with db.read() as session:
                return tokens.list_tokens(session)

        found = await asyncio.to_thread(work)
        return gateway_service_pb2.ListTokensResponse(tokens=[token_pb(t) for t in found])

    @map_errors
    async def RevokeToken(  # noqa: N802 - gRPC method name
        self, request: gateway_service_pb2.RevokeTokenRequest, context: Any
    ) -> gateway_service_pb2.RevokeTokenResponse:
        """See the proto."""
        db = self._db()

        def work() -> tokens.TokenInfo:
            with db.transaction() as session:
                return tokens.revoke_token(session, request.name)

        info = await asyncio.to_thread(work)
        self._auth.revoked()
        return gateway_service_pb2.RevokeTokenResponse(token=token_pb(info))

    @map_errors
    async def RotateWebhookSecret(  # noqa: N802 - gRPC method name
        self, request: gateway_service_pb2.RotateWebhookSecretRequest, context: Any
    ) -> gateway_service_pb2.RotateWebhookSecretResponse:
        """See the proto."""
        job = await webhook_job(self._routes, self._channels, request.job_id)
        db = self._db()

        def work() -> str:
            with db.transaction() as session:
                return webhooks.rotate_secret(session, job.job_id)

        secret = await asyncio.to_thread(work)
        return gateway_service_pb2.RotateWebhookSecretResponse(
            job_id=job.job_id, url=f"{self.http_url}/v1/hooks/{job.job_id}", secret=secret
        )


async def webhook_job(routes: Mapping[str, str], channels: Channels, job: str) -> Any:
    """The job (by id or name) a webhook starts; NotFound, or FailedPrecondition without a
    trigger.webhook node."""
    if not job or len(job) > 200:
        raise NotFound(f"job {job!r} not found", reason="JOB_NOT_FOUND")
    stub = translator_service_pb2_grpc.TranslatorServiceStub(channels.get(routes[TRANSLATOR]))
    try:
        reply = await stub.GetJob(translator_service_pb2.GetJobRequest(job_id=job), timeout=30)
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"job {job!r} not found", reason="JOB_NOT_FOUND") from None
        raise domain_error(err, peer="translator") from None
    definition = parse_json_object(reply.job.definition_json, field="job.definition")
    nodes = definition.get("nodes") or []
    if not any(isinstance(n, dict) and n.get("type") == nt.TRIGGER_WEBHOOK for n in nodes):
        raise FailedPrecondition(
            f"job {reply.job.name!r} has no trigger.webhook node", reason="NO_WEBHOOK_TRIGGER"
        )
    return reply.job


def token_pb(info: tokens.TokenInfo) -> gateway_service_pb2.Token:
    """A token's description as its message."""
    message = gateway_service_pb2.Token(name=info.name, role=info.role, revoked=info.revoked)  # type: ignore[arg-type]
    message.create_time.FromDatetime(info.created_at)
    if info.expires_at is not None:
        message.expire_time.CopyFrom(_timestamp(info))
    return message


def _timestamp(info: tokens.TokenInfo) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    assert info.expires_at is not None
    stamp.FromDatetime(info.expires_at)
    return stamp
