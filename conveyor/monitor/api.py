"""MonitorService: resumable run event streams (replay from the outbox, then live)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from conveyor.executor.convert import run_state, step_state
from conveyor.kernel import outbox
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, NotFound, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.outbox import Event
from conveyor.kernel.protoconv import dict_to_struct, timestamp
from conveyor.monitor.hub import Hub
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2, monitor_service_pb2_grpc

SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name
IDLE_POLL_S = 2.0
REPLAY_BATCH = 1000


def event_pb(ev: Event) -> event_pb2.RunEvent:
    """Outbox event -> proto."""
    return event_pb2.RunEvent(
        sequence=ev.sequence,
        run_id=ev.run_id,
        type=event_pb2.EventType.Value(f"EVENT_TYPE_{ev.type}"),
        event_time=timestamp(ev.time),
        run_state=run_state(ev.run_state) if ev.run_state else None,
        node_id=ev.node_id or "",
        step_state=step_state(ev.step_state) if ev.step_state else None,
        attempt=ev.attempt,
        message=ev.message,
        data=dict_to_struct(ev.data),
    )


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):  # type: ignore[misc]
    """Streams run events to watchers without gaps or duplicates."""

    def __init__(self, *, db: Database, hub: Hub) -> None:
        self._db = db
        self._hub = hub

    def _read(self, run_id: str, after: int) -> list[Event]:
        with self._db.transaction() as session:
            return outbox.events_after(session, run_id, after, limit=REPLAY_BATCH)

    async def _from_table(self, run_id: str, after: int) -> AsyncIterator[Event]:
        while True:
            batch = await asyncio.to_thread(self._read, run_id, after)
            for ev in batch:
                yield ev
            if len(batch) < REPLAY_BATCH:
                return
            after = batch[-1].sequence

    @map_errors
    async def WatchRun(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """See the proto. Subscribe first, then replay, so nothing falls between the two."""
        if not request.run_id:
            raise InvalidArgument(
                "run_id is required", violations=[Violation("run_id", "required", "REQUIRED")]
            )
        if request.after_sequence < 0:
            raise InvalidArgument(
                "after_sequence must be >= 0",
                violations=[Violation("after_sequence", "negative", "OUT_OF_RANGE")],
            )
        sub = self._hub.subscribe(request.run_id)
        last = request.after_sequence
        try:
            seen_any = False
            async for ev in self._from_table(request.run_id, last):
                seen_any = True
                last = ev.sequence
                yield monitor_service_pb2.WatchRunResponse(event=event_pb(ev))
                if ev.terminal:
                    return
            if not seen_any and last == 0:
                raise NotFound(
                    f"run {request.run_id!r} not found", metadata={"run_id": request.run_id}
                )
            while True:
                try:
                    live: Event | None = await asyncio.wait_for(sub.queue.get(), IDLE_POLL_S)
                except TimeoutError:
                    live = None
                if live is not None and live.sequence <= last:
                    continue  # already sent (from the table or an earlier delivery)
                if live is not None and live.sequence == last + 1 and not sub.overflowed:
                    batch = [live]
                else:
                    # a gap, an overflow or a quiet spell: the table is the truth
                    sub.overflowed = False
                    batch = [e async for e in self._from_table(request.run_id, last)]
                for ev in batch:
                    last = ev.sequence
                    yield monitor_service_pb2.WatchRunResponse(event=event_pb(ev))
                    if ev.terminal:
                        return
        finally:
            sub.close()


def registration(servicer: MonitorServicer) -> ServiceRegistration:
    """The monitor service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server(
            servicer, server
        ),
    )
