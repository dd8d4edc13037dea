"""What a worker process is running, told to the monitor as a Celery event.

Celery's own heartbeats carry only a count of active tasks, and a step a worker runs by
hand-off is no Celery task at all. So each worker process sends a ``worker-attempts`` event
on the Celery event stream (the one the monitor already reads for heartbeats) listing the
attempts it runs: soon after one starts or ends (at most every `MIN_GAP_S`), then every
`interval_s` while it runs any and for a few periods after it ran its last, so a monitor that
restarts or missed an event catches up. Each process (a prefork pool has several per worker)
reports its own attempts with its pid; the monitor merges them per worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from conveyor.kernel.ids import utcnow

log = structlog.get_logger(__name__)

EVENT_TYPE = "worker-attempts"
MIN_GAP_S = 0.25
IDLE_REPORTS = 3
MAX_REPORTED = 100

Attempt = tuple[str, str, int]  # run id, node id, attempt


class RunningReport:
    """Keeps the attempts this process runs and sends them as Celery events (own thread)."""

    def __init__(self, app: Any, *, hostname: Callable[[], str], interval_s: float) -> None:
        self._app = app
        self._hostname = hostname
        self._interval_s = max(interval_s, MIN_GAP_S)
        self._running: dict[Attempt, datetime] = {}
        self._cond = threading.Condition()
        self._changed = False
        self._thread: threading.Thread | None = None

    def add(self, attempt: Attempt) -> None:
        """An attempt started here (starts the thread on first use, so after a fork)."""
        with self._cond:
            self._running[attempt] = utcnow()
            self._changed = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="conveyor-running-report", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def discard(self, attempt: Attempt) -> None:
        """An attempt ended here."""
        with self._cond:
            if self._running.pop(attempt, None) is not None:
                self._changed = True
                self._cond.notify()

    def snapshot(self) -> list[dict[str, Any]]:
        """The attempts running now, oldest first, as the event lists them."""
        with self._cond:
            items = sorted(self._running.items(), key=lambda kv: kv[1])[:MAX_REPORTED]
        return [
            {"run_id": r, "node_id": n, "attempt": a, "since": since.isoformat()}
            for (r, n, a), since in items
        ]

    def _loop(self) -> None:
        idle_reports = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._changed, timeout=self._interval_s)
                changed, self._changed = self._changed, False
                busy = bool(self._running)
            idle_reports = 0 if busy or changed else idle_reports + 1
            if busy or changed or idle_reports <= IDLE_REPORTS:
                self._send(self.snapshot())
            time.sleep(MIN_GAP_S)

    def _send(self, attempts: list[dict[str, Any]]) -> None:
        try:
            with self._app.events.default_dispatcher(hostname=self._hostname()) as dispatcher:
                dispatcher.send(EVENT_TYPE, attempts=attempts, interval=self._interval_s)
        except Exception:  # a view for the monitor; the next report tries again
            log.warning("running attempts not reported", exc_info=True)
