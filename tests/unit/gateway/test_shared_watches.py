"""The gateway's shared WatchRun streams, against a monitor that keeps its contract (events in
sequence order, replay then live, history_only ends at what was stored, the terminal event
ends the stream): every client gets every event it asked for exactly once, in order, while
one upstream stream serves all of them; late and slow clients catch up on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from conveyor.gateway import watches
from conveyor.gateway.transcode import CallError
from conveyor.gateway.watches import SharedWatches
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2

MD = (("x-request-id", "client"),)


class FakeCall:
    def __init__(self, monitor: FakeMonitor, request: monitor_service_pb2.WatchRunRequest):
        self.monitor = monitor
        self.request = request
        self.cancelled = False
        self.stored = list(monitor.events)  # what history_only sends

    def cancel(self) -> None:
        self.cancelled = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[bytes]:
        sent = self.request.after_sequence
        while True:
            if self.monitor.failure is not None and not self.request.history_only:
                raise self.monitor.failure
            source = self.stored if self.request.history_only else self.monitor.events
            new = [s for s in source if s > sent]
            for start in range(0, len(new), self.monitor.batch):
                part = new[start : start + self.monitor.batch]
                yield response(part)
                sent = part[-1]
                if self.monitor.terminal in part:
                    return
            if self.request.history_only:
                return
            if not new:
                await self.monitor.changed.wait()


class FakeMonitor:
    def __init__(self, batch: int = 3) -> None:
        self.events: list[int] = []
        self.calls: list[FakeCall] = []
        self.changed = asyncio.Event()
        self.terminal = -1
        self.failure: grpc.aio.AioRpcError | None = None
        self.batch = batch

    def open(self, raw: bytes, metadata: Any) -> FakeCall:
        assert metadata == MD
        call = FakeCall(self, monitor_service_pb2.WatchRunRequest.FromString(raw))
        self.calls.append(call)
        return call

    async def add(self, *sequences: int, terminal: bool = False) -> None:
        self.events.extend(sequences)
        if terminal:
            self.terminal = sequences[-1]
        await self._wake()

    async def fail(self, code: grpc.StatusCode) -> None:
        self.failure = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "boom")
        await self._wake()

    async def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()
        for _ in range(20):  # let the streams run
            await asyncio.sleep(0)

    @property
    def live_calls(self) -> list[FakeCall]:
        return [c for c in self.calls if not c.request.history_only]


def response(sequences: list[int]) -> bytes:
    return monitor_service_pb2.WatchRunResponse(
        events=[event_pb2.RunEvent(run_id="r", sequence=s) for s in sequences]
    ).SerializeToString()


def request(after: int = 0, **fields: Any) -> monitor_service_pb2.WatchRunRequest:
    return monitor_service_pb2.WatchRunRequest(run_id="r", after_sequence=after, **fields)


class Client:
    """Reads a shared watch into a list of sequences (and the raw responses)."""

    def __init__(self, shared: SharedWatches, req: monitor_service_pb2.WatchRunRequest) -> None:
        self.raw: list[bytes] = []
        self.sequences: list[int] = []
        self.error: CallError | None = None
        self.task = asyncio.create_task(self._read(shared.follow(req, MD)))

    async def _read(self, stream: AsyncIterator[bytes]) -> None:
        try:
            async for raw in stream:
                self.raw.append(raw)
                decoded = monitor_service_pb2.WatchRunResponse.FromString(raw)
                self.sequences.extend(e.sequence for e in decoded.events)
        except CallError as exc:
            self.error = exc

    async def done(self) -> None:
        await asyncio.wait_for(self.task, 5)


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_clients_of_one_run_share_one_stream_and_get_the_same_bytes() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor()
        shared = SharedWatches(monitor.open)
        await monitor.add(1, 2)
        first, second = Client(shared, request()), Client(shared, request())
        await monitor.add(3, 4, 5)
        await monitor.add(6, terminal=True)
        await first.done()
        await second.done()
        assert first.sequences == second.sequences == [1, 2, 3, 4, 5, 6]
        assert first.raw == second.raw
        assert len(monitor.calls) == 1 and monitor.calls[0].cancelled
        assert shared.upstreams == 0

    run(scenario)


def test_a_late_client_reads_what_it_missed_then_follows_without_duplicates() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor(batch=4)
        shared = SharedWatches(monitor.open)
        early = Client(shared, request())
        await monitor.add(1, 2, 3, 4, 5)
        late = Client(shared, request())
        resumed = Client(shared, request(after=3))
        await monitor.add(6, 7)
        ahead = Client(shared, request(after=6))  # past what the stream delivered
        await monitor.add(8, 9, terminal=True)
        for client in (early, late, resumed, ahead):
            await client.done()
        assert early.sequences == late.sequences == list(range(1, 10))
        assert resumed.sequences == list(range(4, 10))
        assert ahead.sequences == [7, 8, 9]
        histories = [c.request for c in monitor.calls if c.request.history_only]
        assert sorted(r.after_sequence for r in histories) == [0, 3, 6]
        assert len(monitor.live_calls) == 1

    run(scenario)


def test_a_response_that_straddles_what_a_client_has_is_trimmed() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor(batch=10)
        shared = SharedWatches(monitor.open)
        early = Client(shared, request())
        await monitor.add(1, 2)
        # Joins with events 1-2 delivered; its history call sees 1-3, then 3-5 come live.
        late = Client(shared, request())
        monitor.events.append(3)
        await asyncio.sleep(0)
        await monitor.add(4, 5, terminal=True)
        await early.done()
        await late.done()
        assert late.sequences == early.sequences == [1, 2, 3, 4, 5]

    run(scenario)


def test_a_slow_client_falls_behind_and_catches_up_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watches, "QUEUE_MESSAGES", 2)

    async def scenario() -> None:
        monitor = FakeMonitor(batch=1)
        shared = SharedWatches(monitor.open)
        fast = Client(shared, request())
        gate = asyncio.Event()
        got: list[int] = []

        async def slow() -> None:
            async for raw in shared.follow(request(), MD):
                got.extend(
                    e.sequence for e in monitor_service_pb2.WatchRunResponse.FromString(raw).events
                )
                if len(got) == 1:
                    await gate.wait()  # stops reading while ten responses go by

        reader = asyncio.create_task(slow())
        for s in range(1, 12):
            await monitor.add(s)
        gate.set()
        await monitor.add(12, terminal=True)
        await asyncio.wait_for(reader, 5)
        await fast.done()
        assert got == fast.sequences == list(range(1, 13))
        catch_up = [c.request.after_sequence for c in monitor.calls if c.request.history_only]
        assert catch_up == [3]  # it had 1 and the two responses its mailbox held
        assert len(monitor.live_calls) == 1

    run(scenario)


def test_a_monitor_failure_reaches_every_client_and_frees_the_stream() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor()
        shared = SharedWatches(monitor.open)
        clients = [Client(shared, request()) for _ in range(3)]
        await monitor.add(1)
        await monitor.fail(grpc.StatusCode.UNAVAILABLE)
        for client in clients:
            await client.done()
            assert client.sequences == [1]
            assert client.error is not None and client.error.code == grpc.StatusCode.UNAVAILABLE
        assert shared.upstreams == 0

    run(scenario)


def test_the_last_client_leaving_stops_the_stream_and_filters_do_not_share() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor()
        shared = SharedWatches(monitor.open)
        plain = Client(shared, request())
        one_step = Client(shared, request(node_id="a"))
        typed = Client(shared, request(types=[event_pb2.EVENT_TYPE_STEP_STATE_CHANGED]))
        await monitor.add(1)
        assert shared.upstreams == 3 and len(monitor.live_calls) == 3
        for client in (plain, one_step, typed):
            client.task.cancel()
        await asyncio.gather(plain.task, one_step.task, typed.task, return_exceptions=True)
        for _ in range(5):
            await asyncio.sleep(0)
        assert shared.upstreams == 0
        assert all(c.cancelled for c in monitor.calls)

    run(scenario)


def test_history_only_is_not_shared_and_a_gap_before_an_idle_stream_is_not_joined() -> None:
    async def scenario() -> None:
        monitor = FakeMonitor()
        shared = SharedWatches(monitor.open)
        assert not shared.shareable(request(history_only=True))
        # A stream opened after sequence 5 that has delivered nothing: a client from 0 cannot
        # join it (events 1-5 would fall between), so it gets its own stream.
        ahead = Client(shared, request(after=5))
        await asyncio.sleep(0)
        from_start = Client(shared, request())
        await monitor.add(1, 2, 3, 4, 5, 6, terminal=True)
        await ahead.done()
        await from_start.done()
        assert ahead.sequences == [6]
        assert from_start.sequences == [1, 2, 3, 4, 5, 6]
        assert len(monitor.live_calls) == 2

    run(scenario)
