"""The global feed of run state changes: one cursor across all runs, for WatchRuns.

A run's own events are numbered per run (outbox.py). Watching *every* run needs one order
over all of them that a client can resume from. Table ids are not that order: on
PostgreSQL two transactions can take ids 7 and 8 and commit 8 first, so a reader that saw 8
and resumed "after 8" would never see 7. The feed position is therefore assigned at the
very end of the writing transaction, by incrementing the single row of ``run_feed_head``:
its row lock is held only from that update until COMMIT (the transaction's other writes are
flushed before it), so positions are handed out in commit order and a gap can never become
visible. On PostgreSQL the head's update and the feed rows' insert are one statement (the
update is a CTE that numbers the rows), a round trip less on every run state change. The
cost is that commits which change a run's state serialise on that one row for the moment
between the update and the commit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    Text,
    TextClause,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.kernel.db import Base
from conveyor.kernel.outbox import Event

_PENDING = "conveyor.feed.pending"
HEAD_ID = 1


class RunFeedRow(Base):
    """One run state change in the global feed (table run_feed)."""

    __tablename__ = "run_feed"

    position: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    run_id: Mapped[str] = mapped_column(String(32))
    run_sequence: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    job_name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(16))
    run_state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunFeedHead(Base):
    """The last position handed out (one row, id 1)."""

    __tablename__ = "run_feed_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class RunChange:
    """A feed entry: a run moved to a state."""

    position: int
    run_id: str
    run_sequence: int
    job_id: str
    job_name: str
    trigger: str
    run_state: str
    message: str
    time: datetime

    @classmethod
    def from_row(cls, row: RunFeedRow) -> RunChange:
        """Build from a stored row."""
        created = row.created_at
        if created.tzinfo is None:  # SQLite drops the zone; values are stored in UTC
            created = created.replace(tzinfo=UTC)
        return cls(
            position=row.position,
            run_id=row.run_id,
            run_sequence=row.run_sequence,
            job_id=row.job_id,
            job_name=row.job_name,
            trigger=row.trigger,
            run_state=row.run_state,
            message=row.message,
            time=created,
        )


@dataclass(frozen=True)
class FeedFilter:
    """Which changes a watcher wants; an empty set means any."""

    job_ids: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    triggers: frozenset[str] = frozenset()

    def matches(self, change: RunChange) -> bool:
        """Whether the change passes every set filter."""
        return (
            (not self.job_ids or change.job_id in self.job_ids)
            and (not self.states or change.run_state in self.states)
            and (not self.triggers or change.trigger in self.triggers)
        )


def record(session: Session, ev: Event, *, job_id: str, job_name: str, trigger: str) -> None:
    """Queue a run state change for the feed; it gets its position just before commit."""
    pending: list[dict[str, Any]] = session.info.setdefault(_PENDING, [])
    pending.append(
        {
            "run_id": ev.run_id,
            "run_sequence": ev.sequence,
            "job_id": job_id,
            "job_name": job_name,
            "trigger": trigger,
            "run_state": ev.run_state or "",
            "message": ev.message[:2000],
            "created_at": ev.time,
        }
    )


_COLUMNS = (
    "run_id",
    "run_sequence",
    "job_id",
    "job_name",
    "trigger",
    "run_state",
    "message",
    "created_at",
)


def pending(session: Session) -> list[dict[str, Any]]:
    """The feed rows recorded in this transaction and not yet written."""
    rows: list[dict[str, Any]] = session.info.get(_PENDING) or []
    return rows


def take_pending(session: Session) -> list[dict[str, Any]]:
    """The feed rows not yet written, which the caller now writes itself."""
    rows: list[dict[str, Any]] = session.info.pop(_PENDING, None) or []
    return rows


#: The most feed rows one statement numbers and inserts (`_pg_insert`, `pg_parts`).
ONE_STATEMENT_ROWS = 32


def pg_parts(rows: str, count: str) -> list[tuple[str, str]]:
    """PostgreSQL: the feed's writes as named parts of a statement made elsewhere
    (`conveyor.executor.onewrite`): the head's update, then the rows it numbers. `rows` and
    `count` are the placeholders of the pending rows (a JSON array of them, as `pending`
    returns them) and of their number. The "feed_rows" part returns a row per row
    inserted; fewer means the schema has no head row, and the caller inserts them with
    `insert_unnumbered`."""
    names = ", ".join(_COLUMNS)
    taken = ", ".join(f"v.{name}" for name in _COLUMNS)
    return [
        (
            "feed_head",
            f"UPDATE run_feed_head SET position = position + {count}"  # noqa: S608
            f" WHERE id = {HEAD_ID} RETURNING position",
        ),
        (
            "feed_rows",
            f"INSERT INTO run_feed (position, {names})"  # noqa: S608
            f" SELECT feed_head.position - {count} + v.ordinality, {taken}"
            f" FROM feed_head, json_populate_recordset(NULL::run_feed, {rows})"
            " WITH ORDINALITY AS v RETURNING 1",
        ),
    ]


def insert_unnumbered(connection: Any, rows: list[dict[str, Any]]) -> None:
    """Insert feed rows in a schema made without the head row (seeding it first)."""
    _insert_rows(connection, rows, None)


@event.listens_for(Session, "before_commit")
def _assign_positions(session: Session) -> None:
    pending = take_pending(session)
    if not pending:
        return
    # Everything else the transaction writes goes first, so the head's lock is held only
    # for its own update, the feed rows' insert and the commit.
    session.flush()
    count = len(pending)
    connection = session.connection()
    if connection.dialect.name == "postgresql" and count <= ONE_STATEMENT_ROWS:
        # One statement: the head's update, as a CTE, numbers the rows it inserts.
        params: dict[str, Any] = {"count": count, "head": HEAD_ID}
        for i, row in enumerate(pending):
            params.update({f"{name}_{i}": row[name] for name in _COLUMNS})
        inserted = connection.execute(_pg_insert(count), params)
        if inserted.rowcount == count:
            return
        _insert_rows(connection, pending, None)  # no head row: a schema without the seed row
        return
    top = connection.execute(
        update(RunFeedHead)
        .where(RunFeedHead.id == HEAD_ID)
        .values(position=RunFeedHead.position + count)
        .returning(RunFeedHead.position)
    ).scalar_one_or_none()
    _insert_rows(connection, pending, top)


@functools.lru_cache(maxsize=ONE_STATEMENT_ROWS)
def _pg_insert(count: int) -> TextClause:
    """PostgreSQL: take `count` positions from the head and insert that many feed rows."""
    casts = {"run_sequence": "BIGINT", "created_at": "TIMESTAMPTZ"}

    def value(name: str, i: int) -> str:
        return f"CAST(:{name}_{i} AS {casts[name]})" if name in casts else f":{name}_{i}"

    rows = ", ".join(
        "(" + ", ".join([str(i + 1), *(value(name, i) for name in _COLUMNS)]) + ")"
        for i in range(count)
    )
    names = ", ".join(_COLUMNS)
    # Built from this module's constants only; every value is a bound parameter.
    sql = (
        "WITH head AS (UPDATE run_feed_head SET position = position + :count"  # noqa: S608
        " WHERE id = :head RETURNING position)"
        f" INSERT INTO run_feed (position, {names})"
        f" SELECT head.position - :count + v.ordinal, {names}"
        f" FROM head, (VALUES {rows}) AS v (ordinal, {names})"
    )
    return text(sql)


def _insert_rows(connection: Any, pending: list[dict[str, Any]], top: int | None) -> None:
    """Insert the feed rows ending at position `top` (None: seed the head row first)."""
    count = len(pending)
    if top is None:  # a schema made without the migration's seed row
        connection.execute(insert(RunFeedHead).values(id=HEAD_ID, position=count))
        top = count
    connection.execute(
        insert(RunFeedRow),
        [{**row, "position": top - count + i + 1} for i, row in enumerate(pending)],
    )


def head(session: Session) -> int:
    """The newest committed position (0 when the feed is empty)."""
    value = session.scalar(select(func.max(RunFeedRow.position)))
    return int(value or 0)


def changes_after(
    session: Session, after: int, flt: FeedFilter | None = None, *, limit: int = 1000
) -> list[RunChange]:
    """Changes with position > after, oldest first, filtered in the query."""
    query = select(RunFeedRow).where(RunFeedRow.position > after)
    if flt is not None:
        if flt.job_ids:
            query = query.where(RunFeedRow.job_id.in_(sorted(flt.job_ids)))
        if flt.states:
            query = query.where(RunFeedRow.run_state.in_(sorted(flt.states)))
        if flt.triggers:
            query = query.where(RunFeedRow.trigger.in_(sorted(flt.triggers)))
    rows = session.scalars(query.order_by(RunFeedRow.position).limit(limit))
    return [RunChange.from_row(r) for r in rows]
