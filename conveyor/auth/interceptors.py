"""The gateway's gRPC authentication: a server interceptor in front of every public method."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from conveyor.auth.authn import CURRENT_CALLER, Authenticator, Denied, bearer
from conveyor.kernel.grpcserver import refusal

#: Methods any client may call without a token: health probes and reflection (the schema).
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REVOKED_MESSAGE = "the token was revoked or expired"


class PublicAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorizes each call from its `authorization` metadata.

    The caller is put into `CURRENT_CALLER` for the handler (the proxy forwards its name as
    the actor); a server stream re-checks the token before each message and ends with
    UNAUTHENTICATED once it was revoked or expired.
    """

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        """The method's handler, wrapped with the caller; or a refusal."""
        path: str = details.method
        if path.startswith(OPEN_PREFIXES):
            return await continuation(details)
        header = next(
            (v for k, v in details.invocation_metadata or () if k == "authorization"), None
        )
        handler = await continuation(details)
        if handler is None:  # no such method: UNIMPLEMENTED, as reflection would tell anyway
            return None
        try:
            caller = await self._auth.authorize(
                bearer(header if isinstance(header, str) else None), path
            )
        except Denied as denied:
            return refusal(handler, denied.code, denied.message)
        return _with_caller(handler, caller, self._auth)


def _with_caller(handler: Any, caller: Any, auth: Authenticator) -> Any:
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            token = CURRENT_CALLER.set(caller)
            try:
                return await inner(request, context)
            finally:
                CURRENT_CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(unary, **options)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            # Each call is its own task, so the variable need not be reset (and a generator
            # closed from another context could not reset it).
            CURRENT_CALLER.set(caller)
            guard = auth.guard(caller)
            messages = inner_stream(request, context)
            try:
                async for item in messages:
                    if not await guard.valid():
                        await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED_MESSAGE)
                    yield item
            finally:
                await messages.aclose()

        return grpc.unary_stream_rpc_method_handler(stream, **options)
    # No public method streams from the client; refuse rather than pass one through unchecked.
    return refusal(handler, grpc.StatusCode.UNIMPLEMENTED, "client streams are not served")
