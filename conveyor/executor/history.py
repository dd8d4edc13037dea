"""RunHistoryService: which ended runs a retention rule lets go, deleting them, export/import.

Only ended runs are selected, exported or deleted, so retention never touches running work;
each call handles a bounded batch in one short transaction. Deleting a run removes its
steps and attempts with it; its events belong to the monitor and its artifacts to the
artifact service, which delete their own rows when asked (see `conveyor.artifacts.retention`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from conveyor.executor.engine import TERMINAL_RUN
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.executor.v1 import history_service_pb2, history_service_pb2_grpc
from conveyor.kernel import rows
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.ids import as_utc, utcnow
from conveyor.kernel.paging import bad_token, decode_token, encode_token
from conveyor.kernel.protoconv import timestamp

SERVICE_NAME = history_service_pb2.DESCRIPTOR.services_by_name["RunHistoryService"].full_name
MAX_RULES = 1000
MAX_SELECT = 1000
MAX_RUNS_PER_CALL = 100
MAX_IMPORT_RECORDS = 10_000
_ENDED = [s.value for s in TERMINAL_RUN]
_RUNS: Table = RunRow.__table__  # type: ignore[assignment]
_STEPS: Table = StepRow.__table__  # type: ignore[assignment]
_EXECUTIONS: Table = ExecutionRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Rule:
    """A job's limits: runs older than `max_age`, or beyond the newest `keep_last`, go."""

    job_id: str
    max_age: timedelta | None
    keep_last: int


@dataclass(frozen=True)
class Expired:
    """A run a rule lets go, and which limit it passed."""

    run_id: str
    job_id: str
    created_at: datetime
    reason: str


def _ended_at(row: Any) -> datetime:
    value = as_utc(row.ended_at or row.created_at)
    assert value is not None
    return value


def select_expired(
    session: Session, rules: Sequence[Rule], *, limit: int, now: datetime
) -> list[Expired]:
    """Ended runs past their job's rule (a job's own rule wins over the default), oldest first."""
    by_job = {r.job_id: r for r in rules}
    default = by_job.get("")
    job_ids = list(session.scalars(select(RunRow.job_id).distinct()))
    found: dict[str, Expired] = {}
    for job_id in job_ids:
        rule = by_job.get(job_id, default)
        if rule is None:
            continue
        if rule.max_age is not None:
            cutoff = now - rule.max_age
            old = session.execute(
                select(RunRow.id, RunRow.created_at, RunRow.ended_at)
                .where(RunRow.job_id == job_id, RunRow.state.in_(_ENDED))
                .where(func.coalesce(RunRow.ended_at, RunRow.created_at) < cutoff)
                .order_by(RunRow.created_at)
                .limit(limit)
            ).all()
            for row in old:
                found[row.id] = Expired(row.id, job_id, _ended_at(row), "max_age")
        if rule.keep_last > 0:
            # Every run counts towards the newest N; only ended ones beyond them go.
            beyond = session.execute(
                select(RunRow.id, RunRow.created_at, RunRow.ended_at, RunRow.state)
                .where(RunRow.job_id == job_id)
                .order_by(RunRow.created_at.desc(), RunRow.id.desc())
                .offset(rule.keep_last)
                .limit(limit + rule.keep_last)
            ).all()
            for extra in beyond:
                if extra.state in _ENDED and extra.id not in found:
                    found[extra.id] = Expired(extra.id, job_id, _ended_at(extra), "keep_last")
    return sorted(found.values(), key=lambda e: (e.created_at, e.run_id))[:limit]


def purge_runs(session: Session, run_ids: Sequence[str]) -> list[str]:
    """Delete ended runs with their steps and attempts; returns the ids deleted."""
    ended = list(
        session.scalars(select(RunRow.id).where(RunRow.id.in_(run_ids), RunRow.state.in_(_ENDED)))
    )
    if ended:
        session.execute(delete(ExecutionRow).where(ExecutionRow.run_id.in_(ended)))
        session.execute(delete(StepRow).where(StepRow.run_id.in_(ended)))
        session.execute(delete(RunRow).where(RunRow.id.in_(ended)))
    return ended


def export_runs(
    session: Session,
    *,
    job_id: str,
    since: datetime | None,
    run_ids: Sequence[str],
    page_size: int,
    page_token: str,
) -> tuple[list[str], list[str], str]:
    """(records, run ids, next token) of one page of ended runs, oldest first."""
    query = select(RunRow).where(RunRow.state.in_(_ENDED))
    if job_id:
        query = query.where(RunRow.job_id == job_id)
    if since is not None:
        query = query.where(RunRow.created_at >= since)
    if run_ids:
        query = query.where(RunRow.id.in_(run_ids))
    scope = ("export", job_id, since.isoformat() if since else "", sorted(run_ids))
    after = decode_token(page_token, scope=scope)
    if after:
        stamp, _, last = after.partition("|")
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError as exc:
            raise bad_token() from exc
        query = query.where(
            (RunRow.created_at > when) | ((RunRow.created_at == when) & (RunRow.id > last))
        )
    runs = session.scalars(query.order_by(RunRow.created_at, RunRow.id).limit(page_size + 1)).all()
    page = runs[:page_size]
    ids = [r.id for r in page]
    records = [rows.dump(_RUNS, r) for r in page]
    if ids:
        steps = session.scalars(select(StepRow).where(StepRow.run_id.in_(ids)).order_by(StepRow.id))
        records += [rows.dump(_STEPS, s) for s in steps]
        executions = session.scalars(
            select(ExecutionRow).where(ExecutionRow.run_id.in_(ids)).order_by(ExecutionRow.id)
        )
        records += [rows.dump(_EXECUTIONS, e) for e in executions]
    token = ""
    if len(runs) > page_size:
        last_row = page[-1]
        created = as_utc(last_row.created_at)
        assert created is not None
        token = encode_token(f"{created.isoformat()}|{last_row.id}", scope=scope)
    return records, ids, token


def import_runs(session: Session, records: Sequence[str]) -> tuple[int, int]:
    """Insert the runs of exported records that do not exist; (imported, skipped)."""
    parsed = rows.load(records, [_RUNS, _STEPS, _EXECUTIONS])
    runs = [values for table, values in parsed if table is _RUNS]
    for table, values in parsed:
        if table is not _RUNS and "run_id" not in values:
            raise InvalidArgument(
                f"a {table.name} record has no run_id",
                violations=[Violation("records", "run_id missing", "INVALID_RECORD")],
            )
    ids = [str(v["id"]) for v in runs]
    existing = set(session.scalars(select(RunRow.id).where(RunRow.id.in_(ids)))) if ids else set()
    fresh = {i for i in ids if i not in existing}
    for values in runs:
        if values["id"] in fresh:
            session.execute(insert(_RUNS).values(**values))
    for table, values in parsed:
        if table is not _RUNS and values["run_id"] in fresh:
            # Surrogate ids are the database's own; the natural keys come with the record.
            session.execute(insert(table).values(**{k: v for k, v in values.items() if k != "id"}))
    return len(fresh), len(existing)


def _rule(pb: Any) -> Rule:
    max_age = pb.max_age.ToTimedelta() if pb.HasField("max_age") else None
    if (max_age is not None and max_age < timedelta(0)) or pb.keep_last < 0:
        raise InvalidArgument(
            "max_age and keep_last must not be negative",
            violations=[Violation("rules", "negative limit", "OUT_OF_RANGE")],
        )
    return Rule(job_id=pb.job_id, max_age=max_age, keep_last=pb.keep_last)


def _run_ids(values: Sequence[str], field: str = "run_ids") -> list[str]:
    ids = list(values)
    if not ids or len(ids) > MAX_RUNS_PER_CALL:
        raise InvalidArgument(
            f"{field} must hold 1 to {MAX_RUNS_PER_CALL} ids",
            violations=[Violation(field, f"got {len(ids)}", "OUT_OF_RANGE")],
        )
    return ids


class RunHistoryServicer(history_service_pb2_grpc.RunHistoryServiceServicer):  # type: ignore[misc]
    """See the proto; every call is one short transaction in a thread."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _tx(self, fn: Any, *args: Any, read: bool, **kwargs: Any) -> Any:
        with self._db.read() if read else self._db.transaction() as session:
            return fn(session, *args, **kwargs)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._tx, fn, *args, read=False, **kwargs)

    async def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Like `_call` for a function that only reads (no write lock on SQLite)."""
        return await asyncio.to_thread(self._tx, fn, *args, read=True, **kwargs)

    @map_errors
    async def SelectExpiredRuns(  # noqa: N802
        self,
        request: history_service_pb2.SelectExpiredRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> history_service_pb2.SelectExpiredRunsResponse:
        """See the proto."""
        if len(request.rules) > MAX_RULES:
            raise InvalidArgument(
                f"at most {MAX_RULES} rules",
                violations=[Violation("rules", "too many", "OUT_OF_RANGE")],
            )
        limit = request.limit or 100
        if not 0 < limit <= MAX_SELECT:
            raise InvalidArgument(
                f"limit must be between 1 and {MAX_SELECT}",
                violations=[Violation("limit", f"got {limit}", "OUT_OF_RANGE")],
            )
        rules = [_rule(r) for r in request.rules]
        found: list[Expired] = await self._read(select_expired, rules, limit=limit, now=utcnow())
        return history_service_pb2.SelectExpiredRunsResponse(
            runs=[
                history_service_pb2.ExpiredRun(
                    run_id=e.run_id,
                    job_id=e.job_id,
                    create_time=timestamp(e.created_at),
                    reason=e.reason,
                )
                for e in found
            ]
        )

    @map_errors
    async def PurgeRuns(  # noqa: N802
        self,
        request: history_service_pb2.PurgeRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> history_service_pb2.PurgeRunsResponse:
        """See the proto."""
        deleted = await self._call(purge_runs, _run_ids(request.run_ids))
        return history_service_pb2.PurgeRunsResponse(deleted_run_ids=deleted)

    @map_errors
    async def ExportRuns(  # noqa: N802
        self,
        request: history_service_pb2.ExportRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> history_service_pb2.ExportRunsResponse:
        """See the proto."""
        size = request.page_size or 10
        if not 0 < size <= MAX_RUNS_PER_CALL:
            raise InvalidArgument(
                f"page_size must be between 0 and {MAX_RUNS_PER_CALL}",
                violations=[Violation("page_size", f"got {size}", "OUT_OF_RANGE")],
            )
        if len(request.run_ids) > MAX_RUNS_PER_CALL:
            raise InvalidArgument(
                f"at most {MAX_RUNS_PER_CALL} run_ids",
                violations=[Violation("run_ids", "too many", "OUT_OF_RANGE")],
            )
        records, ids, token = await self._read(
            export_runs,
            job_id=request.job_id,
            since=request.since.ToDatetime().replace(tzinfo=utcnow().tzinfo)
            if request.HasField("since")
            else None,
            run_ids=list(request.run_ids),
            page_size=size,
            page_token=request.page_token,
        )
        return history_service_pb2.ExportRunsResponse(
            records=records, run_ids=ids, next_page_token=token
        )

    @map_errors
    async def ImportRuns(  # noqa: N802
        self,
        request: history_service_pb2.ImportRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> history_service_pb2.ImportRunsResponse:
        """See the proto."""
        if len(request.records) > MAX_IMPORT_RECORDS:
            raise InvalidArgument(
                f"at most {MAX_IMPORT_RECORDS} records per call",
                violations=[Violation("records", "too many", "OUT_OF_RANGE")],
            )
        imported, skipped = await self._call(import_runs, list(request.records))
        return history_service_pb2.ImportRunsResponse(imported_runs=imported, skipped_runs=skipped)


def registration(db: Database) -> ServiceRegistration:
    """Register the servicer on a server."""
    servicer = RunHistoryServicer(db)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: history_service_pb2_grpc.add_RunHistoryServiceServicer_to_server(
            servicer, server
        ),
    )
