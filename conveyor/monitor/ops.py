"""Wiring of the monitor's operational views: worker events, metrics, alerts, insight RPCs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from conveyor.kernel.bus import EventBus
from conveyor.kernel.db import Database
from conveyor.kernel.grpcserver import ServiceRegistration
from conveyor.kernel.settings import Settings
from conveyor.monitor import alert_api, insight_api
from conveyor.monitor.observer import Observer
from conveyor.monitor.recorder import MetricsRecorder
from conveyor.monitor.runstats import RunStats
from conveyor.monitor.workers import EventListener, WorkerTracker


@dataclass
class Ops:
    """The parts to start with the monitor and stop with it."""

    observer: Observer
    listener: EventListener
    recorder: MetricsRecorder
    registrations: list[ServiceRegistration]
    _task: asyncio.Task[Any] | None = field(default=None)

    def start(self) -> None:
        """Start consuming Celery events, recording metrics and evaluating alerts."""
        self.listener.start()
        self.recorder.start()
        self._task = asyncio.create_task(self.observer.run_forever())

    async def stop(self) -> None:
        """Stop everything started by `start` (bounded waits)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.listener.stop)
        await asyncio.to_thread(self.recorder.stop)
        await self.observer.close()


def build_ops(*, settings: Settings, db: Database, bus: EventBus, app: Any) -> Ops:
    """Create (not start) the monitor's operational parts, subscribed to the bus."""
    tracker = WorkerTracker()
    # Run figures come from their owner over RPC; in the embedded suite the executor and the
    # translator are started before the monitor, so their addresses carry the bound ports.
    runs = RunStats(executor_addr=settings.executor_addr, translator_addr=settings.translator_addr)
    observer = Observer(settings=settings, db=db, app=app, tracker=tracker, runs=runs)
    recorder = MetricsRecorder(runs)
    bus.listen(recorder.deliver)
    bus.listen(tracker.steps)
    return Ops(
        observer=observer,
        listener=EventListener(app, tracker),
        recorder=recorder,
        registrations=[
            insight_api.registration(insight_api.InsightServicer(observer=observer)),
            alert_api.registration(alert_api.AlertServicer(db=db)),
        ],
    )
