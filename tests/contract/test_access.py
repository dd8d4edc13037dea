"""Access control at the gateway, generated from the descriptors: every public RPC x every role
(and no token, and a revoked token), over gRPC and HTTP, allowed or refused as declared.

A new RPC is covered without editing this file; one without `required_role` fails the first test.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re
from typing import Any

import grpc
import httpx
import pytest

import conveyor
from conveyor.auth.authn import Authenticator, Denied
from conveyor.auth.roles import PUBLIC_ROLES, permits, required_role
from conveyor.auth.v1 import auth_pb2
from conveyor.gateway.forward import service_descriptor
from conveyor.gateway.transcode import routes_for
from tests.contract.test_gateway_fakes import (
    EXECUTOR,
    MONITOR,
    OTHER_SERVICES,
    ROLES,
    TRANSLATOR,
    Stack,
    run_with_stack,
)

GATEWAY = "conveyor.gateway.v1.GatewayService"
PUBLIC_SERVICES = (GATEWAY, TRANSLATOR, EXECUTOR, MONITOR, *OTHER_SERVICES)
CALLERS: list[str | None] = [None, "revoked", *ROLES]
REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def _all_service_descriptors() -> list[Any]:
    """Every service of every generated `*_service_pb2` module in the package."""
    found = []
    for info in pkgutil.walk_packages(conveyor.__path__, "conveyor."):
        if info.name.endswith("_service_pb2"):
            module = importlib.import_module(info.name)
            found.extend(module.DESCRIPTOR.services_by_name.values())
    return found


def _methods() -> list[tuple[str, Any]]:
    return [
        (name, method) for name in PUBLIC_SERVICES for method in service_descriptor(name).methods
    ]


def _expected(caller: str | None, needed: int) -> grpc.StatusCode | None:
    """The refusal a caller gets, or None when it is let through."""
    if caller in (None, "revoked"):
        return grpc.StatusCode.UNAUTHENTICATED
    if not permits(ROLES[caller], needed):
        return grpc.StatusCode.PERMISSION_DENIED
    return None


def test_every_rpc_of_every_service_declares_its_role() -> None:
    services = _all_service_descriptors()
    assert {s.full_name for s in services} >= set(PUBLIC_SERVICES)
    undeclared = [
        f"{s.full_name}.{m.name}"
        for s in services
        for m in s.methods
        if required_role(m) not in {*PUBLIC_ROLES, auth_pb2.ROLE_INTERNAL}
    ]
    assert undeclared == [], f"RPCs without (conveyor.auth.v1.required_role): {undeclared}"


def test_undeclared_and_internal_methods_are_refused_to_every_role() -> None:
    auth = Authenticator(None, open_access=True)  # even the all-powerful anonymous caller
    for path in ("/acme.v1.Nothing/Get", f"/{TRANSLATOR}/NoSuchMethod"):
        with pytest.raises(Denied) as denied:
            asyncio.run(auth.authorize("whatever", path))
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    for role in ROLES.values():
        assert not permits(role, auth_pb2.ROLE_INTERNAL)
        assert not permits(role, auth_pb2.ROLE_UNSPECIFIED)


def test_grpc_every_public_method_by_every_caller() -> None:
    async def scenario(stack: Stack) -> None:
        outcomes = []
        for caller in CALLERS:
            async with stack.channel(caller) as ch:
                for service, method in _methods():
                    path = f"/{service}/{method.name}"
                    if method.server_streaming:
                        call = ch.unary_stream(path)(b"", timeout=2)
                    else:
                        call = ch.unary_unary(path)(b"", timeout=2)
                    try:
                        if method.server_streaming:
                            async for _ in call:
                                break
                        else:
                            await call
                        code = grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as err:
                        code = err.code()
                    expected = _expected(caller, required_role(method))
                    got = code if code in REFUSALS else None
                    outcomes.append((caller, path, expected, got))
        wrong = [o for o in outcomes if o[2] != o[3]]
        assert wrong == []
        assert len(outcomes) == len(CALLERS) * len(_methods())

    run_with_stack(scenario, every_service=True)


def _http_path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", template)


def test_http_every_route_by_every_caller() -> None:
    async def scenario(stack: Stack) -> None:
        routes = routes_for(service_descriptor(name) for name in PUBLIC_SERVICES)
        assert {r.grpc_path for r in routes} == {f"/{s}/{m.name}" for s, m in _methods()}
        wrong = []
        timeout = httpx.Timeout(5, read=2)
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=timeout) as http:
            for caller in CALLERS:
                headers = {} if caller is None else stack.headers(caller)
                for route in routes:
                    body = b"{}" if route.body else None
                    request = http.build_request(
                        route.verb, _http_path(route.template), content=body, headers=headers
                    )
                    response = await http.send(request, stream=True)
                    await response.aclose()
                    expected = _expected(caller, required_role(route.method))
                    status = response.status_code
                    if expected is None:
                        ok = status not in (401, 403)
                    elif expected == grpc.StatusCode.UNAUTHENTICATED:
                        challenge = response.headers.get("www-authenticate", "")
                        ok = status == 401 and challenge.startswith("Bearer")
                    else:
                        ok = status == 403
                    if not ok:
                        wrong.append((caller, route.verb, route.template, status))
        assert wrong == []

    run_with_stack(scenario, every_service=True)


def test_get_caller_names_the_token_and_its_role() -> None:
    async def scenario(stack: Stack) -> None:
        async with httpx.AsyncClient(base_url=stack.http_url, timeout=10) as http:
            for name, role in ROLES.items():
                reply = await http.get("/v1/caller", headers=stack.headers(name))
                assert reply.json() == {"name": name, "role": auth_pb2.Role.Name(role)}
            anonymous = await http.get("/v1/caller")
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
            bad = await http.get("/v1/caller", headers={"Authorization": "Bearer cvy_nope"})
            assert bad.status_code == 401
            assert 'error="invalid_token"' in bad.headers["www-authenticate"]

    run_with_stack(scenario)
