"""Worker liveness: running attempts heartbeat; an attempt whose worker went quiet is WORKER_LOST.

A Celery message is acknowledged late, so a worker killed mid-step has its message delivered
again, but that copy finds the step RUNNING and is ignored as stale. Without more, the step would
stay RUNNING forever. So every worker process stamps `job_executions.heartbeat_at` for the attempts
it is running (one UPDATE per attempt per interval, from one thread), and the executor's sweeper
closes any RUNNING attempt whose last stamp is older than `worker_lost_after_s` as failed with
category WORKER_LOST. From there the normal path applies: the node's retry policy (WORKER_LOST
is in the default `retries.on` set) or failure, and the run's trigger rules. If the worker was
only slow, its late result is for a superseded attempt and is ignored.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Select, and_, func, select, update
from sqlalchemy.orm import Session

from conveyor.executor import runs
from conveyor.executor.engine import StepState
from conveyor.executor.models import ExecutionRow, StepRow
from conveyor.kernel.db import Database
from conveyor.kernel.ids import utcnow

log = structlog.get_logger(__name__)

Attempt = tuple[str, str, int]  # run id, node id, attempt


class Heartbeater:
    """Stamps heartbeat_at for the attempts this process is running, every `interval_s`."""

    def __init__(self, db: Database, interval_s: float) -> None:
        self._db = db
        self._interval_s = interval_s
        self._active: set[Attempt] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, attempt: Attempt) -> None:
        """Start beating for an attempt (starts the thread on first use)."""
        with self._lock:
            self._active.add(attempt)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="conveyor-heartbeat", daemon=True
                )
                self._thread.start()

    def active(self) -> list[Attempt]:
        """The attempts beating now."""
        with self._lock:
            return list(self._active)

    def discard(self, attempt: Attempt) -> None:
        """Stop beating for an attempt."""
        with self._lock:
            self._active.discard(attempt)

    def beat(self) -> int:
        """Stamp every active attempt now; returns how many rows were stamped."""
        with self._lock:
            active = list(self._active)
        if not active:
            return 0
        now = utcnow()
        stamped = 0
        with self._db.transaction() as session:
            for run_id, node_id, attempt in active:
                result = session.execute(
                    update(ExecutionRow)
                    .where(
                        ExecutionRow.run_id == run_id,
                        ExecutionRow.node_id == node_id,
                        ExecutionRow.attempt == attempt,
                    )
                    .values(heartbeat_at=now)
                )
                stamped += int(getattr(result, "rowcount", 0) or 0)
        return stamped

    def _loop(self) -> None:
        while True:
            time.sleep(self._interval_s)
            try:
                self.beat()
            except Exception:  # the database may be briefly unavailable; try again next beat
                log.warning("heartbeat failed", exc_info=True)


def _silent(cutoff: datetime) -> Select[str, str, int, str]:
    """RUNNING attempts of RUNNING steps whose last heartbeat (or start) is older than cutoff."""
    last_seen = func.coalesce(ExecutionRow.heartbeat_at, ExecutionRow.started_at)
    return (
        select(StepRow.run_id, StepRow.node_id, StepRow.attempt, ExecutionRow.worker)
        .join(
            ExecutionRow,
            and_(
                ExecutionRow.run_id == StepRow.run_id,
                ExecutionRow.node_id == StepRow.node_id,
                ExecutionRow.attempt == StepRow.attempt,
            ),
        )
        .where(
            StepRow.state == StepState.RUNNING.value,
            ExecutionRow.state == StepState.RUNNING.value,
            last_seen < cutoff,
        )
    )


def lost_attempts(session: Session, *, cutoff: datetime, limit: int = 200) -> list[Attempt]:
    """RUNNING attempts whose last heartbeat (or start) is older than cutoff."""
    rows = session.execute(_silent(cutoff).limit(limit)).all()
    return [(r, n, int(a)) for r, n, a, _w in rows]


def lost_cutoff(seconds: float) -> datetime:
    """The heartbeat time before which a running attempt counts as lost."""
    return utcnow() - timedelta(seconds=seconds)


def reap_lost(
    db: Database,
    *,
    lost_after_s: float,
    after_commit: Callable[[runs.Effects], None],
    rand: Callable[[], float] = random.random,
    reattempts: int = 0,
) -> int:
    """Close every lost attempt as WORKER_LOST (each in its own transaction); returns how many.

    The first `reattempts` lost attempts of a step are re-attempted at once whatever the
    node's retry policy (the step's own outcome is unknown, not failed); later ones follow it.
    """
    with db.read() as session:
        lost = lost_attempts(session, cutoff=lost_cutoff(lost_after_s))
    closed = 0
    for run_id, node_id, attempt in lost:
        with db.transaction() as session:
            # Re-check under the run lock: the result may have arrived since the scan.
            runs.lock_run(session, run_id)
            worker = silent_worker(session, run_id, node_id, attempt, lost_after_s)
            if worker is None:
                continue
            earlier = lost_count(session, run_id, node_id)
            result = runs.Result(
                succeeded=False,
                outputs={},
                error_category="WORKER_LOST",
                error_message=(
                    f"worker {worker!r} stopped heartbeating for more than {lost_after_s:g}s"
                ),
                reattempt=earlier < reattempts,
            )
            effects = runs.finish_step(session, run_id, node_id, attempt, result, rand=rand)
        log.warning("attempt lost with its worker", run_id=run_id, step_id=node_id, attempt=attempt)
        after_commit(effects)
        closed += 1
    return closed


def silent_worker(
    session: Session, run_id: str, node_id: str, attempt: int, lost_after_s: float
) -> str | None:
    """The worker of this attempt if it is still RUNNING and silent past the cutoff."""
    row = session.execute(
        _silent(lost_cutoff(lost_after_s)).where(
            StepRow.run_id == run_id, StepRow.node_id == node_id, StepRow.attempt == attempt
        )
    ).first()
    return None if row is None else str(row[3] or "unknown")


def lost_count(session: Session, run_id: str, node_id: str) -> int:
    """How many attempts of a step were already closed as WORKER_LOST."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ExecutionRow)
            .where(
                ExecutionRow.run_id == run_id,
                ExecutionRow.node_id == node_id,
                ExecutionRow.error_category == "WORKER_LOST",
            )
        )
        or 0
    )
