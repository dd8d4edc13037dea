"""Turns run events from the bus into Prometheus counters and histograms.

The bus listener only enqueues (it also feeds live watchers and must not wait on the
database); a thread looks up what events do not carry (job name, node type, attempt wall
time) and updates the metrics. Counters restart from zero with the monitor, as Prometheus
counters do; `rate()` handles the reset.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import select

from conveyor.executor.models import ExecutionRow, RunRow
from conveyor.kernel import metrics
from conveyor.kernel.db import Database
from conveyor.kernel.ids import as_utc, utcnow
from conveyor.kernel.outbox import (
    RUN_STATE_CHANGED,
    STEP_STATE_CHANGED,
    TERMINAL_RUN_STATES,
    Event,
)

log = structlog.get_logger(__name__)

QUEUE_LIMIT = 100_000
RUN_CACHE = 2000
FINAL_STEP_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"})
# A step event for these states ends an attempt (WAITING = failed, a retry follows).
ATTEMPT_END_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "WAITING"})

Listener = Callable[[Event], None]


class MetricsRecorder:
    """Bus listener feeding the event-derived metrics (and any extra per-event listeners)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._runs: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()
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

    def _loop(self) -> None:
        while True:
            ev = self._queue.get()
            if ev is None:
                return
            try:
                self.record(ev)
                for listener in self.listeners:
                    listener(ev)
            except Exception:
                log.warning("could not record event metrics", run_id=ev.run_id, exc_info=True)

    def _run_info(self, run_id: str) -> tuple[str, dict[str, str]]:
        cached = self._runs.get(run_id)
        if cached is not None:
            self._runs.move_to_end(run_id)
            return cached
        with self._db.transaction() as session:
            row = session.execute(
                select(RunRow.job_name, RunRow.plan_data).where(RunRow.id == run_id)
            ).first()
        if row is None:
            return "", {}
        nodes: dict[str, Any] = (row[1] or {}).get("nodes", {})
        info = (str(row[0]), {k: str(v.get("type", "")) for k, v in nodes.items()})
        self._runs[run_id] = info
        if len(self._runs) > RUN_CACHE:
            self._runs.popitem(last=False)
        return info

    def record(self, ev: Event) -> None:
        """Update the metrics for one run or step event."""
        if ev.type == RUN_STATE_CHANGED and ev.run_state in TERMINAL_RUN_STATES:
            job, _ = self._run_info(ev.run_id)
            metrics.RUNS.labels(job=job, state=ev.run_state).inc()
            self._runs.pop(ev.run_id, None)
            return
        if ev.type != STEP_STATE_CHANGED or not ev.node_id:
            return
        state = ev.step_state or ""
        if state not in ATTEMPT_END_STATES and state not in FINAL_STEP_STATES:
            return
        _, types = self._run_info(ev.run_id)
        node_type = types.get(ev.node_id, "")
        if state in FINAL_STEP_STATES:
            category = str(ev.data.get("error_category") or "")
            metrics.STEPS.labels(type=node_type, state=state, category=category).inc()
        if state in ATTEMPT_END_STATES and ev.attempt > 0:
            wall = self._attempt_seconds(ev.run_id, ev.node_id, ev.attempt)
            if wall is not None:
                metrics.STEP_DURATION.labels(type=node_type).observe(wall)

    def _attempt_seconds(self, run_id: str, node_id: str, attempt: int) -> float | None:
        with self._db.transaction() as session:
            row = session.execute(
                select(ExecutionRow.wall_s, ExecutionRow.started_at, ExecutionRow.ended_at).where(
                    ExecutionRow.run_id == run_id,
                    ExecutionRow.node_id == node_id,
                    ExecutionRow.attempt == attempt,
                )
            ).first()
        if row is None:
            return None
        if row[0] is not None:
            return float(row[0])
        started, ended = as_utc(row[1]), as_utc(row[2])
        if started is None or ended is None:
            return None
        return max(0.0, (ended - started).total_seconds())
