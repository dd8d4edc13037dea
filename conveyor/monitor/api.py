"""MonitorService: resumable run event streams (replay from the outbox, then live)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from conveyor.executor.v1 import run_pb2
from conveyor.kernel import feed, outbox
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, NotFound, Violation
from conveyor.kernel.feed import FeedFilter, RunChange
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.outbox import Event
from conveyor.kernel.protoconv import enum_value, timestamp
from conveyor.monitor.events import event_pb
from conveyor.monitor.hub import Hub
from conveyor.monitor.runfeed import FeedTailer
from conveyor.monitor.states import run_state
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2, monitor_service_pb2_grpc

T = TypeVar("T")
SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name
IDLE_POLL_S = 2.0
FEED_IDLE_S = 5.0
REPLAY_BATCH = 256  # rows per table read; a log row holds up to 64 KiB
MAX_JOB_FILTER = 100
MAX_ID_LEN = 64


def change_pb(change: RunChange) -> monitor_service_pb2.WatchRunsResponse:
    """Feed entry -> proto."""
    return monitor_service_pb2.WatchRunsResponse(
        sequence=change.position,
        event=event_pb2.RunEvent(
            sequence=change.run_sequence,
            run_id=change.run_id,
            event_time=timestamp(change.time),
            run_state_changed=event_pb2.RunStateChanged(
                state=run_state(change.run_state), message=change.message
            ),
        ),
        job_id=change.job_id,
        job_name=change.job_name,
        trigger=enum_value(run_pb2.RunTrigger, f"RUN_TRIGGER_{change.trigger}"),
    )


def _enum_names(
    field: str, values: Any, enum: Any, prefix: str, violations: list[Violation]
) -> frozenset[str]:
    names = set()
    for i, value in enumerate(values):
        name = enum.values_by_number.get(value)
        if name is None or value == 0:
            violations.append(
                Violation(f"{field}[{i}]", f"unknown or unspecified value {value}", "INVALID_ENUM")
            )
            continue
        names.add(name.name.removeprefix(prefix))
    return frozenset(names)


def _run_filter(request: Any) -> FeedFilter:
    violations: list[Violation] = []
    if request.after_sequence < 0:
        violations.append(Violation("after_sequence", "negative", "OUT_OF_RANGE"))
    if len(request.job_ids) > MAX_JOB_FILTER:
        violations.append(Violation("job_ids", f"more than {MAX_JOB_FILTER}", "TOO_MANY"))
    for i, job_id in enumerate(request.job_ids):
        if not job_id or len(job_id) > MAX_ID_LEN:
            violations.append(Violation(f"job_ids[{i}]", "empty or too long", "INVALID"))
    states = _enum_names(
        "states", request.states, run_pb2.RunState.DESCRIPTOR, "RUN_STATE_", violations
    )
    triggers = _enum_names(
        "triggers", request.triggers, run_pb2.RunTrigger.DESCRIPTOR, "RUN_TRIGGER_", violations
    )
    if violations:
        raise InvalidArgument("invalid WatchRuns request", violations=violations)
    return FeedFilter(job_ids=frozenset(request.job_ids), states=states, triggers=triggers)


async def next_item(queue: asyncio.Queue[T], wait_s: float) -> T | None:
    """The next queued item, or None after `wait_s` of silence.

    `asyncio.timeout`, not `wait_for`: on Python 3.11 wait_for wraps every wait in a new
    task, which with hundreds of watchers woken per event was most of the monitor's CPU.
    """
    with contextlib.suppress(asyncio.QueueEmpty):
        return queue.get_nowait()
    try:
        async with asyncio.timeout(wait_s):
            return await queue.get()
    except TimeoutError:
        return None


class _ResponseCache:
    """Recent WatchRun responses by (run, sequence): with N watchers of one run, each live
    event is converted to protobuf once instead of N times."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], monitor_service_pb2.WatchRunResponse] = (
            OrderedDict()
        )

    def get(self, ev: Event) -> monitor_service_pb2.WatchRunResponse:
        """The response for an event (a run's sequence identifies its event for good)."""
        key = (ev.run_id, ev.sequence)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = monitor_service_pb2.WatchRunResponse(event=event_pb(ev))
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return found


class _EventFilter:
    """What one WatchRun call wants to see."""

    def __init__(self, request: Any) -> None:
        violations: list[Violation] = []
        if not request.run_id:
            violations.append(Violation("run_id", "required", "REQUIRED"))
        if request.after_sequence < 0:
            violations.append(Violation("after_sequence", "negative", "OUT_OF_RANGE"))
        if len(request.node_id) > MAX_ID_LEN:
            violations.append(Violation("node_id", "too long", "INVALID"))
        self.types = _enum_names(
            "types", request.types, event_pb2.EventType.DESCRIPTOR, "EVENT_TYPE_", violations
        )
        if violations:
            first = violations[0]
            raise InvalidArgument(f"{first.field}: {first.description}", violations=violations)
        self.node_id = str(request.node_id)

    def wants(self, ev: Event) -> bool:
        """Whether the watcher asked for this event."""
        return (not self.types or ev.type in self.types) and (
            not self.node_id or ev.node_id == self.node_id
        )


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):  # type: ignore[misc]
    """Streams run events to watchers without gaps or duplicates."""

    def __init__(self, *, db: Database, hub: Hub) -> None:
        self._db = db
        self._hub = hub
        self._tailer = FeedTailer(db=db, hub=hub)
        self._responses = _ResponseCache()

    def _read(self, run_id: str, after: int, flt: _EventFilter, until: int | None) -> list[Event]:
        with self._db.read() as session:
            return outbox.events_after(
                session,
                run_id,
                after,
                limit=REPLAY_BATCH,
                until=until,
                types=flt.types,
                node_id=flt.node_id,
            )

    def _head(self, run_id: str) -> int:
        with self._db.read() as session:
            return outbox.last_sequence(session, run_id)

    def _ended_by(self, run_id: str, last: int) -> bool:
        with self._db.read() as session:
            end = outbox.terminal_sequence(session, run_id)
        return end is not None and end <= last

    async def _from_table(
        self, run_id: str, after: int, flt: _EventFilter, until: int
    ) -> AsyncIterator[Event]:
        """Stored events in (after, until], filtered (the terminal event always comes)."""
        while True:
            batch = await asyncio.to_thread(self._read, run_id, after, flt, until)
            for ev in batch:
                yield ev
            if len(batch) < REPLAY_BATCH:
                return
            after = batch[-1].sequence

    @map_errors
    async def WatchRun(  # noqa: N802
        self,
        request: monitor_service_pb2.WatchRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[monitor_service_pb2.WatchRunResponse]:
        """See the proto. Subscribe first, then replay, so nothing falls between the two."""
        flt = _EventFilter(request)
        run_id = request.run_id
        sub = self._hub.subscribe(run_id)
        # `last` is the newest sequence accounted for, sent or filtered out.
        last = request.after_sequence
        try:
            head = await asyncio.to_thread(self._head, run_id)
            if head == 0:
                raise NotFound(f"run {run_id!r} not found", metadata={"run_id": run_id})
            if last >= head and await asyncio.to_thread(self._ended_by, run_id, last):
                # Resumed at or past the end of a finished run: nothing will ever follow.
                return
            need_table = True
            while True:
                if need_table:
                    async for ev in self._from_table(run_id, last, flt, head):
                        if flt.wants(ev):
                            yield monitor_service_pb2.WatchRunResponse(event=event_pb(ev))
                        if ev.terminal:
                            return
                    last = max(last, head)
                    if request.history_only:
                        return
                    need_table = False
                live = await self._next_live(sub.queue, last)
                if (
                    live is not None
                    and live.sequence == last + 1
                    and not sub.overflowed
                    and not live.data.get("thin")  # a large log chunk: its text is in the table
                ):
                    last = live.sequence
                    if flt.wants(live):
                        yield self._responses.get(live)
                    if live.terminal:
                        return
                else:
                    # a gap, an overflow, a thin event or a quiet spell: the table is the truth
                    sub.overflowed = False
                    head = await asyncio.to_thread(self._head, run_id)
                    need_table = True
        finally:
            sub.close()

    @staticmethod
    async def _next_live(queue: asyncio.Queue[Event], last: int) -> Event | None:
        """The next live event not yet accounted for, or None after a quiet spell."""
        while True:
            live = await next_item(queue, IDLE_POLL_S)
            if live is None or live.sequence > last:
                return live

    @map_errors
    async def WatchRuns(  # noqa: N802
        self,
        request: monitor_service_pb2.WatchRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[monitor_service_pb2.WatchRunsResponse]:
        """See the proto. Subscribe to the tailer, replay the table, then follow live rows."""
        flt = _run_filter(request)
        sub = self._tailer.subscribe(flt)
        try:
            await self._tailer.ready()
            head = await asyncio.to_thread(self._feed_head)
            if request.after_sequence > head:
                raise InvalidArgument(
                    f"after_sequence {request.after_sequence} is beyond the newest change {head}",
                    violations=[Violation("after_sequence", "beyond the feed", "OUT_OF_RANGE")],
                )
            from_now = request.from_now and request.after_sequence == 0
            last = head if from_now else request.after_sequence
            refill = True
            while True:
                if refill:
                    sub.overflowed = False
                    async for change in self._feed_from_table(last, flt):
                        last = change.position
                        yield change_pb(change)
                    refill = False
                change_or_none = await next_item(sub.queue, FEED_IDLE_S)
                if sub.overflowed:
                    refill = True
                    continue
                if change_or_none is None:
                    self._tailer.ensure_running()
                    continue
                if change_or_none.position > last:
                    last = change_or_none.position
                    yield change_pb(change_or_none)
        finally:
            sub.close()

    def _feed_head(self) -> int:
        with self._db.read() as session:
            return feed.head(session)

    def _feed_read(self, after: int, flt: FeedFilter) -> list[RunChange]:
        with self._db.read() as session:
            return feed.changes_after(session, after, flt, limit=REPLAY_BATCH)

    async def _feed_from_table(self, after: int, flt: FeedFilter) -> AsyncIterator[RunChange]:
        read: Callable[[int, FeedFilter], list[RunChange]] = self._feed_read
        while True:
            batch = await asyncio.to_thread(read, after, flt)
            for change in batch:
                yield change
            if len(batch) < REPLAY_BATCH:
                return
            after = batch[-1].position


def registration(servicer: MonitorServicer) -> ServiceRegistration:
    """The monitor service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: monitor_service_pb2_grpc.add_MonitorServiceServicer_to_server(
            servicer, server
        ),
    )
