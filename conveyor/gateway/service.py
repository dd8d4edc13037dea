"""GatewayService: the calls the public edge answers itself."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import grpc

from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.kernel.grpcserver import ServiceRegistration

SERVICE_NAME = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


def conveyor_version() -> str:
    """The installed distribution's version, or "0+unknown" when running from a bare tree."""
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# The generated base is untyped (Any) to mypy; subclassing it is the point.
class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):  # type: ignore[misc]
    """Describes the gateway: version, mode and the backends it routes to."""

    def __init__(self, *, routes: Mapping[str, str], mode: str) -> None:
        self._routes = dict(routes)
        self._mode = mode
        self._version = conveyor_version()

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


def registration(servicer: GatewayServicer) -> ServiceRegistration:
    """Wire the servicer into `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(
            servicer, server
        ),
    )
