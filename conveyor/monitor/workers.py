"""Celery workers as seen through Celery's event stream, and queue rates from run events.

Workers started by `conveyor worker` send worker events: a heartbeat every
`worker_heartbeat_s` seconds, and what they run (`worker-attempts`). Celery's task events
(`CONVEYOR_CELERY_TASK_EVENTS`) are not needed: the rates per queue count the steps queued
and started on it, from the run events whose data names the queue.

A worker is offline once no event has arrived from it for `OFFLINE_BEATS` heartbeat
periods (the period it reports itself, `freq`), or right away when it sends
`worker-offline` on a clean shutdown. With the 1 s default, a killed worker shows offline
after about 3 s; Celery's own (and Flower's) rule is 2 periods plus drift.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from conveyor.executor.v1 import run_pb2
from conveyor.kernel.outbox import STEP_STATE_CHANGED, Event
from conveyor.monitor.states import step_state_name

QUEUED = step_state_name(run_pb2.STEP_STATE_QUEUED)
RUNNING = step_state_name(run_pb2.STEP_STATE_RUNNING)

log = structlog.get_logger(__name__)

OFFLINE_BEATS = 3.0
RATE_WINDOW_S = 60.0
MAX_WORKERS = 1000
MAX_RATE_SAMPLES = 100_000
MAX_QUEUES_PER_WORKER = 100
# A worker whose configuration is unknown (its inspect reply was lost or slow) is asked again.
REINSPECT_AFTER_S = 5.0
INSPECT_TIMEOUT_S = 2.0
# `worker-attempts` events (conveyor.executor.running): what each worker process runs. A
# process's report counts until it is this many of its own report periods old.
ATTEMPTS_EVENT = "worker-attempts"
STALE_REPORTS = 3.0
MAX_RUNNING = 100


@dataclass(frozen=True)
class RunningAttempt:
    """A step attempt a worker reported running."""

    run_id: str
    node_id: str
    attempt: int
    since: str  # ISO 8601, as the worker sent it


def _attempts(raw: Any) -> list[RunningAttempt]:
    found = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            found.append(
                RunningAttempt(
                    run_id=str(item.get("run_id") or "")[:64],
                    node_id=str(item.get("node_id") or "")[:64],
                    attempt=int(item.get("attempt") or 0),
                    since=str(item.get("since") or "")[:40],
                )
            )
        if len(found) >= MAX_RUNNING:
            break
    return found


@dataclass
class WorkerInfo:
    """What is known about one worker."""

    hostname: str
    queues: set[str] = field(default_factory=set)
    concurrency: int = 0
    active: int = 0
    processed: int = 0
    freq: float = 2.0
    last_seen: float = 0.0
    said_goodbye: bool = False
    software_version: str = ""
    inspected_at: float = 0.0
    # Per worker process (pid): when its last report came, its period, what it runs.
    reports: dict[int, tuple[float, float, list[RunningAttempt]]] = field(default_factory=dict)

    def running(self, now: float) -> list[RunningAttempt]:
        """What its processes reported running, from reports still fresh; oldest first."""
        current = [
            attempt
            for at, period, attempts in self.reports.values()
            if now - at <= STALE_REPORTS * period
            for attempt in attempts
        ]
        return sorted(current, key=lambda a: a.since)[:MAX_RUNNING]

    def online(self, now: float) -> bool:
        """True while heartbeats keep arriving."""
        return not self.said_goodbye and now - self.last_seen <= OFFLINE_BEATS * self.freq


class WorkerTracker:
    """Folds Celery events into worker and per-queue rate state (thread-safe)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._workers: dict[str, WorkerInfo] = {}
        self._sent: deque[tuple[float, str]] = deque(maxlen=MAX_RATE_SAMPLES)
        self._taken: deque[tuple[float, str]] = deque(maxlen=MAX_RATE_SAMPLES)
        self.on_new_worker: Callable[[str], None] | None = None

    def register(self, hostname: str, *, queues: list[str], concurrency: int) -> None:
        """Record a worker's configuration (from `inspect` or from the embedded suite)."""
        with self._lock:
            info = self._workers.get(hostname)
            if info is None:
                return
            info.queues.update(queues[:MAX_QUEUES_PER_WORKER])
            info.concurrency = concurrency or info.concurrency

    def handle(self, event: dict[str, Any]) -> None:
        """Apply one Celery event (a dict with at least `type`)."""
        kind = str(event.get("type", ""))
        now = self._clock()
        hostname = str(event.get("hostname") or "")
        if not kind.startswith("worker-") or not hostname:
            return
        new = False
        with self._lock:
            info = self._workers.get(hostname)
            if info is None:
                if len(self._workers) >= MAX_WORKERS:
                    self._forget_oldest_offline(now)
                info = self._workers[hostname] = WorkerInfo(hostname=hostname)
                new = True
            if kind == ATTEMPTS_EVENT:
                self._report(info, event, now)
                return
            info.last_seen = now
            info.freq = float(event.get("freq") or info.freq)
            info.active = int(event.get("active") or 0)
            info.processed = int(event.get("processed") or info.processed)
            info.software_version = str(event.get("sw_ver") or info.software_version)
            info.said_goodbye = kind == "worker-offline"
            if kind == "worker-online":
                new = True
            if not info.concurrency and now - info.inspected_at >= REINSPECT_AFTER_S:
                new = not info.said_goodbye
            if new:
                info.inspected_at = now
        if new and self.on_new_worker is not None:
            self.on_new_worker(hostname)

    @staticmethod
    def _report(info: WorkerInfo, event: dict[str, Any], now: float) -> None:
        """Fold in one process's report of what it runs (not a heartbeat: the worker's
        liveness stays with Celery's own events)."""
        try:
            pid = int(event.get("pid") or 0)
            period = float(event.get("interval") or 2.0)
        except (TypeError, ValueError):
            return
        if pid not in info.reports and len(info.reports) >= MAX_QUEUES_PER_WORKER:
            oldest = min(info.reports, key=lambda p: info.reports[p][0])
            del info.reports[oldest]
        info.reports[pid] = (now, max(period, 0.25), _attempts(event.get("attempts")))

    def _forget_oldest_offline(self, now: float) -> None:
        offline = [w for w in self._workers.values() if not w.online(now)]
        victim = min(offline or self._workers.values(), key=lambda w: w.last_seen)
        del self._workers[victim.hostname]

    def steps(self, events: Sequence[Event]) -> None:
        """Bus listener: count steps queued on and started from each queue, and learn the
        queues a worker takes steps from (the events of worker steps name their queue)."""
        now = self._clock()
        with self._lock:
            for ev in events:
                if ev.type != STEP_STATE_CHANGED:
                    continue
                queue = ev.data.get("queue")
                if not isinstance(queue, str) or not queue:
                    continue
                if ev.step_state == QUEUED:
                    self._sent.append((now, queue))
                elif ev.step_state == RUNNING:
                    self._taken.append((now, queue))
                    info = self._workers.get(str(ev.data.get("worker") or ""))
                    if info is not None and len(info.queues) < MAX_QUEUES_PER_WORKER:
                        info.queues.add(queue)

    def now(self) -> float:
        """The tracker's clock."""
        return self._clock()

    def workers(self) -> list[tuple[WorkerInfo, bool]]:
        """Copies of every worker with its online flag, by hostname."""
        now = self._clock()
        with self._lock:
            return [
                (
                    WorkerInfo(
                        hostname=w.hostname,
                        queues=set(w.queues),
                        concurrency=w.concurrency,
                        active=w.active,
                        processed=w.processed,
                        freq=w.freq,
                        last_seen=w.last_seen,
                        said_goodbye=w.said_goodbye,
                        software_version=w.software_version,
                        reports={
                            pid: (at, period, list(a)) for pid, (at, period, a) in w.reports.items()
                        },
                    ),
                    w.online(now),
                )
                for w in sorted(self._workers.values(), key=lambda w: w.hostname)
            ]

    def rates(self) -> dict[str, tuple[float, float]]:
        """Per queue: steps queued and started per second over the last minute."""
        cutoff = self._clock() - RATE_WINDOW_S
        result: dict[str, list[float]] = {}
        with self._lock:
            for samples, index in ((self._sent, 0), (self._taken, 1)):
                while samples and samples[0][0] < cutoff:
                    samples.popleft()
                for _, queue in samples:
                    result.setdefault(queue, [0.0, 0.0])[index] += 1.0
        return {q: (v[0] / RATE_WINDOW_S, v[1] / RATE_WINDOW_S) for q, v in result.items()}

    def consumers(self, queue: str) -> int:
        """Online workers known to consume a queue."""
        return sum(1 for w, up in self.workers() if up and queue in w.queues)


class EventListener:
    """Consumes Celery events in a thread and feeds a tracker; asks new workers their config."""

    def __init__(self, app: Any, tracker: WorkerTracker) -> None:
        self._app = app
        self._tracker = tracker
        self._stop = threading.Event()
        self._receiver: Any = None
        self._pending: deque[str] = deque(maxlen=MAX_WORKERS)
        self._wake = threading.Event()
        tracker.on_new_worker = self._enqueue
        self._threads = [
            threading.Thread(target=self._receive, name="conveyor-celery-events", daemon=True),
            threading.Thread(target=self._inspect, name="conveyor-worker-inspect", daemon=True),
        ]

    def start(self) -> None:
        """Start consuming."""
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop consuming (bounded wait)."""
        self._stop.set()
        self._wake.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        for t in self._threads:
            t.join(timeout=5)

    def _enqueue(self, hostname: str) -> None:
        self._pending.append(hostname)
        self._wake.set()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                with self._app.connection_for_read() as conn:
                    self._receiver = self._app.events.Receiver(
                        conn, handlers={"*": self._tracker.handle}
                    )
                    if self._stop.is_set():
                        return
                    self._receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception:
                log.warning("celery event receiver failed; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def _inspect(self) -> None:
        """Ask each new worker for its queues and pool size (remote control, like Flower)."""
        while not self._stop.is_set():
            self._wake.wait(5.0)
            self._wake.clear()
            while self._pending and not self._stop.is_set():
                hostname = self._pending.popleft()
                try:
                    probe = self._app.control.inspect(
                        destination=[hostname], timeout=INSPECT_TIMEOUT_S
                    )
                    stats = (probe.stats() or {}).get(hostname) or {}
                    queues = (probe.active_queues() or {}).get(hostname) or []
                except Exception:
                    log.warning("could not inspect worker", worker=hostname, exc_info=True)
                    continue
                pool = stats.get("pool") or {}
                concurrency = pool.get("max-concurrency") or 0
                self._tracker.register(
                    hostname,
                    queues=[str(q.get("name")) for q in queues if q.get("name")],
                    concurrency=int(concurrency) if isinstance(concurrency, int) else 0,
                )
