"""Wiring: the artifact service's backend, gRPC server and clean-up loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from conveyor.artifacts import api
from conveyor.artifacts.backends import open_store
from conveyor.kernel.aio import cancel_task
from conveyor.kernel.db import Database
from conveyor.kernel.grpcserver import start_server
from conveyor.kernel.settings import Settings


@dataclass
class ArtifactsHandle:
    """A running artifact service: its server and port, and how to stop its loop."""

    server: grpc.aio.Server
    port: int
    servicer: api.ArtifactServicer
    stop_loops: Callable[[], Awaitable[None]]


async def serve_artifacts(settings: Settings, db: Database) -> ArtifactsHandle:
    """Open the backend named by CONVEYOR_ARTIFACTS_URL and serve on settings.artifacts_addr."""
    backend = await asyncio.to_thread(open_store, settings)
    servicer = api.ArtifactServicer(settings=settings, db=db, backend=backend)
    server, port = await start_server([api.registration(servicer)], settings.artifacts_addr)
    tasks = [
        asyncio.create_task(servicer.sweep_stale_forever()),
        asyncio.create_task(servicer.retain_forever()),
    ]

    async def stop_loops() -> None:
        for task in tasks:
            await cancel_task(task)
        await servicer.sweeper.close()

    return ArtifactsHandle(server=server, port=port, servicer=servicer, stop_loops=stop_loops)
