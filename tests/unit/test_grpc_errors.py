"""Every service answers UNAVAILABLE (retryable) when its database cannot be reached."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from conveyor.kernel.errors import Unavailable
from conveyor.kernel.grpcserver import error_details, map_errors


class Servicer:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    @map_errors
    async def Call(self, request: Any, context: Any) -> bytes:  # noqa: N802 (a gRPC method)
        raise self.exc


def unreachable() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_in_process_callers_get_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        asyncio.run(Servicer(unreachable()).Call(b"", None))
    assert caught.value.reason == "DATABASE_UNAVAILABLE"


def test_other_database_errors_stay_what_they_are() -> None:
    error = IntegrityError("INSERT", {}, ValueError("duplicate"))
    with pytest.raises(IntegrityError):
        asyncio.run(Servicer(error).Call(b"", None))


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (unreachable(), grpc.StatusCode.UNAVAILABLE),
        (IntegrityError("INSERT", {}, ValueError("duplicate")), grpc.StatusCode.INTERNAL),
    ],
)
def test_grpc_callers_get_the_status(exc: Exception, code: grpc.StatusCode) -> None:
    async def go() -> grpc.aio.AioRpcError:
        servicer = Servicer(exc)
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "test.Errors", {"Call": grpc.unary_unary_rpc_method_handler(servicer.Call)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Errors/Call")
                try:
                    await call(b"", timeout=10)
                except grpc.aio.AioRpcError as err:
                    return err
                raise AssertionError("the call succeeded")
        finally:
            await server.stop(None)

    err = asyncio.run(go())
    assert err.code() == code
    if code == grpc.StatusCode.UNAVAILABLE:
        assert error_details(err)[0] == "DATABASE_UNAVAILABLE"
