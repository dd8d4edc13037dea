"""Turns run events from the bus into Prometheus counters and histograms.

The bus listener only enqueues (it also feeds live watchers and must not wait on anything);
a thread takes the queued events in batches and asks the executor once per batch for what
events do not carry (the run's job name, the node's type, the attempt's wall time:
RunStatsService.DescribeAttempts), then updates the metrics. Counters restart from zero with
the monitor, as Prometheus counters do; `rate()` handles the reset.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence

import structlog

from conveyor.executor.v1 import run_pb2
from conveyor.kernel import metrics
from conveyor.kernel.ids import utcnow
from conveyor.kernel.outbox import (
    RUN_STATE_CHANGED,
    STEP_STATE_CHANGED,
    TERMINAL_RUN_STATES,
    Event,
)
from conveyor.monitor.runstats import Attempt, RunStats
from conveyor.monitor.states import step_state_name

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 100_000
# Events looked up with one DescribeAttempts call (its limit is 1000 keys).
BATCH = 500
FINAL_STEP_STATES = frozenset(
    step_state_name(s)
    for s in (
        run_pb2.STEP_STATE_SUCCEEDED,
        run_pb2.STEP_STATE_FAILED,
        run_pb2.STEP_STATE_SKIPPED,
        run_pb2.STEP_STATE_CANCELLED,
    )
)
# A step event for these states ends an attempt (WAITING = failed, a retry follows).
ATTEMPT_END_STATES = frozenset(
    step_state_name(s)
    for s in (
        run_pb2.STEP_STATE_SUCCEEDED,
        run_pb2.STEP_STATE_FAILED,
        run_pb2.STEP_STATE_CANCELLED,
        run_pb2.STEP_STATE_WAITING,
    )
)

Listener = Callable[[Event], None]
Key = tuple[str, str, int]


def _key(ev: Event) -> Key | None:
    """What to ask the executor about an event, or None when it moves no metric."""
    if ev.type == RUN_STATE_CHANGED and ev.run_state in TERMINAL_RUN_STATES:
        return (ev.run_id, "", 0)
    if ev.type != STEP_STATE_CHANGED or not ev.node_id:
        return None
    state = ev.step_state or ""
    if state in ATTEMPT_END_STATES and ev.attempt > 0:
        return (ev.run_id, ev.node_id, ev.attempt)
    if state in FINAL_STEP_STATES:
        return (ev.run_id, ev.node_id, 0)
    return None


def _told(ev: Event, key: Key) -> Attempt | None:
    """What the event itself tells for its metric, or None when the executor must be asked
    (events written before the executor added it, or ends without a measured wall time)."""
    data = ev.data
    if ev.type == RUN_STATE_CHANGED:
        job = data.get("job_name")
        return Attempt(ev.run_id, "", 0, job, "", None) if isinstance(job, str) and job else None
    node_type = data.get("node_type")
    if not isinstance(node_type, str) or not node_type:
        return None
    wall = data.get("wall_s")
    if key[2] > 0:
        if isinstance(wall, bool) or not isinstance(wall, int | float):
            return None
        return Attempt(ev.run_id, key[1], key[2], "", node_type, float(wall))
    return Attempt(ev.run_id, key[1], 0, "", node_type, None)


class MetricsRecorder:
    """Bus listener feeding the event-derived metrics (and any extra per-event listeners)."""

    def __init__(self, runs: RunStats) -> None:
        self._runs = runs
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._loop, name="conveyor-metrics", daemon=True)
        self.listeners: list[Listener] = []
        self.dropped = 0

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the queued events (bounded wait)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1)
        self._thread.join(timeout=5)

    def deliver(self, events: Sequence[Event]) -> None:
        """Bus listener: time the delivery and enqueue the events that move a metric."""
        now = utcnow()
        for ev in events:
            metrics.observe_event_delivery((now - ev.time).total_seconds())
            if ev.type not in (RUN_STATE_CHANGED, STEP_STATE_CHANGED):
                continue
            try:
                self._queue.put_nowait(ev)
            except queue.Full:
                self.dropped += 1

    def _take(self) -> tuple[list[Event], bool]:
        """The next batch of events (waiting for the first) and whether to stop after it."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < BATCH:
            try:
                ev = self._queue.get_nowait()
            except queue.Empty:
                break
            if ev is None:
                return batch, True
            batch.append(ev)
        return batch, False

    def _loop(self) -> None:
        while True:
            batch, stop = self._take()
            if batch:
                self.record(batch)
            if stop:
                return

    def record(self, events: Sequence[Event]) -> None:
        """Update the metrics for a batch of run and step events, then call the listeners.

        Events that carry what their metric needs (the executor writes the job name into a
        run's terminal event, the node type and the attempt's wall time into a step's end)
        are counted from themselves; the executor is asked about the others only."""
        event_keys = [_key(ev) for ev in events]
        own: dict[int, Attempt] = {}
        keys: dict[Key, None] = {}
        for i, (ev, key) in enumerate(zip(events, event_keys, strict=True)):
            if key is None:
                continue
            told = _told(ev, key)
            if told is not None:
                own[i] = told
            else:
                keys[key] = None
        found: dict[Key, Attempt] = {}
        if keys:
            try:
                found = {
                    (d.run_id, d.node_id, d.attempt): d for d in self._runs.describe(list(keys))
                }
            except Exception:
                log.warning("could not look up event metrics", count=len(keys), exc_info=True)
        for i, (ev, key) in enumerate(zip(events, event_keys, strict=True)):
            if key is not None:
                self._observe(ev, key, {key: own[i]} if i in own else found)
            for listener in self.listeners:
                try:
                    listener(ev)
                except Exception:
                    log.warning("event listener failed", run_id=ev.run_id, exc_info=True)

    @staticmethod
    def _observe(ev: Event, key: Key, found: dict[Key, Attempt]) -> None:
        described = found.get(key)
        if described is None:
            return  # the run is gone, or the executor could not be asked
        if ev.type == RUN_STATE_CHANGED:
            metrics.RUNS.labels(job=described.job_name, state=ev.run_state).inc()
            return
        state = ev.step_state or ""
        node_type = described.node_type
        if state in FINAL_STEP_STATES:
            category = str(ev.data.get("error_category") or "")
            metrics.STEPS.labels(type=node_type, state=state, category=category).inc()
        if key[2] > 0 and described.wall_s is not None:
            metrics.STEP_DURATION.labels(type=node_type).observe(described.wall_s)
