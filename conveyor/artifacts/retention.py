"""Retention: policies (table `retention_policies`) and the sweep that applies them.

Each service deletes its own rows; the artifact service, which holds the policies,
coordinates over RPC. For a batch of expired runs the order is:

1. note the runs in `retention_pending` (so a sweep that dies is finished by the next one),
2. archive each run whose policy says so (JSON Lines, an ARCHIVE artifact),
3. the executor deletes the runs with their steps and attempts (`PurgeRuns`; ended runs
   only, so running work is never touched),
4. the monitor deletes their events and feed entries (`PurgeRunEvents`),
5. this service deletes their artifacts (row marked, object deleted, row deleted),
6. the pending rows go.

No step row is left pointing at a deleted artifact (steps go before their artifacts), and no
object is left without a row (a row is deleted only after its object). Every step is
idempotent, batches are bounded, and each call is a short transaction.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import structlog
from google.protobuf import duration_pb2
from sqlalchemy import Boolean, DateTime, Float, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.artifacts import store
from conveyor.artifacts.domain import Kind, State
from conveyor.executor.v1 import history_service_pb2, history_service_pb2_grpc
from conveyor.kernel import rows
from conveyor.kernel.db import Base
from conveyor.kernel.errors import InvalidArgument, NotFound, Unavailable, Violation
from conveyor.kernel.grpcserver import channel
from conveyor.kernel.ids import as_utc, utcnow
from conveyor.monitor.v1 import event_history_service_pb2, event_history_service_pb2_grpc

log = structlog.get_logger(__name__)

MAX_AGE = timedelta(days=365 * 100)
MAX_KEEP = 1_000_000
BATCH = 100
MAX_SWEEP = 1000


class PolicyRow(Base):
    """One job's retention policy; job_id '' is the default (table retention_policies)."""

    __tablename__ = "retention_policies"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    keep_runs_for_s: Mapped[float | None] = mapped_column(Float)
    keep_last_runs: Mapped[int] = mapped_column(Integer, default=0)
    keep_artifacts_for_s: Mapped[float | None] = mapped_column(Float)
    archive: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingRow(Base):
    """A run whose deletion started (table retention_pending)."""

    __tablename__ = "retention_pending"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Policy:
    """A retention policy."""

    job_id: str
    keep_runs_for: timedelta | None
    keep_last_runs: int
    keep_artifacts_for: timedelta | None
    archive: bool
    updated_at: datetime


def _policy(row: PolicyRow) -> Policy:
    updated = as_utc(row.updated_at)
    assert updated is not None
    return Policy(
        job_id=row.job_id,
        keep_runs_for=None
        if row.keep_runs_for_s is None
        else timedelta(seconds=row.keep_runs_for_s),
        keep_last_runs=row.keep_last_runs,
        keep_artifacts_for=None
        if row.keep_artifacts_for_s is None
        else timedelta(seconds=row.keep_artifacts_for_s),
        archive=row.archive,
        updated_at=updated,
    )


def check_policy(policy: Policy) -> None:
    """Bounds of a policy; per-job artifact ages are not supported (see docs)."""
    problems: list[Violation] = []
    for name, span in (
        ("keep_runs_for", policy.keep_runs_for),
        ("keep_artifacts_for", policy.keep_artifacts_for),
    ):
        if span is not None and not timedelta(0) < span <= MAX_AGE:
            problems.append(Violation(f"policy.{name}", "must be positive, at most 100 years"))
    if not 0 <= policy.keep_last_runs <= MAX_KEEP:
        problems.append(Violation("policy.keep_last_runs", f"must be 0 to {MAX_KEEP}"))
    if policy.job_id and policy.keep_artifacts_for is not None:
        problems.append(
            Violation("policy.keep_artifacts_for", "is only supported on the default policy")
        )
    if len(policy.job_id) > 32:
        problems.append(Violation("policy.job_id", "is longer than 32 characters"))
    if problems:
        raise InvalidArgument(
            f"retention policy is invalid: {problems[0].field} {problems[0].description}",
            violations=problems,
        )


def set_policy(session: Session, policy: Policy) -> Policy:
    """Insert or replace a policy."""
    check_policy(policy)
    row = session.get(PolicyRow, policy.job_id) or PolicyRow(job_id=policy.job_id)
    row.keep_runs_for_s = policy.keep_runs_for.total_seconds() if policy.keep_runs_for else None
    row.keep_last_runs = policy.keep_last_runs
    row.keep_artifacts_for_s = (
        policy.keep_artifacts_for.total_seconds() if policy.keep_artifacts_for else None
    )
    row.archive = policy.archive
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return _policy(row)


def list_policies(session: Session) -> list[Policy]:
    """Every policy, the default first."""
    return [_policy(r) for r in session.scalars(select(PolicyRow).order_by(PolicyRow.job_id))]


def delete_policy(session: Session, job_id: str) -> None:
    """Remove a policy; NOT_FOUND when there is none."""
    row = session.get(PolicyRow, job_id)
    if row is None:
        raise NotFound(f"no retention policy for job {job_id[:40]!r}")
    session.delete(row)


def add_pending(session: Session, run_ids: Sequence[str]) -> None:
    """Note that the deletion of these runs started."""
    for run_id in run_ids:
        if session.get(PendingRow, run_id) is None:
            session.add(PendingRow(run_id=run_id, created_at=utcnow()))


def pending(session: Session, *, limit: int) -> list[str]:
    """Runs whose deletion a previous sweep did not finish."""
    return list(
        session.scalars(select(PendingRow.run_id).order_by(PendingRow.created_at).limit(limit))
    )


def clear_pending(session: Session, run_ids: Sequence[str]) -> None:
    """The deletion of these runs is complete."""
    session.execute(delete(PendingRow).where(PendingRow.run_id.in_(list(run_ids))))


def aged_artifacts(session: Session, *, older_than: timedelta, limit: int) -> list[str]:
    """Ids of complete non-archive artifacts created before now - older_than."""
    cutoff = utcnow() - older_than
    return list(
        session.scalars(
            select(store.ArtifactRow.id)
            .where(
                store.ArtifactRow.created_at < cutoff,
                store.ArtifactRow.state == State.COMPLETE.value,
                store.ArtifactRow.kind != Kind.ARCHIVE.value,
            )
            .limit(limit)
        )
    )


def artifact_records(session: Session, run_ids: Sequence[str]) -> list[str]:
    """The artifact rows of runs as JSON records (for an archive)."""
    table: Any = store.ArtifactRow.__table__
    found = session.scalars(
        select(store.ArtifactRow).where(store.ArtifactRow.run_id.in_(list(run_ids)))
    )
    return [rows.dump(table, r) for r in found]


def _duration(span: timedelta | None) -> duration_pb2.Duration | None:
    if span is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(span)
    return d


@dataclass
class SweepResult:
    """What a sweep deleted (or would)."""

    run_ids: list[str]
    artifacts: int
    archived: int
    dry_run: bool


class Sweeper:
    """Applies the policies through the executor's and monitor's history services."""

    def __init__(self, servicer: Any, *, executor_addr: str, monitor_addr: str) -> None:
        self._svc = servicer
        self._executor = channel(executor_addr)
        self._monitor = channel(monitor_addr)
        self._runs = history_service_pb2_grpc.RunHistoryServiceStub(self._executor)
        self._events = event_history_service_pb2_grpc.EventHistoryServiceStub(self._monitor)

    async def close(self) -> None:
        """Close the channels."""
        await self._executor.close()
        await self._monitor.close()

    async def sweep(self, *, dry_run: bool, limit: int) -> SweepResult:
        """One pass: unfinished deletions first, then expired runs, then aged artifacts."""
        policies: list[Policy] = await self._svc._read(list_policies)
        by_job = {p.job_id: p for p in policies}
        result = SweepResult(run_ids=[], artifacts=0, archived=0, dry_run=dry_run)
        try:
            if not dry_run:
                left: list[str] = await self._svc._read(pending, limit=limit)
                if left:
                    await self._delete_runs(left, by_job, result, archive=False)
            rules = [
                history_service_pb2.RetentionRule(
                    job_id=p.job_id,
                    max_age=_duration(p.keep_runs_for),
                    keep_last=p.keep_last_runs,
                )
                for p in policies
                if p.keep_runs_for is not None or p.keep_last_runs
            ]
            if rules:
                reply = await self._runs.SelectExpiredRuns(
                    history_service_pb2.SelectExpiredRunsRequest(rules=rules, limit=limit),
                    timeout=60,
                )
                expired = [r.run_id for r in reply.runs if r.run_id not in result.run_ids]
                if dry_run:
                    result.run_ids += expired
                    ids = await self._svc._read(store.run_artifact_ids, expired, limit=1_000_000)
                    result.artifacts += len(ids)
                else:
                    for start in range(0, len(expired), BATCH):
                        await self._delete_runs(
                            expired[start : start + BATCH], by_job, result, archive=True
                        )
        except grpc.aio.AioRpcError as err:
            raise Unavailable(
                f"retention sweep stopped: {err.code().name}: {err.details()}"
            ) from err
        default = by_job.get("")
        if default is not None and default.keep_artifacts_for is not None:
            aged = await self._svc._read(
                aged_artifacts, older_than=default.keep_artifacts_for, limit=limit
            )
            result.artifacts += len(aged) if dry_run else await self._svc.delete_ids(aged)
        return result

    async def _delete_runs(
        self,
        run_ids: list[str],
        by_job: dict[str, Policy],
        result: SweepResult,
        *,
        archive: bool,
    ) -> None:
        await self._svc._call(add_pending, run_ids)
        if archive:
            result.archived += await self._archive(run_ids, by_job)
        purged = await self._runs.PurgeRuns(
            history_service_pb2.PurgeRunsRequest(run_ids=run_ids), timeout=60
        )
        await self._events.PurgeRunEvents(
            event_history_service_pb2.PurgeRunEventsRequest(run_ids=run_ids), timeout=60
        )
        while True:
            ids = await self._svc._read(store.run_artifact_ids, run_ids, limit=500)
            if not ids:
                break
            result.artifacts += await self._svc.delete_ids(ids)
        await self._svc._call(clear_pending, run_ids)
        result.run_ids += list(purged.deleted_run_ids)
        log.info("retention deleted runs", runs=len(purged.deleted_run_ids))

    async def _archive_lines(self, run_id: str, first: list[str]) -> AsyncIterator[bytes]:
        """A run's archive, page by page: executor records, events, artifact rows."""
        yield "".join(f"{line}\n" for line in first).encode()
        token = ""
        while True:
            events = await self._events.ExportRunEvents(
                event_history_service_pb2.ExportRunEventsRequest(run_id=run_id, page_token=token),
                timeout=60,
            )
            yield "".join(f"{line}\n" for line in events.records).encode()
            token = events.next_page_token
            if not token:
                break
        artifacts = await self._svc._read(artifact_records, [run_id])
        yield "".join(f"{line}\n" for line in artifacts).encode()

    async def _archive(self, run_ids: list[str], by_job: dict[str, Policy]) -> int:
        """Write each run's full record as an ARCHIVE artifact when its policy asks."""
        default = by_job.get("")
        done = 0
        for run_id in run_ids:
            page = await self._runs.ExportRuns(
                history_service_pb2.ExportRunsRequest(run_ids=[run_id], page_size=1), timeout=60
            )
            if not page.records:
                continue
            job_id = json.loads(page.records[0])["row"]["job_id"]
            policy = by_job.get(job_id, default)
            if policy is None or not policy.archive:
                continue
            await self._svc.store_bytes(
                run_id=run_id,
                node_id="run",
                kind=Kind.ARCHIVE,
                name="archive.jsonl",
                content_type="application/x-ndjson",
                chunks=self._archive_lines(run_id, list(page.records)),
            )
            done += 1
        return done
