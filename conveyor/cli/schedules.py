"""`conveyor schedules ...`: create, inspect, change and fire schedules through the gateway."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import field_mask_pb2, json_format
from rich.console import Console

from conveyor.cli.client import gateway_channel, resolve_token
from conveyor.cli.params import parse_pairs
from conveyor.kernel.grpcserver import error_details
from conveyor.kernel.protoconv import enum_value, json_text
from conveyor.kernel.protojson import to_json_dict
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc

schedules_app = typer.Typer(no_args_is_help=True, help="Run jobs once, on an interval or by cron.")
out = Console()
err = Console(stderr=True)

DEFAULT_ADDR = "127.0.0.1:50051"
EXIT_FAILED, EXIT_INVALID = 1, 2
TIMEOUT_S = 30

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="CONVEYOR_ADDR", help="Gateway address."),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]
CronOpt = Annotated[str, typer.Option("--cron", help="5 or 6 field cron expression.")]
EveryOpt = Annotated[float, typer.Option("--every", help="Interval in seconds.")]
AtOpt = Annotated[str, typer.Option("--at", help="One fire at this ISO 8601 time.")]
TzOpt = Annotated[str, typer.Option("--tz", help="IANA time zone of the cron calendar.")]
StartOpt = Annotated[str, typer.Option("--start", help="No fire before (ISO 8601).")]
EndOpt = Annotated[str, typer.Option("--end", help="No fire after (ISO 8601).")]
JitterOpt = Annotated[float, typer.Option("--jitter", help="Max random delay, seconds.")]


def _stub(server: str | None) -> Any:
    ch = gateway_channel(server or DEFAULT_ADDR, resolve_token())
    return scheduler_service_pb2_grpc.SchedulerServiceStub(ch)


def _fail(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code()  # type: ignore[attr-defined]
    err.print(f"error: {code.name}: {exc.details()}", markup=False)  # type: ignore[attr-defined]
    for field, reason, description in error_details(exc)[1]:
        err.print(f"  {reason or 'INVALID'} at {field}: {description}", markup=False)
    bad = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    return typer.Exit(EXIT_INVALID if bad else EXIT_FAILED)


def _time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        err.print(f"error: {option} {value!r} is not an ISO 8601 time", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc
    if parsed.tzinfo is None:
        err.print(f"error: {option} needs a UTC offset, e.g. {value}+00:00", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return parsed


def build_spec(
    *, cron: str, every: float, at: str, tz: str, start: str, end: str, jitter: float
) -> schedule_pb2.ScheduleSpec:
    """A ScheduleSpec from the command-line options (exactly one of cron, every, at)."""
    kinds = [k for k, v in (("--cron", cron), ("--every", every), ("--at", at)) if v]
    if len(kinds) != 1:
        err.print("error: give exactly one of --cron, --every, --at")
        raise typer.Exit(EXIT_INVALID)
    spec = schedule_pb2.ScheduleSpec(time_zone=tz)
    if cron:
        spec.cron.expression = cron
    elif every:
        spec.interval.every.FromTimedelta(timedelta(seconds=every))
    else:
        spec.once.run_time.FromDatetime(_time(at, "--at"))
    if start:
        spec.start_time.FromDatetime(_time(start, "--start"))
    if end:
        spec.end_time.FromDatetime(_time(end, "--end"))
    if jitter:
        spec.jitter.FromTimedelta(timedelta(seconds=jitter))
    return spec


def _policies(overlap: str, catchup_window: float, catchup: str, pause_after: int) -> Any:
    try:
        pols = schedule_pb2.SchedulePolicies(
            overlap=enum_value(schedule_pb2.OverlapPolicy, f"OVERLAP_POLICY_{overlap.upper()}"),
            catchup_mode=enum_value(schedule_pb2.CatchupMode, f"CATCHUP_MODE_{catchup.upper()}"),
            pause_after_failures=pause_after,
        )
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc
    pols.catchup_window.FromTimedelta(timedelta(seconds=catchup_window))
    return pols


def _show(message: Any, output: str) -> None:
    data = to_json_dict(message, every_field=False)
    if output == "json":
        print(json.dumps(data, indent=2))
        return
    spec = data.get("spec", {})
    kind = (
        f"cron {spec['cron']['expression']!r}"
        if "cron" in spec
        else f"every {spec['interval']['every']}"
        if "interval" in spec
        else f"once at {spec.get('once', {}).get('run_time', '?')}"
    )
    state = "paused" if data.get("paused") else "active"
    out.print(
        f"{data['schedule_id']}  {state:<6}  job {data['job_id']}  {kind} "
        f"{spec.get('time_zone', 'UTC')}  next {data.get('next_run_time', '-')}",
        markup=False,
    )
    if data.get("note"):
        out.print(f"  note: {data['note']}", markup=False)


@schedules_app.command("create")
def create(
    job: Annotated[str, typer.Argument(help="Job id or name.")],
    cron: CronOpt = "",
    every: EveryOpt = 0.0,
    at: AtOpt = "",
    tz: TzOpt = "UTC",
    start: StartOpt = "",
    end: EndOpt = "",
    jitter: JitterOpt = 0.0,
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    overlap: Annotated[str, typer.Option(help="skip, buffer_one, buffer_all, ...")] = "skip",
    catchup_window: Annotated[float, typer.Option(help="Seconds.")] = 60.0,
    catchup: Annotated[str, typer.Option(help="coalesce or all")] = "coalesce",
    pause_after: Annotated[int, typer.Option(help="Pause after N failed runs.")] = 0,
    description: str = "",
    paused: bool = False,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """Create a schedule for a job."""
    schedule = schedule_pb2.Schedule(
        job_id=job,
        description=description,
        spec=build_spec(cron=cron, every=every, at=at, tz=tz, start=start, end=end, jitter=jitter),
        parameters_json=json_text(parse_pairs(param or [], err)),
        policies=_policies(overlap, catchup_window, catchup, pause_after),
    )
    try:
        reply = _stub(server).CreateSchedule(
            scheduler_service_pb2.CreateScheduleRequest(schedule=schedule, paused=paused),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    _show(reply.schedule, output)


@schedules_app.command("list")
def list_(
    job: Annotated[str, typer.Option(help="Only schedules of this job id.")] = "",
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """List schedules."""
    try:
        reply = _stub(server).ListSchedules(
            scheduler_service_pb2.ListSchedulesRequest(page_size=500, job_id=job),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    if output == "json":
        items = [to_json_dict(s, every_field=False) for s in reply.schedules]
        print(json.dumps(items, indent=2))
        return
    for s in reply.schedules:
        _show(s, "text")


@schedules_app.command("show")
def show(schedule_id: str, output: OutputOpt = "json", server: ServerOpt = None) -> None:
    """Show a schedule."""
    try:
        reply = _stub(server).GetSchedule(
            scheduler_service_pb2.GetScheduleRequest(schedule_id=schedule_id), timeout=TIMEOUT_S
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    _show(reply.schedule, output)


@schedules_app.command("update")
def update(
    schedule_id: str,
    cron: CronOpt = "",
    every: EveryOpt = 0.0,
    at: AtOpt = "",
    tz: TzOpt = "UTC",
    start: StartOpt = "",
    end: EndOpt = "",
    jitter: JitterOpt = 0.0,
    job: Annotated[str, typer.Option(help="Run this job instead.")] = "",
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    overlap: Annotated[str, typer.Option(help="New overlap policy.")] = "",
    pause_after: Annotated[int, typer.Option(help="Pause after N failed runs.")] = -1,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """Change a schedule: only the options given are changed."""
    schedule = schedule_pb2.Schedule(schedule_id=schedule_id)
    paths = []
    if cron or every or at:
        schedule.spec.CopyFrom(
            build_spec(cron=cron, every=every, at=at, tz=tz, start=start, end=end, jitter=jitter)
        )
        paths.append("spec")
    if job:
        schedule.job_id = job
        paths.append("job_id")
    if param is not None:
        schedule.parameters_json = json_text(parse_pairs(param, err))
        paths.append("parameters")
    if overlap:
        schedule.policies.CopyFrom(_policies(overlap, 0, "coalesce", 0))
        paths.append("policies.overlap")
    if pause_after >= 0:
        schedule.policies.pause_after_failures = pause_after
        paths.append("policies.pause_after_failures")
    if not paths:
        err.print("error: nothing to change")
        raise typer.Exit(EXIT_INVALID)
    try:
        reply = _stub(server).UpdateSchedule(
            scheduler_service_pb2.UpdateScheduleRequest(
                schedule=schedule, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    _show(reply.schedule, output)


@schedules_app.command("delete")
def delete(schedule_id: str, server: ServerOpt = None) -> None:
    """Delete a schedule (its runs are kept)."""
    try:
        _stub(server).DeleteSchedule(
            scheduler_service_pb2.DeleteScheduleRequest(schedule_id=schedule_id),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    out.print(f"schedule {schedule_id} deleted", markup=False)


@schedules_app.command("pause")
def pause(
    schedule_id: str, note: Annotated[str, typer.Option()] = "", server: ServerOpt = None
) -> None:
    """Pause a schedule."""
    try:
        reply = _stub(server).PauseSchedule(
            scheduler_service_pb2.PauseScheduleRequest(schedule_id=schedule_id, note=note),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    _show(reply.schedule, "text")


@schedules_app.command("resume")
def resume(
    schedule_id: str, note: Annotated[str, typer.Option()] = "", server: ServerOpt = None
) -> None:
    """Resume a paused schedule from now."""
    try:
        reply = _stub(server).ResumeSchedule(
            scheduler_service_pb2.ResumeScheduleRequest(schedule_id=schedule_id, note=note),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    _show(reply.schedule, "text")


@schedules_app.command("trigger")
def trigger(schedule_id: str, output: OutputOpt = "text", server: ServerOpt = None) -> None:
    """Fire a schedule now (its overlap policy applies)."""
    try:
        reply = _stub(server).TriggerSchedule(
            scheduler_service_pb2.TriggerScheduleRequest(schedule_id=schedule_id),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    data = json_format.MessageToDict(reply.action, preserving_proto_field_name=True)
    if output == "json":
        print(json.dumps(data, indent=2))
    else:
        outcome = data.get("outcome", "").removeprefix("ACTION_OUTCOME_")
        out.print(f"{outcome} {data.get('run_id', '')} {data.get('message', '')}", markup=False)


@schedules_app.command("preview")
def preview(
    cron: CronOpt = "",
    every: EveryOpt = 0.0,
    at: AtOpt = "",
    tz: TzOpt = "UTC",
    start: StartOpt = "",
    end: EndOpt = "",
    count: Annotated[int, typer.Option(help="How many fire times.")] = 10,
    server: ServerOpt = None,
) -> None:
    """Print the next fire times of a spec without saving anything."""
    spec = build_spec(cron=cron, every=every, at=at, tz=tz, start=start, end=end, jitter=0)
    try:
        reply = _stub(server).PreviewSchedule(
            scheduler_service_pb2.PreviewScheduleRequest(spec=spec, count=count),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    for ts in reply.fire_times:
        out.print(ts.ToJsonString(), markup=False)


@schedules_app.command("actions")
def actions(
    schedule_id: str,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """A schedule's recent fires: time, outcome, run and lag."""
    try:
        reply = _stub(server).ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(
                schedule_id=schedule_id, page_size=limit
            ),
            timeout=TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    if output == "json":
        items = [
            json_format.MessageToDict(a, preserving_proto_field_name=True) for a in reply.actions
        ]
        print(json.dumps(items, indent=2))
        return
    for a in reply.actions:
        outcome = schedule_pb2.ActionOutcome.Name(a.outcome).removeprefix("ACTION_OUTCOME_")
        lag = f"{a.lag.ToTimedelta().total_seconds() * 1000:.0f} ms" if a.HasField("lag") else "-"
        out.print(
            f"{a.nominal_time.ToJsonString()}  {outcome:<9}  {a.run_id or '-':<32}  lag {lag}"
            f"  {a.message}",
            markup=False,
        )
