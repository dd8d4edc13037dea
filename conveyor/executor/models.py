"""Tables owned by the executor: job_runs, job_run_steps, job_executions."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
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
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.kernel.db import Base
from conveyor.translator.v1 import translator_pb2
from conveyor.translator.wire import plan_from_pb, plan_to_pb

_ID = BigInteger().with_variant(Integer, "sqlite")


PLAN_CACHE_SIZE = 256
_PLANS: OrderedDict[str, dict[str, Any]] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def _remember_plan(run_id: str, plan: dict[str, Any]) -> None:
    with _PLANS_LOCK:
        _PLANS[run_id] = plan
        _PLANS.move_to_end(run_id)
        while len(_PLANS) > PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)


# Decoded plans by their serialized bytes: the runs of one job version share one plan, so a
# process decodes it once, not once per run (bounded by count and by bytes held).
DECODED_CACHE_SIZE = 64
DECODED_CACHE_BYTES = 64 << 20
_DECODED: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
_decoded_bytes = 0


def decoded_plan(plan_pb: bytes) -> dict[str, Any]:
    """The plain-data plan of a serialized `Plan`, decoded once per process per content.

    The result is shared: callers read it and never change it."""
    global _decoded_bytes
    with _PLANS_LOCK:
        hit = _DECODED.get(plan_pb)
        if hit is not None:
            _DECODED.move_to_end(plan_pb)
            return hit
    plan = plan_from_pb(translator_pb2.Plan.FromString(plan_pb))
    if len(plan_pb) > DECODED_CACHE_BYTES // 4:
        return plan
    with _PLANS_LOCK:
        if plan_pb not in _DECODED:
            _DECODED[plan_pb] = plan
            _decoded_bytes += len(plan_pb)
        while len(_DECODED) > DECODED_CACHE_SIZE or _decoded_bytes > DECODED_CACHE_BYTES:
            old, _ = _DECODED.popitem(last=False)
            _decoded_bytes -= len(old)
    return plan


def forget_plans() -> None:
    """Drop every plan this process keeps decoded (a process starting afresh)."""
    global _decoded_bytes
    with _PLANS_LOCK:
        _PLANS.clear()
        _DECODED.clear()
        _decoded_bytes = 0


def cached_plan(run_id: str) -> dict[str, Any] | None:
    """The plan of a run if this process has it in memory (claiming a step puts it there)."""
    with _PLANS_LOCK:
        return _PLANS.get(run_id)


class RunRow(Base):
    """One execution of a job, with its own snapshot of the plan."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_created", "job_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    job_name: Mapped[str] = mapped_column(String(200))
    job_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The plan snapshot, as the translator's typed message (conveyor.translator.v1.Plan)
    # serialized; runs made before it was stored so keep their plan as JSON in plan_data.
    # The snapshot never changes after the run is created, so each process keeps recent
    # plans decoded in memory (`plan` below) and the hot path can skip loading these columns.
    plan_pb: Mapped[bytes | None] = mapped_column(LargeBinary)
    plan_data: Mapped[dict[str, Any] | None] = mapped_column("plan", JSON(none_as_null=True))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    error_message: Mapped[str] = mapped_column(Text, default="")
    event_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A sub-workflow run points at the run and step that started it.
    parent_run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    retry_of: Mapped[str | None] = mapped_column(String(32))
    started_by: Mapped[str | None] = mapped_column(String(100))
    parent_node_id: Mapped[str | None] = mapped_column(String(64))

    @property
    def plan(self) -> dict[str, Any]:
        """The run's compiled plan (immutable), from the process cache when it is there."""
        cached = _PLANS.get(self.id)
        if cached is None:
            if self.plan_pb is not None:
                cached = decoded_plan(self.plan_pb)
            elif self.plan_data is not None:
                cached = self.plan_data
            else:
                raise ValueError(f"run {self.id!r} has no stored plan")
            _remember_plan(self.id, cached)
        return cached

    def keep_plan(self, plan: dict[str, Any], plan_pb: bytes | None = None) -> None:
        """Store the plan (typed; `plan_pb` when the caller has it serialized already) and
        keep its decoded form in this process's cache."""
        self.plan_pb = plan_pb if plan_pb is not None else plan_to_pb(plan).SerializeToString()
        self.plan_data = None
        _remember_plan(self.id, plan)


class StepRow(Base):
    """The state of one node within a run."""

    __tablename__ = "job_run_steps"
    __table_args__ = (UniqueConstraint("run_id", "node_id", name="uq_job_run_steps_run_node"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(64))
    node_type: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    queue: Mapped[str] = mapped_column(String(128), default="default")
    handle: Mapped[str | None] = mapped_column(String(200))
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_category: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str] = mapped_column(Text, default="")
    skip_reason: Mapped[str] = mapped_column(String(200), default="")
    failure_handled: Mapped[bool] = mapped_column(Boolean, default=False)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the sweeper acts on a WAITING step: a retry's due time, or an approval's deadline.
    wake_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # The run a sub-workflow step started.
    child_run_id: Mapped[str | None] = mapped_column(String(32))


class ExecutionRow(Base):
    """One attempt at a step: where and how it ran, and how it ended."""

    __tablename__ = "job_executions"
    __table_args__ = (
        UniqueConstraint("run_id", "node_id", "attempt", name="uq_job_executions_attempt"),
        # The liveness sweep (every second) reads only the running attempts.
        Index(
            "ix_job_executions_running",
            "heartbeat_at",
            postgresql_where=text("state = 'RUNNING'"),
            sqlite_where=text("state = 'RUNNING'"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str] = mapped_column(String(255), default="")
    queue: Mapped[str] = mapped_column(String(128), default="")
    task_id: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wall_s: Mapped[float | None] = mapped_column(Float)
    cpu_user_s: Mapped[float | None] = mapped_column(Float)
    cpu_system_s: Mapped[float | None] = mapped_column(Float)
    max_rss_kb: Mapped[int | None] = mapped_column(BigInteger)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error_category: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str] = mapped_column(Text, default="")
    trace_id: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # The node's data as the attempt rendered it: JSON text, secrets masked, bounded.
    rendered_inputs: Mapped[str | None] = mapped_column(Text)
