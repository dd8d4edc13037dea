"""The event bus: in-process for the embedded mode, Redis Streams for the distributed mode.

Publishing is best-effort after commit; subscribers that see a gap (or nothing for a while)
read the outbox table, so a lost bus message delays an event but never loses it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis
import structlog

from conveyor.kernel.outbox import Event

log = structlog.get_logger(__name__)

Listener = Callable[[Sequence[Event]], None]
STREAM = "conveyor:events"
STREAM_MAXLEN = 200_000


class EventBus(Protocol):
    """Publishes committed events and delivers them to listeners in this process."""

    def publish(self, events: Sequence[Event]) -> None:
        """Send events (never raises; failures are logged)."""

    def listen(self, listener: Listener) -> None:
        """Register a callback called (from any thread) with batches of events."""

    def close(self) -> None:
        """Stop background work."""


class InProcessBus:
    """Delivers published events synchronously to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Event]) -> None:
        """Call every listener with the batch."""
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(events)
            except Exception:
                log.exception("event listener failed")

    def listen(self, listener: Listener) -> None:
        """Register a listener."""
        with self._lock:
            self._listeners.append(listener)

    def close(self) -> None:
        """Drop every listener."""
        with self._lock:
            self._listeners.clear()


class RedisStreamBus:
    """XADDs events to one capped Redis stream; listeners are fed by a blocking XREAD thread."""

    def __init__(self, url: str, *, stream: str = STREAM) -> None:
        self._redis = redis.Redis.from_url(url)
        self._stream = stream
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Event]) -> None:
        """XADD each event (one round trip per batch)."""
        if not events:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for ev in events:
                pipe.xadd(
                    self._stream,
                    {"e": json.dumps(ev.to_json())},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            pipe.execute()
        except redis.RedisError:
            log.warning("event publish failed; watchers will read the outbox", exc_info=True)

    def listen(self, listener: Listener) -> None:
        """Register a listener and start the reader thread on first use."""
        with self._lock:
            self._listeners.append(listener)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._read_loop, name="conveyor-event-reader", daemon=True
                )
                self._thread.start()

    def _read_loop(self) -> None:
        last = "$"
        while not self._stop.is_set():
            try:
                reply: Any = self._redis.xread({self._stream: last}, block=500, count=1000)
            except redis.RedisError:
                log.warning("event stream read failed; retrying", exc_info=True)
                self._stop.wait(0.5)
                continue
            for _stream, entries in reply or []:
                batch = []
                for entry_id, fields in entries:
                    last = entry_id
                    try:
                        batch.append(Event.from_json(json.loads(fields[b"e"])))
                    except (KeyError, ValueError):
                        log.warning("malformed event on stream", entry=str(entry_id))
                with self._lock:
                    listeners = list(self._listeners)
                for listener in listeners:
                    try:
                        listener(batch)
                    except Exception:
                        log.exception("event listener failed")

    def close(self) -> None:
        """Stop the reader thread and close the connection pool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._redis.close()


def make_bus(url: str) -> EventBus:
    """memory:// gives the in-process bus; redis:// or rediss:// the Redis Streams bus."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStreamBus(url)
    if url.startswith("memory://"):
        return InProcessBus()
    raise ValueError(f"unsupported events URL {url!r}: use memory:// or redis://")
