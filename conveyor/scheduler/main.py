"""Wiring: the scheduler's gRPC server, its executor and translator clients, its firing loops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from conveyor.kernel.aio import cancel_task
from conveyor.kernel.db import Database
from conveyor.kernel.grpcserver import start_server
from conveyor.kernel.ids import utcnow
from conveyor.kernel.settings import Settings
from conveyor.scheduler import api
from conveyor.scheduler.client import GrpcExecutor, GrpcJobs
from conveyor.scheduler.firing import Firing


@dataclass
class SchedulerHandle:
    """A running scheduler: its server and port, and how to stop firing."""

    server: grpc.aio.Server
    port: int
    stop_firing: Callable[[], Awaitable[None]]


async def serve_scheduler(settings: Settings, db: Database) -> SchedulerHandle:
    """Start the service on settings.scheduler_addr (the executor's address must be final)."""
    executor = GrpcExecutor(settings.executor_addr)
    jobs = GrpcJobs(settings.translator_addr)
    firing = Firing(db=db, executor=executor)
    servicer = api.SchedulerServicer(db=db, firing=firing, jobs=jobs, clock=utcnow)
    server, port = await start_server([api.registration(servicer)], settings.scheduler_addr)
    tasks = [
        asyncio.create_task(firing.fire_forever()),
        asyncio.create_task(firing.maintain_forever()),
    ]

    async def stop_firing() -> None:
        # Stop firing before closing the channels it uses; an interrupted fire stays leased
        # and is carried out again (same request_id) when its lease runs out.
        for task in tasks:
            await cancel_task(task)
        await executor.close()
        await jobs.close()

    return SchedulerHandle(server=server, port=port, stop_firing=stop_firing)
