"""Fan-out of the global run-change feed to WatchRuns watchers in this process.

One `FeedTailer` per process reads new feed rows (position > the last it read) whenever
the bus reports a run state change, and at least every `POLL_S` in case a bus message was
lost; each watcher gets the rows its filter matches. Because positions are assigned in
commit order (kernel/feed.py), reading "after the last position" never skips a row.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from conveyor.kernel import feed
from conveyor.kernel.db import Database
from conveyor.kernel.feed import FeedFilter, RunChange
from conveyor.monitor.hub import Hub

log = structlog.get_logger(__name__)

POLL_S = 1.0
QUEUE_LIMIT = 10_000
READ_BATCH = 1000


class FeedSubscription:
    """One watcher's queue of matching live changes."""

    def __init__(self, tailer: FeedTailer, flt: FeedFilter) -> None:
        self.tailer = tailer
        self.filter = flt
        self.queue: asyncio.Queue[RunChange] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, change: RunChange) -> None:
        """Queue a change if it matches; a full queue is refilled from the table later."""
        if not self.filter.matches(change):
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True

    def close(self) -> None:
        """Stop receiving changes."""
        self.tailer.unsubscribe(self)


class FeedTailer:
    """Reads the feed table after each wake-up and offers new rows to every subscription."""

    def __init__(self, *, db: Database, hub: Hub, poll_s: float = POLL_S) -> None:
        self._db = db
        self._poll_s = poll_s
        self._subs: set[FeedSubscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last = 0
        hub.on_run_change(self._wake_threadsafe)

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def subscribe(self, flt: FeedFilter) -> FeedSubscription:
        """Subscribe; await `ready()` before reading the table, so nothing falls between."""
        sub = FeedSubscription(self, flt)
        self._subs.add(sub)
        self.ensure_running()
        return sub

    def ensure_running(self) -> None:
        """Start the tailer task if it is not running (it stops when no watcher is left)."""
        if self._task is None and self._subs:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="conveyor-feed-tailer")

    def unsubscribe(self, sub: FeedSubscription) -> None:
        """Remove a subscription; the tailer stops when none is left."""
        self._subs.discard(sub)
        if not self._subs:
            self._wake.set()

    async def ready(self) -> None:
        """Wait until the tailer knows where the feed ends (changes after it reach the queues)."""
        await self._ready.wait()

    def _read(self, after: int) -> list[RunChange]:
        with self._db.read() as session:
            return feed.changes_after(session, after, limit=READ_BATCH)

    def _head(self) -> int:
        with self._db.read() as session:
            return feed.head(session)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    self._last = await asyncio.to_thread(self._head)
                    break
                except Exception:
                    log.warning("run feed head read failed; retrying", exc_info=True)
                    await asyncio.sleep(self._poll_s)
            self._ready.set()
            while self._subs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                self._wake.clear()
                try:
                    await self._catch_up()
                except Exception:  # a database blip: try again on the next wake-up or poll
                    log.warning("run feed read failed; retrying", exc_info=True)
        finally:
            self._task = None

    async def _catch_up(self) -> None:
        while self._subs:
            batch = await asyncio.to_thread(self._read, self._last)
            for change in batch:
                for sub in list(self._subs):
                    sub.offer(change)
            if batch:
                self._last = batch[-1].position
            if len(batch) < READ_BATCH:
                return
