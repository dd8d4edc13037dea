"""SchedulerService: a thin grpc.aio servicer over the scheduler's domain, store and firing loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from conveyor.executor.v1 import run_pb2
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.fieldmask import update_paths
from conveyor.kernel.grpcserver import ServiceRegistration, actor, map_errors
from conveyor.kernel.ids import as_utc
from conveyor.kernel.paging import page_size
from conveyor.kernel.protoconv import enum_value, json_text, parse_json_object, timestamp
from conveyor.scheduler import domain, policies, store
from conveyor.scheduler.client import GrpcJobs
from conveyor.scheduler.domain import Spec
from conveyor.scheduler.firing import LEASE_S, Clock, Firing
from conveyor.scheduler.policies import CatchupMode, Overlap
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from conveyor.shared.parameters import validate_parameters

SERVICE_NAME = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name
MAX_REQUEST_ID = 128
MAX_TRIGGER_REQUEST_ID = 64
MAX_NOTE = 1000
MAX_DESCRIPTION = 4000
DEFAULT_PREVIEW = 10
UPDATABLE = (
    "job_id",
    "description",
    "spec",
    "parameters",
    "parameters_json",
    "policies",
    "policies.overlap",
    "policies.catchup_window",
    "policies.catchup_mode",
    "policies.pause_after_failures",
)


def _dt(ts: Any) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def spec_from_pb(msg: schedule_pb2.ScheduleSpec) -> Spec:
    """Proto spec -> domain spec (unchecked)."""
    kind = msg.WhichOneof("kind") or ""
    return Spec(
        kind=kind,
        time_zone=msg.time_zone or "UTC",
        run_at=_dt(msg.once.run_time) if kind == "once" and msg.once.HasField("run_time") else None,
        every_s=msg.interval.every.ToTimedelta().total_seconds() if kind == "interval" else 0.0,
        cron=msg.cron.expression if kind == "cron" else "",
        start=_dt(msg.start_time) if msg.HasField("start_time") else None,
        end=_dt(msg.end_time) if msg.HasField("end_time") else None,
        jitter_s=msg.jitter.ToTimedelta().total_seconds(),
    )


def spec_pb(spec: Spec) -> schedule_pb2.ScheduleSpec:
    """Domain spec -> proto."""
    msg = schedule_pb2.ScheduleSpec(
        time_zone=spec.time_zone,
        start_time=timestamp(spec.start),
        end_time=timestamp(spec.end),
    )
    msg.jitter.FromTimedelta(timedelta(seconds=spec.jitter_s))
    if spec.kind == "once":
        assert spec.run_at is not None  # a valid `once` spec has its time
        msg.once.run_time.CopyFrom(timestamp(spec.run_at))
    elif spec.kind == "interval":
        msg.interval.every.FromTimedelta(timedelta(seconds=spec.every_s))
    elif spec.kind == "cron":
        msg.cron.expression = spec.cron
    return msg


def schedule_pb(row: store.ScheduleRow) -> schedule_pb2.Schedule:
    """Store row -> proto."""
    pols = schedule_pb2.SchedulePolicies(
        overlap=enum_value(schedule_pb2.OverlapPolicy, f"OVERLAP_POLICY_{row.overlap}"),
        catchup_mode=enum_value(schedule_pb2.CatchupMode, f"CATCHUP_MODE_{row.catchup_mode}"),
        pause_after_failures=row.pause_after_failures,
    )
    pols.catchup_window.FromTimedelta(timedelta(seconds=row.catchup_window_s))
    return schedule_pb2.Schedule(
        schedule_id=row.id,
        job_id=row.job_id,
        description=row.description,
        spec=spec_pb(store.spec_of(row)),
        parameters_json=json_text(row.parameters or {}),
        policies=pols,
        paused=row.paused,
        note=row.note,
        next_run_time=timestamp(as_utc(row.next_run_at)),
        consecutive_failures=row.consecutive_failures,
        last_run_id=row.last_run_id or "",
        create_time=timestamp(as_utc(row.created_at)),
        update_time=timestamp(as_utc(row.updated_at)),
        updated_by=row.updated_by or "",
    )


def action_pb(row: store.ActionRow) -> schedule_pb2.ScheduleAction:
    """Action row -> proto."""
    msg = schedule_pb2.ScheduleAction(
        schedule_id=row.schedule_id,
        nominal_time=timestamp(as_utc(row.nominal_time)),
        due_time=timestamp(as_utc(row.due_time)),
        take_time=timestamp(as_utc(row.taken_at)),
        outcome=enum_value(schedule_pb2.ActionOutcome, f"ACTION_OUTCOME_{row.outcome}"),
        run_id=row.run_id or "",
        run_state=run_pb2.RunState.Value(f"RUN_STATE_{row.run_state}")  # type: ignore[arg-type]
        if row.run_state
        else run_pb2.RUN_STATE_UNSPECIFIED,
        first_step_start_time=timestamp(as_utc(row.first_step_at)),
        message=row.message,
        manual=row.manual,
        scheduler=row.taken_by,
    )
    if row.lag_s is not None:
        msg.lag.FromTimedelta(timedelta(seconds=row.lag_s))
    return msg


class Policies:
    """Validated policies of a request."""

    def __init__(self, msg: schedule_pb2.SchedulePolicies, *, prefix: str) -> None:
        self.violations: list[Violation] = []
        overlap = schedule_pb2.OverlapPolicy.Name(msg.overlap).removeprefix("OVERLAP_POLICY_")
        self.overlap = Overlap.SKIP if overlap == "UNSPECIFIED" else Overlap(overlap)
        mode = schedule_pb2.CatchupMode.Name(msg.catchup_mode).removeprefix("CATCHUP_MODE_")
        self.catchup_mode = CatchupMode.COALESCE if mode == "UNSPECIFIED" else CatchupMode(mode)
        window = msg.catchup_window.ToTimedelta().total_seconds()
        self.catchup_window_s = window if msg.HasField("catchup_window") else None
        if window < 0 or window > policies.MAX_CATCHUP_WINDOW_S:
            self.violations.append(
                Violation(f"{prefix}.catchup_window", "must be 0 to 366 days", "OUT_OF_RANGE")
            )
        self.pause_after = msg.pause_after_failures
        if not 0 <= self.pause_after <= policies.MAX_PAUSE_AFTER:
            self.violations.append(
                Violation(f"{prefix}.pause_after_failures", "must be 0 to 1000", "OUT_OF_RANGE")
            )


def _bad(message: str, violations: list[Violation]) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_SCHEDULE", violations=violations)


def _required_id(value: str, field: str) -> None:
    if not value:
        raise _bad(f"{field} is required", [Violation(field, "required", "REQUIRED")])


class SchedulerServicer(scheduler_service_pb2_grpc.SchedulerServiceServicer):  # type: ignore[misc]
    """Schedule CRUD, previews and manual triggers; the calendar fires through `Firing`."""

    def __init__(self, *, db: Database, firing: Firing, jobs: GrpcJobs, clock: Clock) -> None:
        self._db = db
        self._firing = firing
        self._jobs = jobs
        self._clock = clock

    async def _check_job(
        self, job_ref: str, params: dict[str, Any], *, prefix: str
    ) -> tuple[str, dict[str, Any]]:
        job = await self._jobs.get_job(job_ref, field=f"{prefix}.job_id")
        checked, diagnostics = validate_parameters(job.plan, params)
        if diagnostics:
            raise InvalidArgument(
                f"parameters do not match the job's schema: {diagnostics[0].message}",
                reason="INVALID_PARAMETERS",
                violations=[
                    Violation(f"{prefix}.parameters{d.path}", d.message, d.code)
                    for d in diagnostics
                ],
            )
        return job.job_id, checked

    @map_errors
    async def CreateSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.CreateScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.CreateScheduleResponse:
        """See the proto."""
        msg = request.schedule
        violations: list[Violation] = []
        if not msg.job_id:
            violations.append(Violation("schedule.job_id", "required", "REQUIRED"))
        if len(request.request_id) > MAX_REQUEST_ID:
            violations.append(Violation("request_id", "at most 128 characters", "TOO_LONG"))
        if len(msg.description) > MAX_DESCRIPTION:
            violations.append(
                Violation("schedule.description", "at most 4000 characters", "TOO_LONG")
            )
        spec = spec_from_pb(msg.spec)
        violations += domain.spec_violations(spec, prefix="schedule.spec", now=self._clock())
        pols = Policies(msg.policies, prefix="schedule.policies")
        violations += pols.violations
        if violations:
            raise _bad(f"invalid schedule: {violations[0].description}", violations)
        job_id, params = await self._check_job(
            msg.job_id,
            parse_json_object(msg.parameters_json, field="schedule.parameters"),
            prefix="schedule",
        )
        now = self._clock()
        if spec.kind == "interval" and spec.start is None:
            spec = Spec(**{**spec.__dict__, "start": now})

        who = actor(context) or None

        def work() -> store.ScheduleRow:
            with self._db.transaction() as session:
                made = store.new_schedule(
                    session,
                    job_id=job_id,
                    description=msg.description,
                    spec=spec,
                    parameters=params,
                    overlap=pols.overlap,
                    catchup_window_s=pols.catchup_window_s
                    if pols.catchup_window_s is not None
                    else policies.DEFAULT_CATCHUP_WINDOW_S,
                    catchup_mode=pols.catchup_mode,
                    pause_after_failures=pols.pause_after,
                    paused=request.paused,
                    request_id=request.request_id or None,
                    now=now,
                )
                if made.updated_at == now:  # created now, not a repeated request_id
                    made.updated_by = who
                return made

        row = await asyncio.to_thread(work)
        self._firing.wake()
        return scheduler_service_pb2.CreateScheduleResponse(schedule=schedule_pb(row))

    @map_errors
    async def GetSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.GetScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.GetScheduleResponse:
        """See the proto."""
        _required_id(request.schedule_id, "schedule_id")

        def work() -> store.ScheduleRow:
            with self._db.read() as session:
                return store.get_schedule(session, request.schedule_id)

        row = await asyncio.to_thread(work)
        return scheduler_service_pb2.GetScheduleResponse(schedule=schedule_pb(row))

    @map_errors
    async def ListSchedules(  # noqa: N802
        self,
        request: scheduler_service_pb2.ListSchedulesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.ListSchedulesResponse:
        """See the proto."""
        size = page_size(request.page_size)

        def work() -> tuple[list[store.ScheduleRow], str]:
            with self._db.read() as session:
                return store.list_schedules(
                    session, page_size=size, page_token=request.page_token, job_id=request.job_id
                )

        rows, token = await asyncio.to_thread(work)
        return scheduler_service_pb2.ListSchedulesResponse(
            schedules=[schedule_pb(r) for r in rows], next_page_token=token
        )

    @map_errors
    async def UpdateSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.UpdateScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.UpdateScheduleResponse:
        """See the proto."""
        msg = request.schedule
        _required_id(msg.schedule_id, "schedule.schedule_id")
        paths = update_paths(request.update_mask, UPDATABLE)
        violations: list[Violation] = []
        spec = spec_from_pb(msg.spec)
        if "spec" in paths:
            violations += domain.spec_violations(spec, prefix="schedule.spec", now=self._clock())
        pols = Policies(msg.policies, prefix="schedule.policies")
        if any(p.startswith("policies") for p in paths):
            violations += pols.violations
        if "job_id" in paths and not msg.job_id:
            violations.append(Violation("schedule.job_id", "required", "REQUIRED"))
        if len(msg.description) > MAX_DESCRIPTION:
            violations.append(
                Violation("schedule.description", "at most 4000 characters", "TOO_LONG")
            )
        if violations:
            raise _bad(f"invalid schedule: {violations[0].description}", violations)

        def current() -> store.ScheduleRow:
            with self._db.transaction() as session:
                return store.get_schedule(session, msg.schedule_id)

        existing = await asyncio.to_thread(current)
        job_ref = msg.job_id if "job_id" in paths else existing.job_id
        params = (
            parse_json_object(msg.parameters_json, field="schedule.parameters")
            if {"parameters", "parameters_json"} & set(paths)
            else existing.parameters
        )
        job_id, params = await self._check_job(job_ref, params, prefix="schedule")
        now = self._clock()
        who = actor(context) or None
        if spec.kind == "interval" and spec.start is None:
            spec = Spec(**{**spec.__dict__, "start": now})

        def work() -> store.ScheduleRow:
            with self._db.transaction() as session:
                row = store.get_schedule(session, msg.schedule_id, lock=True)
                row.job_id = job_id
                row.parameters = params
                if "description" in paths:
                    row.description = msg.description
                whole = "policies" in paths
                if whole or "policies.overlap" in paths:
                    row.overlap = pols.overlap.value
                if whole or "policies.catchup_window" in paths:
                    row.catchup_window_s = (
                        pols.catchup_window_s
                        if pols.catchup_window_s is not None
                        else policies.DEFAULT_CATCHUP_WINDOW_S
                    )
                if whole or "policies.catchup_mode" in paths:
                    row.catchup_mode = pols.catchup_mode.value
                if whole or "policies.pause_after_failures" in paths:
                    row.pause_after_failures = pols.pause_after
                if "spec" in paths:
                    row.spec = spec.to_json()
                    store.set_next(row, now)
                row.updated_at = now
                row.updated_by = who
                return row

        row = await asyncio.to_thread(work)
        self._firing.wake()
        return scheduler_service_pb2.UpdateScheduleResponse(schedule=schedule_pb(row))

    @map_errors
    async def DeleteSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.DeleteScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.DeleteScheduleResponse:
        """See the proto."""
        _required_id(request.schedule_id, "schedule_id")

        def work() -> None:
            with self._db.transaction() as session:
                store.delete_schedule(session, request.schedule_id)

        await asyncio.to_thread(work)
        return scheduler_service_pb2.DeleteScheduleResponse()

    async def _set_paused(
        self, schedule_id: str, note: str, *, paused: bool, who: str | None
    ) -> Any:
        _required_id(schedule_id, "schedule_id")
        if len(note) > MAX_NOTE:
            raise _bad(
                "note is too long", [Violation("note", "at most 1000 characters", "TOO_LONG")]
            )
        now = self._clock()

        def work() -> store.ScheduleRow:
            with self._db.transaction() as session:
                row = store.get_schedule(session, schedule_id, lock=True)
                if not paused and row.paused:
                    row.consecutive_failures = 0
                    store.set_next(row, now)  # no catch-up for time spent paused
                row.paused = paused
                row.note = note
                row.updated_at = now
                row.updated_by = who
                return row

        row = await asyncio.to_thread(work)
        self._firing.wake()
        return schedule_pb(row)

    @map_errors
    async def PauseSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.PauseScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.PauseScheduleResponse:
        """See the proto."""
        row = await self._set_paused(
            request.schedule_id, request.note, paused=True, who=actor(context) or None
        )
        return scheduler_service_pb2.PauseScheduleResponse(schedule=row)

    @map_errors
    async def ResumeSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.ResumeScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.ResumeScheduleResponse:
        """See the proto."""
        row = await self._set_paused(
            request.schedule_id, request.note, paused=False, who=actor(context) or None
        )
        return scheduler_service_pb2.ResumeScheduleResponse(schedule=row)

    @map_errors
    async def TriggerSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.TriggerScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.TriggerScheduleResponse:
        """See the proto."""
        _required_id(request.schedule_id, "schedule_id")
        if len(request.request_id) > MAX_TRIGGER_REQUEST_ID:
            raise _bad(
                "request_id is too long",
                [Violation("request_id", "at most 64 characters", "TOO_LONG")],
            )
        now = self._clock()

        def claim() -> tuple[store.Fire | None, int]:
            with self._db.transaction() as session:
                fire, action = store.add_manual_fire(
                    session,
                    request.schedule_id,
                    now=now,
                    request_id=request.request_id,
                    lease_s=LEASE_S,
                )
                return fire, action.id

        fire, action_id = await asyncio.to_thread(claim)
        if fire is not None:
            await self._firing.carry_out(fire)

        def read() -> store.ActionRow:
            with self._db.read() as session:
                row = session.get(store.ActionRow, action_id)
                assert row is not None
                return row

        action = await asyncio.to_thread(read)
        return scheduler_service_pb2.TriggerScheduleResponse(action=action_pb(action))

    @map_errors
    async def PreviewSchedule(  # noqa: N802
        self,
        request: scheduler_service_pb2.PreviewScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.PreviewScheduleResponse:
        """See the proto."""
        spec = spec_from_pb(request.spec)
        violations = domain.spec_violations(spec, prefix="spec")
        count = request.count or DEFAULT_PREVIEW
        if not 0 < count <= domain.MAX_PREVIEW:
            violations.append(Violation("count", "must be 1 to 1000", "OUT_OF_RANGE"))
        if violations:
            raise _bad(f"invalid preview: {violations[0].description}", violations)
        after = _dt(request.after_time) if request.HasField("after_time") else self._clock()
        times = await asyncio.to_thread(domain.preview, spec, after=after, count=count)
        return scheduler_service_pb2.PreviewScheduleResponse(
            fire_times=[timestamp(t) for t in times]
        )

    @map_errors
    async def ListScheduleActions(  # noqa: N802
        self,
        request: scheduler_service_pb2.ListScheduleActionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> scheduler_service_pb2.ListScheduleActionsResponse:
        """See the proto."""
        _required_id(request.schedule_id, "schedule_id")
        size = page_size(request.page_size)

        def work() -> tuple[list[store.ActionRow], str]:
            with self._db.read() as session:
                return store.list_actions(
                    session, request.schedule_id, page_size=size, page_token=request.page_token
                )

        rows, token = await asyncio.to_thread(work)
        return scheduler_service_pb2.ListScheduleActionsResponse(
            actions=[action_pb(r) for r in rows], next_page_token=token
        )


def registration(servicer: SchedulerServicer) -> ServiceRegistration:
    """The scheduler service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server(
            servicer, server
        ),
    )
