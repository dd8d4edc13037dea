"""MonitorService: resumable run event streams (replay from the outbox, then live)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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
from conveyor.monitor.hub import Hub, Subscription
from conveyor.monitor.runfeed import FeedTailer
from conveyor.monitor.states import run_state
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2, monitor_service_pb2_grpc

T = TypeVar("T")
SERVICE_NAME = monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"].full_name
IDLE_POLL_S = 2.0
FEED_IDLE_S = 5.0
REPLAY_BATCH = 256  # rows per table read; a log row holds up to 64 Ki characters
#: Events per WatchRun response, and their encoded bytes: far below the 16 MiB message limit,
#: since a log event holds up to 64 Ki characters (up to 256 KiB as UTF-8).
MAX_BATCH_EVENTS = 256
MAX_BATCH_BYTES = 1024 * 1024
#: Responses up to this size are kept for the other watchers of the same burst.
CACHED_RESPONSE_BYTES = 64 * 1024
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
    """Recent live events as protobuf, and recent WatchRun responses made of them: with N
    watchers of one run, each live event is converted once instead of N times, and a burst
    that N watchers take from their queues alike becomes one response for all of them."""

    def __init__(self, size: int = 4096, responses: int = 256) -> None:
        self._size = size
        self._responses = responses
        self._events: OrderedDict[tuple[str, int], tuple[event_pb2.RunEvent, int]] = OrderedDict()
        self._batches: OrderedDict[
            tuple[str, tuple[int, ...]], monitor_service_pb2.WatchRunResponse
        ] = OrderedDict()

    def event(self, ev: Event) -> tuple[event_pb2.RunEvent, int]:
        """The event as protobuf and its encoded size (a run's sequence identifies its event
        for good)."""
        key = (ev.run_id, ev.sequence)
        found = self._events.get(key)
        if found is None:
            pb = event_pb(ev)
            found = self._events[key] = (pb, _framed_size(pb))
            if len(self._events) > self._size:
                self._events.popitem(last=False)
        return found

    def response(
        self, run_id: str, sequences: tuple[int, ...], events: list[event_pb2.RunEvent], size: int
    ) -> monitor_service_pb2.WatchRunResponse:
        """The response holding these events of the run; small ones are kept for the other
        watchers that take the same burst."""
        key = (run_id, sequences)
        found = self._batches.get(key)
        if found is None:
            found = monitor_service_pb2.WatchRunResponse(events=events)
            if size <= CACHED_RESPONSE_BYTES:
                self._batches[key] = found
                if len(self._batches) > self._responses:
                    self._batches.popitem(last=False)
        return found


def _framed_size(pb: event_pb2.RunEvent) -> int:
    """The bytes an event adds to a response: its encoding, its field tag and its length."""
    size = pb.ByteSize()
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


class _Batch:
    """The events of one response, bounded by count and encoded size (one event always fits,
    so a single large log chunk still goes out)."""

    def __init__(self) -> None:
        self.events: list[event_pb2.RunEvent] = []
        self.sequences: list[int] = []
        self.size = 0

    def fits(self, size: int) -> bool:
        """Whether an event of `size` encoded bytes may join."""
        return not self.events or (
            len(self.events) < MAX_BATCH_EVENTS and self.size + size <= MAX_BATCH_BYTES
        )

    def add(self, pb: event_pb2.RunEvent, size: int) -> None:
        """Append an event."""
        self.events.append(pb)
        self.sequences.append(pb.sequence)
        self.size += size


@dataclass
class _Drained:
    """What one live batch accounted for: the events to send, the newest sequence accounted
    for (sent or filtered out), a queued event that continues the sequence but did not fit,
    whether the table must be read (a gap, an overflow, a thin event), and the end."""

    batch: _Batch
    last: int
    held: Event | None = None
    refill: bool = False
    ended: bool = False


def _page_batches(page: list[Event], flt: _EventFilter) -> tuple[list[_Batch], bool]:
    """A page of stored events as bounded batches of those the watcher wants, and whether the
    page holds the run's terminal event (nothing after it is sent)."""
    batches = [_Batch()]
    for ev in page:
        if flt.wants(ev):
            pb = event_pb(ev)
            size = _framed_size(pb)
            if not batches[-1].fits(size):
                batches.append(_Batch())
            batches[-1].add(pb, size)
        if ev.terminal:
            return [b for b in batches if b.events], True
    return [b for b in batches if b.events], False


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


def _continues(live: Event, last: int, sub: Subscription) -> bool:
    """Whether a live event may be sent as it came: exactly the next sequence, no live event
    dropped for this watcher, and not a large log chunk whose text only the table holds."""
    return live.sequence == last + 1 and not sub.overflowed and not live.data.get("thin")


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
    ) -> AsyncIterator[list[Event]]:
        """Stored events in (after, until], filtered (the terminal event always comes), a
        page at a time."""
        while True:
            page = await asyncio.to_thread(self._read, run_id, after, flt, until)
            if page:
                yield page
            if len(page) < REPLAY_BATCH:
                return
            after = page[-1].sequence

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
            held: Event | None = None
            while True:
                if need_table:
                    async for page in self._from_table(run_id, last, flt, head):
                        batches, ended = _page_batches(page, flt)
                        for batch in batches:
                            yield monitor_service_pb2.WatchRunResponse(events=batch.events)
                        if ended:
                            return
                    last = max(last, head)
                    if request.history_only:
                        return
                    need_table = False
                live = held if held is not None else await self._next_live(sub.queue, last)
                held = None
                if live is not None and _continues(live, last, sub):
                    drained = self._drain(live, last, sub, flt)
                    batch = drained.batch
                    if batch.events:
                        yield self._responses.response(
                            run_id, tuple(batch.sequences), batch.events, batch.size
                        )
                    if drained.ended:
                        return
                    last, held, need_table = drained.last, drained.held, drained.refill
                else:
                    need_table = True
                if need_table:
                    # a gap, an overflow, a thin event or a quiet spell: the table is the truth
                    sub.overflowed = False
                    head = await asyncio.to_thread(self._head, run_id)
        finally:
            sub.close()

    def _drain(self, first: Event, last: int, sub: Subscription, flt: _EventFilter) -> _Drained:
        """`first` (which continues the sequence) and every event already queued that
        continues it, up to the batch's bounds, taken without waiting."""
        out = _Drained(_Batch(), last)
        ev = first
        while True:
            if flt.wants(ev):
                pb, size = self._responses.event(ev)
                if not out.batch.fits(size):
                    out.held = ev
                    return out
                out.batch.add(pb, size)
            out.last = ev.sequence
            if ev.terminal:
                out.ended = True
                return out
            try:
                ev = sub.queue.get_nowait()
                while ev.sequence <= out.last:  # already accounted for (a replayed one)
                    ev = sub.queue.get_nowait()
            except asyncio.QueueEmpty:
                return out
            if not _continues(ev, out.last, sub):
                # The table holds it (an event is published after its commit): read it there.
                out.refill = True
                return out

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
