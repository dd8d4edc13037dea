"""Tables `job_schedules` and `schedule_actions`, and the functions that read and write them.

Claiming is the heart of high availability: due schedule rows are locked with
SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises instead),
and in the same short transaction `next_run_at` is advanced and one action row per fire is
inserted (unique on schedule and nominal time) with a lease. Whoever holds the lease starts
the run; an action whose lease ran out (its scheduler died) is claimed again by another, and
the executor's request_id makes the repeat harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.kernel.db import Base
from conveyor.kernel.errors import NotFound
from conveyor.kernel.ids import as_utc, new_id
from conveyor.kernel.metrics import observe_schedule_lag
from conveyor.kernel.paging import bad_token, decode_token, encode_token
from conveyor.scheduler import policies
from conveyor.scheduler.domain import Calendar, Spec
from conveyor.scheduler.policies import CatchupMode, Outcome, Overlap

_ID = BigInteger().with_variant(Integer, "sqlite")
MAX_FIRES_PER_CLAIM = 100
OBSERVE_HORIZON = timedelta(days=1)


class ScheduleRow(Base):
    """A job run on a calendar (table job_schedules)."""

    __tablename__ = "job_schedules"
    __table_args__ = (Index("ix_job_schedules_due", "paused", "next_due_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    overlap: Mapped[str] = mapped_column(String(16))
    catchup_window_s: Mapped[float] = mapped_column(Float)
    catchup_mode: Mapped[str] = mapped_column(String(16))
    pause_after_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_id: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(100))


class ActionRow(Base):
    """One fire of a schedule and what came of it (table schedule_actions)."""

    __tablename__ = "schedule_actions"
    __table_args__ = (
        UniqueConstraint("schedule_id", "nominal_time", name="uq_schedule_actions_fire"),
        Index("ix_schedule_actions_outcome_lease", "outcome", "lease_until"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("job_schedules.id", ondelete="CASCADE"), index=True
    )
    nominal_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    taken_by: Mapped[str] = mapped_column(String(255), default="")
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(32))
    run_state: Mapped[str | None] = mapped_column(String(16))
    first_step_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lag_s: Mapped[float | None] = mapped_column(Float)


@dataclass(frozen=True)
class Fire:
    """A leased action to carry out: start a run for this schedule (after the overlap check)."""

    action_id: int
    schedule_id: str
    job_id: str
    parameters: dict[str, Any]
    overlap: Overlap
    nominal: datetime
    request_id: str
    last_run_id: str | None
    released: bool = False


def fire_request_id(schedule_id: str, nominal: datetime) -> str:
    """The executor idempotency key of a calendar fire."""
    return f"{schedule_id}:{nominal.isoformat()}"


def spec_of(row: ScheduleRow) -> Spec:
    """The row's spec."""
    return Spec.from_json(row.spec)


def calendar_of(row: ScheduleRow) -> Calendar:
    """The row's calendar (intervals anchored at the spec's start or the creation time)."""
    return Calendar(spec_of(row), anchor=as_utc(row.created_at))


def set_next(row: ScheduleRow, after: datetime) -> None:
    """Advance next_run_at (nominal) and next_due_at (with jitter) to the first fire after."""
    nominal = calendar_of(row).next_after(after)
    row.next_run_at = nominal
    if nominal is None:
        row.next_due_at = None
        return
    row.next_due_at = nominal + policies.jitter_offset(
        row.id, nominal, float(row.spec.get("jitter_s") or 0.0)
    )


def new_schedule(
    session: Session,
    *,
    job_id: str,
    description: str,
    spec: Spec,
    parameters: dict[str, Any],
    overlap: Overlap,
    catchup_window_s: float,
    catchup_mode: CatchupMode,
    pause_after_failures: int,
    paused: bool,
    request_id: str | None,
    now: datetime,
) -> ScheduleRow:
    """Insert a schedule with its first fire time; a known request_id returns the earlier one."""
    if request_id:
        prior = session.scalar(select(ScheduleRow).where(ScheduleRow.request_id == request_id))
        if prior is not None:
            return prior
    row = ScheduleRow(
        id=new_id(),
        job_id=job_id,
        description=description,
        spec=spec.to_json(),
        parameters=parameters,
        overlap=overlap.value,
        catchup_window_s=catchup_window_s,
        catchup_mode=catchup_mode.value,
        pause_after_failures=pause_after_failures,
        paused=paused,
        note="",
        consecutive_failures=0,
        request_id=request_id or None,
        created_at=now,
        updated_at=now,
    )
    set_next(row, now)
    session.add(row)
    session.flush()
    return row


def get_schedule(session: Session, schedule_id: str, *, lock: bool = False) -> ScheduleRow:
    """A schedule by id."""
    query = select(ScheduleRow).where(ScheduleRow.id == schedule_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"schedule {schedule_id!r} not found", metadata={"schedule_id": schedule_id})
    return row


def list_schedules(
    session: Session, *, page_size: int, page_token: str, job_id: str
) -> tuple[list[ScheduleRow], str]:
    """Schedules oldest first; returns (page, next token)."""
    scope = ("schedules", job_id)
    after = decode_token(page_token, scope=scope)
    query = (
        select(ScheduleRow).order_by(ScheduleRow.created_at, ScheduleRow.id).limit(page_size + 1)
    )
    if job_id:
        query = query.where(ScheduleRow.job_id == job_id)
    if after:
        created_s, _, last_id = after.partition("|")
        created = _token_time(created_s)
        query = query.where(
            (ScheduleRow.created_at > created)
            | ((ScheduleRow.created_at == created) & (ScheduleRow.id > last_id))
        )
    rows = list(session.scalars(query))
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        token = encode_token(f"{as_utc(last.created_at).isoformat()}|{last.id}", scope=scope)  # type: ignore[union-attr]
    return rows[:page_size], token


def _token_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_token() from None
    if value.tzinfo is None:
        raise bad_token()
    return value


def delete_schedule(session: Session, schedule_id: str) -> None:
    """Delete a schedule and its actions.

    Locks the actions before the schedule: `settle` and `observe` update an action and then
    its schedule, so taking them the other way round here would deadlock against them.
    """
    session.execute(
        select(ActionRow.id).where(ActionRow.schedule_id == schedule_id).with_for_update()
    )
    row = get_schedule(session, schedule_id, lock=True)
    session.execute(delete(ActionRow).where(ActionRow.schedule_id == row.id))
    session.delete(row)


def _locked(query: Any, session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query  # SQLite: the transaction already holds the database's write lock


def _fire(row: ScheduleRow, action: ActionRow, *, released: bool = False) -> Fire:
    return Fire(
        action_id=action.id,
        schedule_id=row.id,
        job_id=row.job_id,
        parameters=dict(row.parameters),
        overlap=Overlap(row.overlap),
        nominal=as_utc(action.nominal_time) or action.nominal_time,
        request_id=action.request_id,
        last_run_id=row.last_run_id,
        released=released,
    )


def _in_flight(session: Session, schedule_id: str, now: datetime) -> bool:
    """Whether a fire of the schedule is being carried out under a live lease."""
    return (
        session.scalar(
            select(ActionRow.id)
            .where(
                ActionRow.schedule_id == schedule_id,
                ActionRow.outcome == Outcome.PENDING.value,
                ActionRow.lease_until >= now,
            )
            .limit(1)
        )
        is not None
    )


@dataclass(frozen=True)
class Claimed:
    """Fires to carry out, and how many due schedules wait for an earlier fire to settle."""

    fires: list[Fire]
    deferred: int


def claim_due(
    session: Session, *, now: datetime, lease_s: float, limit: int, taken_by: str = ""
) -> Claimed:
    """Lock due schedules, record their fires (catch-up applied) and advance next_run_at.

    A schedule whose overlap policy looks at the previous run is not claimed while another
    fire of it is still being carried out (by any instance), so its overlap decisions are made
    one after another, each seeing the run the one before started.
    """
    rows = list(
        session.scalars(
            _locked(
                select(ScheduleRow)
                .where(ScheduleRow.paused.is_(False), ScheduleRow.next_due_at <= now)
                .order_by(ScheduleRow.next_due_at)
                .limit(limit),
                session,
            )
        )
    )
    fires: list[Fire] = []
    deferred = 0
    for row in rows:
        if row.overlap != Overlap.ALLOW_ALL.value and _in_flight(session, row.id, now):
            deferred += 1
            continue
        due: list[tuple[datetime, datetime]] = []
        while (
            row.next_due_at is not None
            and row.next_run_at is not None
            and as_utc(row.next_due_at) <= now  # type: ignore[operator]
            and len(due) < MAX_FIRES_PER_CLAIM
        ):
            nominal = as_utc(row.next_run_at) or row.next_run_at
            due.append((nominal, as_utc(row.next_due_at) or row.next_due_at))
            set_next(row, nominal)
        planned = policies.plan_catchup(
            due,
            now=now,
            window_s=row.catchup_window_s,
            mode=CatchupMode(row.catchup_mode),
        )
        window_start = now - timedelta(seconds=row.catchup_window_s)
        resume_at = as_utc(row.next_run_at)
        if resume_at is not None and resume_at < window_start and planned:
            # A long outage: record the first fires, then jump over the rest of the missed ones.
            set_next(row, window_start)
            last = planned[-1]
            planned[-1] = replace(
                last,
                message=f"{last.message}; later fires from {resume_at.isoformat()} up to "
                f"{window_start.isoformat()} were missed too (not recorded one by one)",
            )
        for plan in planned:
            action = ActionRow(
                schedule_id=row.id,
                nominal_time=plan.nominal,
                due_time=plan.due,
                taken_at=now,
                taken_by=taken_by,
                manual=False,
                outcome=plan.outcome.value,
                message=plan.message,
                request_id=fire_request_id(row.id, plan.nominal),
                lease_until=now + timedelta(seconds=lease_s)
                if plan.outcome == Outcome.PENDING
                else None,
            )
            session.add(action)
            session.flush()
            if plan.outcome == Outcome.PENDING:
                fires.append(_fire(row, action))
    return Claimed(fires, deferred)


def add_manual_fire(
    session: Session, schedule_id: str, *, now: datetime, request_id: str, lease_s: float
) -> tuple[Fire | None, ActionRow]:
    """Record a TriggerSchedule fire; a known request id returns the earlier action instead."""
    row = get_schedule(session, schedule_id, lock=True)
    key = f"{row.id}:trigger:{request_id or now.isoformat()}"
    prior = session.scalar(
        select(ActionRow).where(ActionRow.schedule_id == row.id, ActionRow.request_id == key)
    )
    if prior is not None:
        return None, prior
    action = ActionRow(
        schedule_id=row.id,
        nominal_time=now,
        due_time=now,
        taken_at=now,
        taken_by="",
        manual=True,
        outcome=Outcome.PENDING.value,
        message="",
        request_id=key,
        lease_until=now + timedelta(seconds=lease_s),
    )
    session.add(action)
    session.flush()
    return _fire(row, action), action


def claim_expired(
    session: Session, *, now: datetime, lease_s: float, limit: int, give_up_before: datetime
) -> list[Fire]:
    """Take over PENDING actions whose scheduler died; fires due before give_up_before fail."""
    actions = list(
        session.scalars(
            _locked(
                select(ActionRow)
                .where(ActionRow.outcome == Outcome.PENDING.value, ActionRow.lease_until < now)
                .order_by(ActionRow.lease_until)
                .limit(limit),
                session,
            )
        )
    )
    fires = []
    for action in actions:
        row = session.get(ScheduleRow, action.schedule_id)
        if row is None:
            continue
        if (as_utc(action.due_time) or action.due_time) < give_up_before:
            action.outcome = Outcome.ERROR.value
            action.message = "the run could not be started in time (executor unreachable)"
            action.lease_until = None
            continue
        action.lease_until = now + timedelta(seconds=lease_s)
        fires.append(_fire(row, action))
    return fires


def buffered_counts(session: Session, schedule_id: str) -> int:
    """How many fires of a schedule wait behind its running run."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ActionRow)
            .where(
                ActionRow.schedule_id == schedule_id,
                ActionRow.outcome == Outcome.BUFFERED.value,
            )
        )
        or 0
    )


def schedules_with_buffer(session: Session, *, limit: int) -> list[tuple[str, str | None]]:
    """(schedule id, last run id) of schedules that have waiting fires."""
    rows = session.execute(
        select(ScheduleRow.id, ScheduleRow.last_run_id)
        .where(
            ScheduleRow.id.in_(
                select(ActionRow.schedule_id).where(ActionRow.outcome == Outcome.BUFFERED.value)
            )
        )
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


def release_oldest_buffered(
    session: Session, schedule_id: str, *, now: datetime, lease_s: float
) -> Fire | None:
    """Turn the oldest waiting fire of a schedule into a leased PENDING one."""
    action = session.scalar(
        _locked(
            select(ActionRow)
            .where(
                ActionRow.schedule_id == schedule_id,
                ActionRow.outcome == Outcome.BUFFERED.value,
            )
            .order_by(ActionRow.nominal_time)
            .limit(1),
            session,
        )
    )
    row = session.get(ScheduleRow, schedule_id)
    if action is None or row is None:
        return None
    action.outcome = Outcome.PENDING.value
    action.lease_until = now + timedelta(seconds=lease_s)
    return _fire(row, action, released=True)


def settle(
    session: Session,
    action_id: int,
    *,
    outcome: Outcome,
    message: str = "",
    run_id: str | None = None,
    run_state: str | None = None,
    taken_by: str = "",
) -> ActionRow | None:
    """Record what came of a fire; a started run becomes the schedule's last run."""
    action = session.get(ActionRow, action_id)
    if action is None:
        return None  # the schedule was deleted meanwhile
    action.outcome = outcome.value
    action.taken_by = taken_by
    action.message = message
    action.lease_until = None
    if run_id:
        action.run_id = run_id
        action.run_state = run_state
        row = session.get(ScheduleRow, action.schedule_id)
        if row is not None:
            row.last_run_id = run_id
    return action


def to_observe(session: Session, *, now: datetime, limit: int) -> list[tuple[int, str]]:
    """(action id, run id) of recent started runs whose end is not known yet."""
    rows = session.execute(
        select(ActionRow.id, ActionRow.run_id)
        .where(
            ActionRow.outcome == Outcome.STARTED.value,
            ActionRow.run_id.is_not(None),
            ActionRow.taken_at > now - OBSERVE_HORIZON,
            # A run's first step start is known by the time it has ended (if it ever started).
            ActionRow.run_state.not_in(sorted(policies.TERMINAL_RUN_STATES))
            | ActionRow.run_state.is_(None),
        )
        .order_by(ActionRow.nominal_time)
        .limit(limit)
    )
    return [(r[0], str(r[1])) for r in rows]


def observe(
    session: Session,
    action_id: int,
    *,
    run_state: str,
    first_step_at: datetime | None,
    now: datetime,
) -> str | None:
    """Record a run's state and first step start; returns a pause note if failures pause it."""
    action = session.get(ActionRow, action_id)
    if action is None:
        return None
    was_terminal = action.run_state in policies.TERMINAL_RUN_STATES
    action.run_state = run_state
    if first_step_at is not None and action.lag_s is None:
        action.first_step_at = first_step_at
        nominal = as_utc(action.nominal_time) or action.nominal_time
        action.lag_s = (first_step_at - nominal).total_seconds()
        observe_schedule_lag(max(action.lag_s, 0.0))
    if was_terminal or run_state not in policies.TERMINAL_RUN_STATES:
        return None
    row = get_schedule(session, action.schedule_id, lock=True)
    states = session.scalars(
        select(ActionRow.run_state)
        .where(
            ActionRow.schedule_id == row.id,
            ActionRow.run_state.in_(sorted(policies.TERMINAL_RUN_STATES)),
        )
        .order_by(ActionRow.nominal_time.desc())
        .limit(policies.MAX_PAUSE_AFTER + 1)
    )
    row.consecutive_failures = policies.consecutive_failures(s or "" for s in states)
    if row.paused or not policies.should_pause(row.consecutive_failures, row.pause_after_failures):
        return None
    row.paused = True
    row.note = f"paused after {row.consecutive_failures} consecutive failed runs"
    row.updated_at = now
    return row.note


def list_actions(
    session: Session, schedule_id: str, *, page_size: int, page_token: str
) -> tuple[list[ActionRow], str]:
    """A schedule's actions, newest nominal time first."""
    get_schedule(session, schedule_id)
    scope = ("actions", schedule_id)
    after = decode_token(page_token, scope=scope)
    query = (
        select(ActionRow)
        .where(ActionRow.schedule_id == schedule_id)
        .order_by(ActionRow.nominal_time.desc(), ActionRow.id.desc())
        .limit(page_size + 1)
    )
    if after:
        when_s, _, last_id = after.partition("|")
        when = _token_time(when_s)
        if not last_id.isdigit():
            raise bad_token()
        query = query.where(
            (ActionRow.nominal_time < when)
            | ((ActionRow.nominal_time == when) & (ActionRow.id < int(last_id)))
        )
    rows = list(session.scalars(query))
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        nominal = as_utc(last.nominal_time) or last.nominal_time
        token = encode_token(f"{nominal.isoformat()}|{last.id}", scope=scope)
    return rows[:page_size], token


def next_due(session: Session) -> datetime | None:
    """The earliest due time of any running schedule."""
    value = session.scalar(
        select(func.min(ScheduleRow.next_due_at)).where(ScheduleRow.paused.is_(False))
    )
    return as_utc(value)
