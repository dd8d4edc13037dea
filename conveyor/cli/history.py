"""`conveyor runs export` and `conveyor runs import`: back up and restore run history.

The file is JSON Lines, one table row per line, grouped by run: the run, its steps and
attempts (from the executor), then its feed entries and events (from the monitor). Import
sends each run's rows back to the service that owns them; both skip what exists, so
importing a file twice changes nothing. Artifact objects are not part of the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any

import grpc
import typer
from google.protobuf import timestamp_pb2
from rich.console import Console

from conveyor.cli.artifacts import DEFAULT_ADDR, ServerOpt
from conveyor.cli.artifacts import _fail as fail
from conveyor.cli.client import gateway_channel, resolve_token
from conveyor.executor.v1 import history_service_pb2, history_service_pb2_grpc
from conveyor.monitor.v1 import event_history_service_pb2, event_history_service_pb2_grpc

err = Console(stderr=True)
EXECUTOR_TABLES = frozenset({"job_runs", "job_run_steps", "job_executions"})
MONITOR_TABLES = frozenset({"run_events", "run_feed"})
EVENT_BATCH = 2000
MAX_LINE = 64 * 1024 * 1024


class _Stubs:
    def __init__(self, server: str | None) -> None:
        self.channel = gateway_channel(server or DEFAULT_ADDR, resolve_token())
        self.runs = history_service_pb2_grpc.RunHistoryServiceStub(self.channel)
        self.events = event_history_service_pb2_grpc.EventHistoryServiceStub(self.channel)


def _run_of(line: str) -> tuple[str, str]:
    record = json.loads(line)
    row = record["row"]
    return record["table"], str(row["id"] if record["table"] == "job_runs" else row["run_id"])


def _export_to(stubs: _Stubs, target: IO[str], *, job: str, since: datetime | None) -> int:
    request = history_service_pb2.ExportRunsRequest(job_id=job, page_size=10)
    if since is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(since)
        request.since.CopyFrom(stamp)
    count = 0
    while True:
        page = stubs.runs.ExportRuns(request, timeout=120)
        grouped: dict[str, list[str]] = {run_id: [] for run_id in page.run_ids}
        for line in page.records:
            grouped[_run_of(line)[1]].append(line)
        for run_id, lines in grouped.items():
            target.writelines(f"{line}\n" for line in lines)
            token = ""
            while True:
                events = stubs.events.ExportRunEvents(
                    event_history_service_pb2.ExportRunEventsRequest(
                        run_id=run_id, page_token=token
                    ),
                    timeout=120,
                )
                target.writelines(f"{line}\n" for line in events.records)
                token = events.next_page_token
                if not token:
                    break
            count += 1
        if not page.next_page_token:
            return count
        request.page_token = page.next_page_token


def export_runs(
    output_file: Annotated[Path, typer.Option("-o", "--output-file", help="JSON Lines file.")],
    job: Annotated[str, typer.Option("--job", help="Only runs of this job id.")] = "",
    since: Annotated[
        datetime | None, typer.Option("--since", help="Only runs created at or after (UTC).")
    ] = None,
    server: ServerOpt = None,
) -> None:
    """Export ended runs with their steps, attempts, events and feed entries."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    stubs = _Stubs(server)
    folder = output_file.resolve().parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{output_file.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            count = _export_to(stubs, f, job=job, since=since)
        os.replace(tmp, output_file)
    except grpc.RpcError as exc:
        raise fail(exc) from None
    finally:
        stubs.channel.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    err.print(f"{count} runs exported to {output_file}", markup=False)


def _runs_in(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(executor lines, monitor lines) of each run of the file, in file order."""
    current = ""
    executor: list[str] = []
    monitor: list[str] = []
    with path.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line:
                continue
            if len(line) > MAX_LINE:
                raise ValueError(f"line {number} is longer than {MAX_LINE} bytes")
            try:
                table, run_id = _run_of(line)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"line {number} is not an exported record: {exc}") from exc
            if run_id != current and (executor or monitor):
                yield executor, monitor
                executor, monitor = [], []
            current = run_id
            if table in EXECUTOR_TABLES:
                executor.append(line)
            elif table in MONITOR_TABLES:
                monitor.append(line)
            else:
                raise ValueError(f"line {number}: unknown table {table!r}")
    if executor or monitor:
        yield executor, monitor


def import_runs(
    input_file: Annotated[Path, typer.Argument(help="A file written by `conveyor runs export`.")],
    server: ServerOpt = None,
) -> None:
    """Import exported runs; runs and events that exist are skipped (idempotent)."""
    stubs = _Stubs(server)
    totals: dict[str, Any] = {"imported_runs": 0, "skipped_runs": 0, "events": 0}
    try:
        for executor, monitor in _runs_in(input_file):
            if executor:
                reply = stubs.runs.ImportRuns(
                    history_service_pb2.ImportRunsRequest(records=executor), timeout=120
                )
                totals["imported_runs"] += reply.imported_runs
                totals["skipped_runs"] += reply.skipped_runs
            for start in range(0, len(monitor), EVENT_BATCH):
                events = stubs.events.ImportRunEvents(
                    event_history_service_pb2.ImportRunEventsRequest(
                        records=monitor[start : start + EVENT_BATCH]
                    ),
                    timeout=120,
                )
                totals["events"] += events.imported
    except (OSError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    except grpc.RpcError as exc:
        raise fail(exc) from None
    finally:
        stubs.channel.close()
    print(json.dumps(totals))
