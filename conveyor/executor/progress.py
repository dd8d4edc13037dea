"""A running foreach's progress as STEP_PROGRESS run events.

The foreach reports every item's end (`ForeachProgress.update`, from any of its threads); one
writer thread appends the latest counts to the run's event outbox under the run lock, at once
for the first report (the items are known) and then at most once per `interval_s`, so a
foreach of 10,000 fast items costs a few transactions a second, not one per item. The last
counts that changed are written within `interval_s` even when no further item ends. The
worker closes the reporter before it records the foreach's result, so every progress event
precedes the step's final state event; none is written once the attempt stopped running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.executor import engine, runs
from conveyor.executor.engine import StepState
from conveyor.executor.models import StepRow
from conveyor.kernel import outbox
from conveyor.kernel.db import Database
from conveyor.kernel.outbox import Event

log = structlog.get_logger(__name__)

INTERVAL_S = 0.5

Counts = tuple[int, int, int]  # done, failed, total


def append_progress(
    session: Session, run_id: str, node_id: str, attempt: int, counts: Counts
) -> list[Event]:
    """Add a STEP_PROGRESS event for a running attempt; none once it stopped running."""
    run = runs.lock_run(session, run_id)
    step = session.execute(
        select(StepRow.state, StepRow.attempt).where(
            StepRow.run_id == run_id, StepRow.node_id == node_id
        )
    ).first()
    if (
        run.state in engine.TERMINAL_RUN
        or step is None
        or step[0] != StepState.RUNNING
        or step[1] != attempt
    ):
        return []
    done, failed, total = counts
    effects = runs.Effects()
    tx = runs.RunTx(session, run, effects)
    tx.emit(
        outbox.STEP_PROGRESS,
        node_id=node_id,
        attempt=attempt,
        message=f"{done}/{total} items" + (f", {failed} failed" if failed else ""),
        data={"items_done": done, "items_failed": failed, "items_total": total},
    )
    return effects.events


class ForeachProgress:
    """Writes one foreach attempt's latest item counts as events from its own thread."""

    def __init__(
        self,
        *,
        db: Database,
        publish: Callable[[Sequence[Event]], None],
        run_id: str,
        node_id: str,
        attempt: int,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._db = db
        self._publish = publish
        self.run_id, self.node_id, self.attempt = run_id, node_id, attempt
        self._interval_s = interval_s
        self._cond = threading.Condition()
        self._latest: Counts | None = None
        self._written: Counts | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="conveyor-progress", daemon=True)
        self._thread.start()

    def update(self, done: int, failed: int, total: int) -> None:
        """The foreach's counts now (any thread); never blocks on the database."""
        with self._cond:
            self._latest = (done, failed, total)
            self._cond.notify()

    def close(self) -> None:
        """Stop without writing what is pending: the step's end carries the final counts."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and self._latest == self._written:
                    self._cond.wait()
                if self._closed:
                    return
                counts = self._latest
            if counts is None:
                continue
            if not self._write(counts):
                return
            self._written = counts
            with self._cond:  # at most one write per interval; close() cuts the wait short
                self._cond.wait_for(lambda: self._closed, timeout=self._interval_s)

    def _write(self, counts: Counts) -> bool:
        """Write one event; False once the attempt no longer runs (nothing more to write)."""
        try:
            with self._db.transaction() as session:
                events = append_progress(session, self.run_id, self.node_id, self.attempt, counts)
        except Exception:  # progress is a view; the foreach's result is what counts
            log.warning(
                "foreach progress not written",
                run_id=self.run_id,
                step_id=self.node_id,
                exc_info=True,
            )
            return True
        if not events:
            return False
        try:
            self._publish(events)
        except Exception:
            log.warning("progress event not published; watchers will read it", exc_info=True)
        return True
