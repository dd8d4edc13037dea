"""EventHistoryService: a run's events and run-feed entries, deleted, exported and imported.

The monitor owns what it serves to watchers: the run events (`run_events`) and the global
run feed (`run_feed`). Retention asks it to delete a run's rows after the executor deleted
the run; export pages through them in sequence order; import skips what exists, so it is
idempotent (an event by its run and sequence, a feed entry by its position).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from conveyor.kernel import rows
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.feed import RunFeedRow
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.outbox import RunEventRow
from conveyor.kernel.paging import bad_token, decode_token, encode_token
from conveyor.monitor.v1 import event_history_service_pb2, event_history_service_pb2_grpc

SERVICE_NAME = event_history_service_pb2.DESCRIPTOR.services_by_name[
    "EventHistoryService"
].full_name
MAX_RUNS = 100
PAGE_ROWS = 1000
PAGE_BYTES = 4 * 1024 * 1024
MAX_IMPORT = 100_000
_EVENTS: Table = RunEventRow.__table__  # type: ignore[assignment]
_FEED: Table = RunFeedRow.__table__  # type: ignore[assignment]


def purge(session: Session, run_ids: Sequence[str]) -> int:
    """Delete the events and feed entries of the runs; the number of rows deleted."""
    done = 0
    for stmt in (
        delete(RunEventRow).where(RunEventRow.run_id.in_(run_ids)),
        delete(RunFeedRow).where(RunFeedRow.run_id.in_(run_ids)),
    ):
        done += int(getattr(session.execute(stmt), "rowcount", 0) or 0)
    return done


def export(session: Session, run_id: str, page_token: str) -> tuple[list[str], str]:
    """One page of a run's records: its feed entries first, then events by sequence."""
    scope = ("events", run_id)
    after = decode_token(page_token, scope=scope)
    try:
        last = int(after) if after else 0
    except ValueError as exc:
        raise bad_token() from exc
    records: list[str] = []
    if last == 0:
        feed = session.scalars(
            select(RunFeedRow).where(RunFeedRow.run_id == run_id).order_by(RunFeedRow.position)
        )
        records += [rows.dump(_FEED, f) for f in feed]
    events = session.scalars(
        select(RunEventRow)
        .where(RunEventRow.run_id == run_id, RunEventRow.sequence > last)
        .order_by(RunEventRow.sequence)
        .limit(PAGE_ROWS)
    ).all()
    size = 0
    token = ""
    for index, event in enumerate(events):
        text = rows.dump(_EVENTS, event)
        records.append(text)
        size += len(text)
        if size >= PAGE_BYTES or index == PAGE_ROWS - 1:
            token = encode_token(str(event.sequence), scope=scope)
            break
    return records, token


def import_records(session: Session, records: Sequence[str]) -> tuple[int, int]:
    """Insert the events and feed entries that are not there yet; (imported, skipped)."""
    parsed = rows.load(records, [_EVENTS, _FEED])
    imported = skipped = 0
    for table, values in parsed:
        exists: object | None
        if table is _EVENTS:
            exists = session.scalar(
                select(RunEventRow.id).where(
                    RunEventRow.run_id == values.get("run_id"),
                    RunEventRow.sequence == values.get("sequence"),
                )
            )
            values = {k: v for k, v in values.items() if k != "id"}
        else:
            exists = session.get(RunFeedRow, values.get("position"))
        if exists is not None:
            skipped += 1
            continue
        session.execute(insert(table).values(**values))
        imported += 1
    return imported, skipped


def _check_runs(run_ids: Sequence[str]) -> list[str]:
    ids = list(run_ids)
    if not ids or len(ids) > MAX_RUNS:
        raise InvalidArgument(
            f"run_ids must hold 1 to {MAX_RUNS} ids",
            violations=[Violation("run_ids", f"got {len(ids)}", "OUT_OF_RANGE")],
        )
    return ids


class EventHistoryServicer(event_history_service_pb2_grpc.EventHistoryServiceServicer):  # type: ignore[misc]
    """See the proto."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _tx(self, fn: Any, *args: Any) -> Any:
        with self._db.transaction() as session:
            return fn(session, *args)

    def _read(self, fn: Any, *args: Any) -> Any:
        with self._db.read() as session:
            return fn(session, *args)

    @map_errors
    async def PurgeRunEvents(  # noqa: N802
        self,
        request: event_history_service_pb2.PurgeRunEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> event_history_service_pb2.PurgeRunEventsResponse:
        """See the proto."""
        deleted = await asyncio.to_thread(self._tx, purge, _check_runs(request.run_ids))
        return event_history_service_pb2.PurgeRunEventsResponse(deleted=deleted)

    @map_errors
    async def ExportRunEvents(  # noqa: N802
        self,
        request: event_history_service_pb2.ExportRunEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> event_history_service_pb2.ExportRunEventsResponse:
        """See the proto."""
        if not request.run_id:
            raise InvalidArgument(
                "run_id is required", violations=[Violation("run_id", "empty", "REQUIRED")]
            )
        records, token = await asyncio.to_thread(
            self._read, export, request.run_id, request.page_token
        )
        return event_history_service_pb2.ExportRunEventsResponse(
            records=records, next_page_token=token
        )

    @map_errors
    async def ImportRunEvents(  # noqa: N802
        self,
        request: event_history_service_pb2.ImportRunEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> event_history_service_pb2.ImportRunEventsResponse:
        """See the proto."""
        if len(request.records) > MAX_IMPORT:
            raise InvalidArgument(
                f"at most {MAX_IMPORT} records per call",
                violations=[Violation("records", "too many", "OUT_OF_RANGE")],
            )
        imported, skipped = await asyncio.to_thread(self._tx, import_records, list(request.records))
        return event_history_service_pb2.ImportRunEventsResponse(imported=imported, skipped=skipped)


def registration(db: Database) -> ServiceRegistration:
    """Register the servicer on a server."""
    servicer = EventHistoryServicer(db)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: event_history_service_pb2_grpc.add_EventHistoryServiceServicer_to_server(
            servicer, server
        ),
    )
