"""Every service answers UNAVAILABLE (retryable) when its database cannot be reached."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from conveyor.kernel.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Violation,
)
from conveyor.kernel.grpcserver import domain_error, error_details, map_errors


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
    err = _failed_call(exc)
    assert err.code() == code
    if code == grpc.StatusCode.UNAVAILABLE:
        assert error_details(err)[0] == "DATABASE_UNAVAILABLE"


def _failed_call(exc: Exception) -> grpc.aio.AioRpcError:
    """The error a client gets from a real server whose handler raises `exc`."""

    async def go() -> grpc.aio.AioRpcError:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "test.Errors", {"Call": grpc.unary_unary_rpc_method_handler(Servicer(exc).Call)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    await channel.unary_unary("/test.Errors/Call")(b"", timeout=10)
                except grpc.aio.AioRpcError as err:
                    return err
                raise AssertionError("the call succeeded")
        finally:
            await server.stop(None)

    return asyncio.run(go())


def _through_grpc(exc: Exception) -> Exception:
    """What a caller's `domain_error` makes of `exc` raised by a handler on a real server."""
    return domain_error(_failed_call(exc), peer="the callee")


@pytest.mark.parametrize(
    "raised",
    [
        InvalidArgument(
            "bad run", reason="INVALID_PARAMETERS", violations=[Violation("params.a", "x", "TYPE")]
        ),
        NotFound("no such job", reason="JOB_NOT_FOUND", violations=[Violation("job_id", "j")]),
        AlreadyExists("taken", reason="NAME_TAKEN"),
        FailedPrecondition("run ended", reason="RUN_TERMINAL"),
        Unavailable("database unavailable", reason="DATABASE_UNAVAILABLE"),
    ],
)
def test_a_domain_error_crosses_a_service_boundary_unchanged(raised: Exception) -> None:
    got = _through_grpc(raised)
    assert type(got) is type(raised)
    assert got.reason == raised.reason  # type: ignore[attr-defined]
    assert getattr(got, "violations", []) == getattr(raised, "violations", [])
    assert raised.message in got.message  # type: ignore[attr-defined]


def test_an_internal_error_of_the_callee_is_unavailable_to_the_caller() -> None:
    got = _through_grpc(RuntimeError("boom"))
    assert isinstance(got, Unavailable)
    assert got.message.startswith("the callee: INTERNAL")
