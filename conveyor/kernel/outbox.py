"""The run event outbox: rows written in the same transaction as each state change.

The executor writes events here (and publishes them after commit); the monitor reads them to
replay a run's history. Sequences are per run and assigned under the run's row lock, so they
are gap-free and in commit order.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    event,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from conveyor.kernel.db import Base
from conveyor.kernel.states import TERMINAL_RUN_STATES as TERMINAL_RUN_STATES

RUN_STATE_CHANGED = "RUN_STATE_CHANGED"
STEP_STATE_CHANGED = "STEP_STATE_CHANGED"
STEP_LOG = "STEP_LOG"
STEP_PROGRESS = "STEP_PROGRESS"


class RunEventRow(Base):
    """One committed state change of a run (table run_events)."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "sequence", name="uq_run_events_run_seq"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    node_id: Mapped[str | None] = mapped_column(String(64))
    run_state: Mapped[str | None] = mapped_column(String(16))
    step_state: Mapped[str | None] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Event:
    """A run event as published on the bus and streamed to watchers."""

    run_id: str
    sequence: int
    type: str
    time: datetime
    run_state: str | None = None
    node_id: str | None = None
    step_state: str | None = None
    attempt: int = 0
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """True for the event that ends a run."""
        return self.type == RUN_STATE_CHANGED and self.run_state in TERMINAL_RUN_STATES

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (for the Redis stream)."""
        return {
            "run_id": self.run_id,
            "sequence": self.sequence,
            "type": self.type,
            "time": self.time.isoformat(),
            "run_state": self.run_state,
            "node_id": self.node_id,
            "step_state": self.step_state,
            "attempt": self.attempt,
            "message": self.message,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        """Inverse of to_json."""
        return cls(
            run_id=raw["run_id"],
            sequence=int(raw["sequence"]),
            type=raw["type"],
            time=datetime.fromisoformat(raw["time"]),
            run_state=raw.get("run_state"),
            node_id=raw.get("node_id"),
            step_state=raw.get("step_state"),
            attempt=int(raw.get("attempt") or 0),
            message=raw.get("message") or "",
            data=raw.get("data") or {},
        )

    @classmethod
    def from_row(cls, row: RunEventRow) -> Event:
        """Build from a stored row."""
        created = row.created_at
        if created.tzinfo is None:  # SQLite drops the zone; values are stored in UTC
            created = created.replace(tzinfo=UTC)
        return cls(
            run_id=row.run_id,
            sequence=row.sequence,
            type=row.type,
            time=created,
            run_state=row.run_state,
            node_id=row.node_id,
            step_state=row.step_state,
            attempt=row.attempt,
            message=row.message,
            data=dict(row.data or {}),
        )


_PENDING = "conveyor.outbox.pending"


def append(session: Session, event: Event) -> None:
    """Add an event row to the current transaction.

    The rows are written by the transaction's next flush (or its commit) in one plain
    INSERT of all of them: an event row is never read back or changed in the transaction
    that writes it, so it needs no ORM object, identity or returned id."""
    session.info.setdefault(_PENDING, []).append(
        {
            "run_id": event.run_id,
            "sequence": event.sequence,
            "type": event.type,
            "node_id": event.node_id,
            "run_state": event.run_state,
            "step_state": event.step_state,
            "attempt": event.attempt,
            "message": event.message,
            "data": event.data,
            "created_at": event.time,
        }
    )


def pending(session: Session) -> list[dict[str, Any]]:
    """The event rows appended in this transaction and not yet written."""
    rows: list[dict[str, Any]] = session.info.get(_PENDING) or []
    return rows


def take_pending(session: Session) -> list[dict[str, Any]]:
    """The event rows not yet written, which the caller now writes itself."""
    rows: list[dict[str, Any]] = session.info.pop(_PENDING, None) or []
    return rows


def _write_pending(session: Session) -> None:
    rows = take_pending(session)
    if rows:
        # The connection, not the session: no autoflush from inside a flush.
        session.connection().execute(insert(RunEventRow), rows)


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    _write_pending(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write_pending(session)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def events_after(
    session: Session,
    run_id: str,
    after: int,
    *,
    limit: int = 1000,
    until: int | None = None,
    types: Collection[str] = (),
    node_id: str = "",
) -> list[Event]:
    """A run's events with after < sequence (<= until), in order.

    `types` and `node_id` narrow the result, but the run's terminal event is always
    included, so a reader knows when the run is over.
    """
    query = select(RunEventRow).where(RunEventRow.run_id == run_id, RunEventRow.sequence > after)
    if until is not None:
        query = query.where(RunEventRow.sequence <= until)
    if types or node_id:
        wanted: list[ColumnElement[bool]] = []
        if types:
            wanted.append(RunEventRow.type.in_(sorted(types)))
        if node_id:
            wanted.append(RunEventRow.node_id == node_id)
        terminal = and_(
            RunEventRow.type == RUN_STATE_CHANGED,
            RunEventRow.run_state.in_(sorted(TERMINAL_RUN_STATES)),
        )
        query = query.where(or_(and_(*wanted), terminal))
    rows = session.scalars(query.order_by(RunEventRow.sequence).limit(limit))
    return [Event.from_row(r) for r in rows]


def terminal_sequence(session: Session, run_id: str) -> int | None:
    """The sequence of the run's terminal event; None while the run has not ended."""
    value = session.scalar(
        select(func.max(RunEventRow.sequence)).where(
            RunEventRow.run_id == run_id,
            RunEventRow.type == RUN_STATE_CHANGED,
            RunEventRow.run_state.in_(sorted(TERMINAL_RUN_STATES)),
        )
    )
    return None if value is None else int(value)


def last_sequence(session: Session, run_id: str) -> int:
    """The run's newest committed sequence (0 when it has no events)."""
    value = session.scalar(
        select(func.max(RunEventRow.sequence)).where(RunEventRow.run_id == run_id)
    )
    return int(value or 0)
