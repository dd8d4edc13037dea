"""Shared live watches: one monitor WatchRun per run and filter for every gateway client
following it, over gRPC, server-sent events and WebSocket alike.

With N clients watching one run, the gateway used to open N WatchRun streams to the monitor:
the monitor sent every response N times and the gateway received it N times before sending
it on N times. Now the first client of a (run, types, node) opens one upstream stream; every
later client joins it, and each upstream response is received once and handed to every
client as the same bytes.

A client joining an upstream that is already past the client's `after_sequence` first reads
what it missed from the monitor with a private `history_only` call, then follows the shared
stream, skipping (or trimming from a response) the events it already has. No event is lost
between the two: the upstream had delivered everything up to its newest sequence before the
client joined, so those events were stored before the history call began, and the call
returns every event stored when it began; every later event reaches the client through the
shared stream, which the client joined first. A client that falls more than
`QUEUE_MESSAGES` responses behind leaves the shared stream and joins again the same way, so
a slow reader neither holds up the others nor makes the gateway buffer without bound.

`history_only` requests are not shared (they end on their own), nor is a request whose
`after_sequence` lies before an upstream that has delivered nothing yet (the gap between
the two could not be read back): those get their own stream, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from conveyor.gateway.transcode import CallError
from conveyor.monitor.v1 import monitor_service_pb2

WATCH_RUN = "/conveyor.monitor.v1.MonitorService/WatchRun"
#: Upstream responses one client may have waiting; past that it catches up on its own.
QUEUE_MESSAGES = 256

Key = tuple[str, tuple[int, ...], str]
Metadata = tuple[tuple[str, str | bytes], ...]
#: Opens a WatchRun stream to the monitor: (serialized request, metadata) -> the call.
Opener = Callable[[bytes, Metadata], Any]


@dataclass(frozen=True)
class _Response:
    """One upstream response: its bytes and the sequences of its first and last event."""

    raw: bytes
    first: int
    last: int


@dataclass(frozen=True)
class _End:
    """The upstream stream ended: normally, or with the monitor's failure."""

    error: CallError | None = None


class _Client:
    """One client's mailbox on an upstream stream."""

    def __init__(self) -> None:
        self.items: deque[_Response] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.end: _End | None = None

    def offer(self, response: _Response) -> None:
        if self.overflowed:
            return
        if len(self.items) >= QUEUE_MESSAGES:
            self.overflowed = True  # what it has is a gap-free prefix; it catches up after
        else:
            self.items.append(response)
        self.wake.set()

    def finish(self, end: _End) -> None:
        self.end = end
        self.wake.set()

    async def next(self) -> _Response | _End | None:
        """The next response, the end, or None once it fell behind (after what it has)."""
        while True:
            if self.items:
                return self.items.popleft()
            if self.overflowed:
                return None
            if self.end is not None:
                return self.end
            self.wake.clear()
            await self.wake.wait()


@dataclass
class _Upstream:
    """One WatchRun stream to the monitor and the clients following it."""

    key: Key
    after: int
    clients: set[_Client] = field(default_factory=set)
    #: The newest sequence it delivered; None until its first response.
    last: int | None = None
    task: asyncio.Task[None] | None = None


def _sequences(raw: bytes) -> tuple[int, int, monitor_service_pb2.WatchRunResponse]:
    response = monitor_service_pb2.WatchRunResponse.FromString(raw)
    events = response.events
    if not events:  # the contract says never empty; a bad one is passed on whole
        return 0, 0, response
    return events[0].sequence, events[-1].sequence, response


def _after(response: _Response, sent: int) -> bytes:
    """The response without the events at or before `sent`."""
    _, _, decoded = _sequences(response.raw)
    kept = [ev for ev in decoded.events if ev.sequence > sent]
    return monitor_service_pb2.WatchRunResponse(events=kept).SerializeToString()


class SharedWatches:
    """The gateway's table of shared upstream WatchRun streams."""

    def __init__(self, opener: Opener) -> None:
        self._open = opener
        self._upstreams: dict[Key, _Upstream] = {}

    @property
    def upstreams(self) -> int:
        """How many upstream streams are open."""
        return len(self._upstreams)

    @staticmethod
    def shareable(request: monitor_service_pb2.WatchRunRequest) -> bool:
        """Whether a request follows live events (a history-only one ends on its own)."""
        return not request.history_only

    async def follow(
        self, request: monitor_service_pb2.WatchRunRequest, metadata: Metadata
    ) -> AsyncIterator[bytes]:
        """The WatchRun responses a client of this request gets, as bytes. Fails with
        CallError as the monitor's stream would. `metadata` goes with the client's own calls
        (its catch-up, an unshared watch) and with the shared stream it opens (the monitor
        logs that stream under the request id and caller of the client that opened it)."""
        key: Key = (request.run_id, tuple(request.types), request.node_id)
        sent = request.after_sequence
        while True:
            joined = self._join(key, sent, metadata)
            if joined is None:
                async for raw in self._private(request, sent, metadata):
                    yield raw
                return
            upstream, client, behind = joined
            try:
                if behind:
                    async for raw in self._private(request, sent, metadata, history_only=True):
                        _, last, _ = _sequences(raw)
                        if last > sent:
                            yield raw
                            sent = last
                while True:
                    item = await client.next()
                    if item is None:
                        break  # fell behind: join again from what it has
                    if isinstance(item, _End):
                        if item.error is not None:  # each client its own copy to raise
                            err = item.error
                            raise CallError(err.code, err.message, err.details)
                        return
                    if item.last <= sent:
                        continue
                    yield item.raw if item.first > sent else _after(item, sent)
                    sent = item.last
            finally:
                self._leave(upstream, client)

    def _join(
        self, key: Key, sent: int, metadata: Metadata
    ) -> tuple[_Upstream, _Client, bool] | None:
        """Join (or open) the upstream of `key`: (it, the client's mailbox, whether the client
        must first read what the upstream delivered before it joined). None: not shareable."""
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = self._upstreams[key] = _Upstream(key=key, after=sent)
            # A fresh context: the upstream serves every client, not the first one's request.
            upstream.task = asyncio.get_running_loop().create_task(
                self._pump(upstream, metadata), context=contextvars.Context()
            )
            behind = False
        elif upstream.last is None:
            if sent < upstream.after:
                return None
            behind = False
        else:
            behind = sent < upstream.last
        client = _Client()
        upstream.clients.add(client)
        return upstream, client, behind

    def _leave(self, upstream: _Upstream, client: _Client) -> None:
        upstream.clients.discard(client)
        if not upstream.clients:
            if self._upstreams.get(upstream.key) is upstream:
                del self._upstreams[upstream.key]
            if upstream.task is not None:
                upstream.task.cancel()

    async def _pump(self, upstream: _Upstream, metadata: Metadata) -> None:
        run_id, types, node_id = upstream.key
        request = monitor_service_pb2.WatchRunRequest(
            run_id=run_id, after_sequence=upstream.after, types=cast(Any, types), node_id=node_id
        )
        call = self._open(request.SerializeToString(), metadata)
        end = _End()
        try:
            async for raw in call:
                first, last, _ = _sequences(raw)
                upstream.last = last
                response = _Response(raw, first, last)
                for client in upstream.clients:
                    client.offer(response)
        except grpc.aio.AioRpcError as err:
            end = _End(CallError.from_rpc_error(err))
        except asyncio.CancelledError:
            # No client left, or the gateway is stopping (its clients hear UNAVAILABLE).
            for client in upstream.clients:
                client.finish(_End(CallError(grpc.StatusCode.UNAVAILABLE, "gateway stopping")))
            raise
        except Exception as exc:  # a response that does not decode, say
            end = _End(CallError(grpc.StatusCode.INTERNAL, f"watch failed: {type(exc).__name__}"))
        finally:
            call.cancel()
            # Gone from the table before anyone hears of the end: a client joining now opens
            # a new stream (which ends at once for a finished run, as the monitor's would).
            if self._upstreams.get(upstream.key) is upstream:
                del self._upstreams[upstream.key]
        for client in upstream.clients:
            client.finish(end)

    async def _private(
        self,
        request: monitor_service_pb2.WatchRunRequest,
        after: int,
        metadata: Metadata,
        *,
        history_only: bool = False,
    ) -> AsyncIterator[bytes]:
        """A client's own stream from `after` (its catch-up, or an unshared watch)."""
        mine = monitor_service_pb2.WatchRunRequest()
        mine.CopyFrom(request)
        mine.after_sequence = after
        mine.history_only = mine.history_only or history_only
        call = self._open(mine.SerializeToString(), metadata)
        try:
            async for raw in call:
                yield raw
        except grpc.aio.AioRpcError as err:
            raise CallError.from_rpc_error(err) from err
        finally:
            call.cancel()

    async def close(self) -> None:
        """Stop every upstream stream."""
        tasks = [u.task for u in self._upstreams.values() if u.task is not None]
        self._upstreams.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
