"""Fan-out of bus events to the watchers in this process, by run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from conveyor.kernel.outbox import RUN_STATE_CHANGED, Event

QUEUE_LIMIT = 10_000


class Subscription:
    """One watcher's queue of live events for one run."""

    def __init__(self, hub: Hub, run_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.run_id = run_id
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self.overflowed = False

    def _offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A slow watcher: drop live events; the gap is refilled from the outbox table.
            self.overflowed = True

    def close(self) -> None:
        """Stop receiving events."""
        self.hub.unsubscribe(self)


class Hub:
    """Receives event batches from the bus (any thread) and routes them to subscriptions."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._on_run_change: list[Callable[[], None]] = []

    def on_run_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the bus thread) whenever a batch holds a run state change."""
        with self._lock:
            self._on_run_change.append(callback)

    def subscribe(self, run_id: str) -> Subscription:
        """Subscribe the calling event loop to a run's live events."""
        sub = Subscription(self, run_id, asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(run_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription."""
        with self._lock:
            subs = self._subs.get(sub.run_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.run_id]

    def deliver(self, events: Sequence[Event]) -> None:
        """Bus listener: hand each event to the loop of every subscriber of its run."""
        with self._lock:
            targets = [(ev, list(self._subs.get(ev.run_id, ()))) for ev in events]
            wake = list(self._on_run_change)
        if wake and any(ev.type == RUN_STATE_CHANGED for ev in events):
            for callback in wake:
                callback()
        # One thread-safe hand-over per event loop and batch, not one per watcher and event.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, Event]]] = {}
        for ev, subs in targets:
            for sub in subs:
                by_loop.setdefault(sub.loop, []).append((sub, ev))
        for loop, items in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_offer_all, items)

    @property
    def watchers(self) -> int:
        """Number of live subscriptions."""
        with self._lock:
            return sum(len(s) for s in self._subs.values())


def _offer_all(items: list[tuple[Subscription, Event]]) -> None:
    for sub, ev in items:
        sub._offer(ev)
