"""Live step output: batches of a running step's stdout/stderr become STEP_LOG run events.

The runners hand over masked text in whole-line batches (`runners.capture.LiveOutput`: at
most one batch per stream every ~50 ms, or sooner when 64 KiB are waiting). A `LiveLog`
takes those batches from the reader threads through a bounded queue, so a slow database
slows the step's pipe (like a slow terminal would) instead of growing memory. One writer
thread merges whatever has queued up meanwhile into one transaction, which numbers the
chunks of each stream 1, 2, 3, … and appends them to the run's event outbox under the run
lock, so log chunks share the run's gap-free sequence with its state changes and a watcher
resumes both with one number. Chunks larger than `BUS_TEXT_LIMIT` are published as
text-less placeholders, which make watchers read them from the table. The worker closes the
`LiveLog` before it records the step's result, so every chunk precedes the step's final
state event and the run's terminal event.

Each stream of an attempt sends at most `cap` characters live; the chunk that reaches the
cap is marked ``truncated``, and the rest of the output is only in the step's stdout/stderr
and artifact (which always hold everything).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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

STREAMS = ("stdout", "stderr")
MERGE_LIMIT = 64 * 1024
# Larger chunks cross the bus as a placeholder without text; watchers read them from the
# table. So however fast a step writes, the bus carries at most about 20 messages of at most
# this size per stream per second.
BUS_TEXT_LIMIT = 16 * 1024
QUEUE_LIMIT = 256
_END = ("", "")


@dataclass(frozen=True)
class Chunk:
    """One numbered piece of one stream."""

    stream: str
    text: str
    chunk: int
    offset: int
    truncated: bool = False


@dataclass
class _StreamState:
    sent_chars: int = 0
    chunks: int = 0
    capped: bool = False


def append_logs(
    session: Session, run_id: str, node_id: str, attempt: int, chunks: Sequence[Chunk]
) -> list[Event]:
    """Add STEP_LOG events for a running attempt; none once it stopped running."""
    if not chunks:
        return []
    run = runs.lock_run(session, run_id)
    step = session.execute(
        select(StepRow.state, StepRow.attempt).where(
            StepRow.run_id == run_id, StepRow.node_id == node_id
        )
    ).first()
    # After a cancellation the run's terminal event is already written: it stays the last.
    if (
        run.state in engine.TERMINAL_RUN
        or step is None
        or step[0] != StepState.RUNNING
        or step[1] != attempt
    ):
        return []
    effects = runs.Effects()
    tx = runs.RunTx(session, run, effects)
    for c in chunks:
        data: dict[str, Any] = {"stream": c.stream, "chunk": c.chunk, "offset": c.offset}
        if c.truncated:
            data["truncated"] = True
        tx.emit(outbox.STEP_LOG, node_id=node_id, attempt=attempt, message=c.text, data=data)
    return effects.events


class LiveLog:
    """Collects one attempt's output batches and writes them as events from its own thread."""

    def __init__(
        self,
        *,
        db: Database,
        publish: Callable[[Sequence[Event]], None],
        run_id: str,
        node_id: str,
        attempt: int,
        cap: int,
    ) -> None:
        self._db = db
        self._publish = publish
        self.run_id, self.node_id, self.attempt = run_id, node_id, attempt
        self._cap = cap
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._streams = {name: _StreamState() for name in STREAMS}
        self._stopped = False
        self.dropped = 0
        # Started by the first write: a step that prints nothing costs no thread.
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        """The runners' on_output callback (any thread); blocks while the queue is full."""
        if text and stream in self._streams:
            if self._thread is None:
                self._start()
            self._queue.put((stream, text))

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="conveyor-livelog", daemon=True)
                thread.start()
                self._thread = thread

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._starting:
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_END)
        thread.join()

    def _run(self) -> None:
        done = False
        while not done:
            items = [self._queue.get()]
            while len(items) < QUEUE_LIMIT:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _END in items:
                done = True
                items = items[: items.index(_END)]
            self._write(self.number(merge(items)))

    def number(self, items: Sequence[tuple[str, str]]) -> list[Chunk]:
        """Apply the cap and give each piece its stream's next chunk number and offset."""
        chunks = []
        for stream, text in items:
            state = self._streams[stream]
            if state.capped:
                continue
            room = self._cap - state.sent_chars
            truncated = len(text) >= room
            if truncated:
                text = text[:room]
                state.capped = True
            state.chunks += 1
            chunks.append(Chunk(stream, text, state.chunks, state.sent_chars, truncated))
            state.sent_chars += len(text)
        return chunks

    def _write(self, chunks: list[Chunk]) -> None:
        if not chunks or self._stopped:
            return
        try:
            with self._db.transaction() as session:
                events = append_logs(session, self.run_id, self.node_id, self.attempt, chunks)
        except Exception:
            # Live output is a view; the step's own capture still has every byte.
            self.dropped += len(chunks)
            log.warning(
                "live log write failed; chunks dropped",
                run_id=self.run_id,
                step_id=self.node_id,
                attempt=self.attempt,
                chunks=len(chunks),
                exc_info=True,
            )
            return
        if not events:
            self._stopped = True  # the attempt was cancelled or superseded
            return
        self._publish([for_bus(ev) for ev in events])


def for_bus(ev: Event) -> Event:
    """The event as published: a large chunk goes without its text, marked ``thin``."""
    if len(ev.message) <= BUS_TEXT_LIMIT:
        return ev
    return replace(ev, message="", data={**ev.data, "thin": True})


def merge(items: Sequence[tuple[str, str]], limit: int = MERGE_LIMIT) -> list[tuple[str, str]]:
    """Join consecutive pieces of the same stream, up to `limit` characters each."""
    merged: list[tuple[str, str]] = []
    for stream, text in items:
        if merged and merged[-1][0] == stream and len(merged[-1][1]) + len(text) <= limit:
            merged[-1] = (stream, merged[-1][1] + text)
        else:
            merged.append((stream, text))
    return merged
