"""ExecutorService: a thin grpc.aio servicer over the run functions."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import structlog
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from conveyor.executor import inline, liveness, runs, waits
from conveyor.executor.celeryapp import send_steps
from conveyor.executor.convert import run_pb, trigger_name
from conveyor.executor.models import decoded_plan
from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.executor.worker import load_secrets
from conveyor.kernel.bus import EventBus
from conveyor.kernel.db import Database, is_unreachable
from conveyor.kernel.errors import InvalidArgument, NotFound, Unavailable, Violation
from conveyor.kernel.grpcserver import (
    ServiceRegistration,
    actor,
    channel,
    domain_error,
    map_errors,
)
from conveyor.kernel.ids import utcnow
from conveyor.kernel.paging import decode_token, encode_token, page_size
from conveyor.kernel.protoconv import parse_json_object
from conveyor.kernel.settings import Settings
from conveyor.shared.parameters import validate_parameters
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = executor_service_pb2.DESCRIPTOR.services_by_name["ExecutorService"].full_name
MAX_REQUEST_ID = 128
SWEEP_INTERVAL_S = 5.0
#: How often due retries and timeouts are looked for: the resolution of a retry's backoff.
WAKE_INTERVAL_S = 0.25

T = TypeVar("T")


class ExecutorServicer(executor_service_pb2_grpc.ExecutorServiceServicer):  # type: ignore[misc]
    """Starts and inspects runs; the plan comes from the translator service."""

    def __init__(self, *, settings: Settings, db: Database, bus: EventBus, app: Celery) -> None:
        self._settings = settings
        self._db = db
        self._bus = bus
        self._app = app
        self._watching_since: float | None = None
        # Triggers and branches are evaluated in this process (conveyor.executor.inline).
        inline.configure(
            load_secrets(secrets_file=settings.secrets_file), budget=inline.Budget.of(settings)
        )
        self._translator = translator_service_pb2_grpc.TranslatorServiceStub(
            channel(settings.translator_addr)
        )

    def _idempotent(self, create: Callable[[], Any], request_id: str) -> Any:
        """Run `create`; when its request_id lost a race to the unique index, the run the
        winner created (a retried request returns the same run)."""
        try:
            return create()
        except IntegrityError:
            if not request_id:
                raise
            with self._db.read() as session:
                run = runs.run_by_request_id(session, request_id)
                if run is None:
                    raise
                steps, executions = runs.run_steps(session, run.id)
                return run_pb(run, steps, executions)

    def _after_commit(self, effects: runs.Effects) -> None:
        """Carry out a committed transaction's effects; never raises.

        Committed means done: a message the broker did not take leaves its step QUEUED (the
        sweeper sends it again after `CONVEYOR_REQUEUE_AFTER_S`), an event the bus did not
        take is in the outbox (watchers read it from there), so the caller answers success.
        """
        try:
            self._bus.publish(effects.events)
        except Exception:
            log.warning("events not published; watchers will read them", exc_info=True)
        if effects.dispatch:
            try:
                send_steps(self._app, self._settings.broker_url, effects.dispatch)
            except Exception:
                log.warning(
                    "step messages not sent; the sweeper will send them",
                    count=len(effects.dispatch),
                    exc_info=True,
                )
        for child in effects.cancel_runs:
            try:
                with self._db.transaction() as session:
                    _run, more = runs.cancel_run(
                        session, child, "its parent step was cancelled or timed out"
                    )
                self._after_commit(more)
            except NotFound:
                log.warning("sub-workflow run to cancel not found", run_id=child)
            except Exception:  # the sweeper of the child's own deadline still applies
                log.warning("sub-workflow run not cancelled", run_id=child, exc_info=True)

    async def _unit(self, work: Callable[..., T], *args: Any) -> T:
        """Run a unit of work in a thread; an unreachable database is UNAVAILABLE (retryable:
        nothing was committed, or — if the commit itself was cut — a retry with the same
        request_id returns the same run)."""
        try:
            return await asyncio.to_thread(work, *args)
        except DBAPIError as exc:
            if not is_unreachable(exc):
                raise
            raise Unavailable(
                f"database unavailable: {type(exc.orig).__name__ if exc.orig else exc}",
                reason="DATABASE_UNAVAILABLE",
            ) from exc

    async def _job(self, job_ref: str, version: int, metadata: Any) -> runs.JobPlan:
        try:
            reply = await self._translator.GetJob(
                translator_service_pb2.GetJobRequest(job_id=job_ref, version=version),
                timeout=10,
                metadata=metadata,
            )
        except grpc.aio.AioRpcError as err:
            raise domain_error(err, peer="translator") from err
        job = reply.job
        plan_pb = job.plan.SerializeToString()
        return runs.JobPlan(
            job_id=job.job_id,
            name=job.name,
            version=job.version,
            plan=decoded_plan(plan_pb),
            plan_pb=plan_pb,
        )

    @map_errors
    async def StartRun(  # noqa: N802
        self,
        request: executor_service_pb2.StartRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.StartRunResponse:
        """See the proto."""
        violations = []
        if not request.job_id:
            violations.append(Violation("job_id", "required", "REQUIRED"))
        if not 0 <= request.priority <= 9:
            violations.append(Violation("priority", "must be 0 to 9", "OUT_OF_RANGE"))
        if len(request.request_id) > MAX_REQUEST_ID:
            violations.append(Violation("request_id", "at most 128 characters", "TOO_LONG"))
        if bool(request.parent_run_id) != bool(request.parent_node_id):
            violations.append(
                Violation(
                    "parent_node_id" if request.parent_run_id else "parent_run_id",
                    "parent_run_id and parent_node_id go together",
                    "REQUIRED",
                )
            )
        if violations:
            raise InvalidArgument("invalid StartRun request", violations=violations)
        given = parse_json_object(request.parameters_json, field="parameters")
        job = await self._job(request.job_id, request.job_version, None)
        params, diagnostics = validate_parameters(job.plan, given)
        if diagnostics:
            raise InvalidArgument(
                f"parameters do not match the job's schema: {diagnostics[0].message}",
                reason="INVALID_PARAMETERS",
                violations=[Violation(d.path, d.message, d.code) for d in diagnostics],
            )

        def create() -> Any:
            with self._db.transaction() as session:
                run, effects = runs.start_run(
                    session,
                    job,
                    parameters=params,
                    request_id=request.request_id or None,
                    trigger=trigger_name(request.trigger),
                    priority=request.priority,
                    parent_run_id=request.parent_run_id or None,
                    parent_node_id=request.parent_node_id or None,
                    started_by=actor(context),
                )
                steps, executions = runs.started_run_steps(session, run)
                message = run_pb(run, steps, executions)
            self._after_commit(effects)
            return message

        run = await self._unit(self._idempotent, create, request.request_id)
        log.info("run started", run_id=run.run_id, job=job.name)
        return executor_service_pb2.StartRunResponse(run=run)

    @map_errors
    async def GetRun(  # noqa: N802
        self,
        request: executor_service_pb2.GetRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.GetRunResponse:
        """See the proto."""

        def work() -> Any:
            with self._db.read() as session:
                run = runs.get_run(session, request.run_id)
                steps, executions = runs.run_steps(session, run.id)
                return run_pb(run, steps, executions)

        return executor_service_pb2.GetRunResponse(run=await self._unit(work))

    @map_errors
    async def ListRuns(  # noqa: N802
        self,
        request: executor_service_pb2.ListRunsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.ListRunsResponse:
        """See the proto."""
        size = page_size(request.page_size)
        states = []
        for value in request.states:
            if value == run_pb2.RUN_STATE_UNSPECIFIED:
                raise InvalidArgument(
                    "states may not contain RUN_STATE_UNSPECIFIED",
                    violations=[Violation("states", "unspecified state", "INVALID")],
                )
            try:
                name = run_pb2.RunState.Name(value)
            except ValueError:  # a number the enum does not define (proto3 keeps it)
                raise InvalidArgument(
                    f"state {value} is not a RunState",
                    violations=[Violation("states", "unknown run state", "INVALID")],
                ) from None
            states.append(str(name).removeprefix("RUN_STATE_"))
        scope = ("runs", request.job_id, sorted(states))
        after = decode_token(request.page_token, scope=scope)

        def work() -> tuple[list[Any], str]:
            with self._db.read() as session:
                rows, token = runs.list_runs(
                    session, page_size=size, after=after, job_id=request.job_id, states=states
                )
                return [run_pb(r) for r in rows], token

        items, token = await self._unit(work)
        return executor_service_pb2.ListRunsResponse(
            runs=items, next_page_token=encode_token(token, scope=scope) if token else ""
        )

    @map_errors
    async def CancelRun(  # noqa: N802
        self,
        request: executor_service_pb2.CancelRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.CancelRunResponse:
        """See the proto. A cancel through the gateway says who asked ("cancelled by NAME")."""
        who = actor(context)
        reason = request.reason
        if who:
            reason = f"cancelled by {who}" + (f": {reason}" if reason else "")

        def work() -> Any:
            with self._db.transaction() as session:
                run, effects = runs.cancel_run(session, request.run_id, reason)
                steps, executions = runs.run_steps(session, run.id)
                message = run_pb(run, steps, executions)
            self._after_commit(effects)
            return message

        return executor_service_pb2.CancelRunResponse(run=await self._unit(work))

    @map_errors
    async def RetryRun(  # noqa: N802
        self,
        request: executor_service_pb2.RetryRunRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.RetryRunResponse:
        """See the proto."""
        violations = []
        if not request.run_id:
            violations.append(Violation("run_id", "required", "REQUIRED"))
        if len(request.request_id) > MAX_REQUEST_ID:
            violations.append(Violation("request_id", "at most 128 characters", "TOO_LONG"))
        if violations:
            raise InvalidArgument("invalid RetryRun request", violations=violations)

        who = actor(context)

        def create() -> Any:
            with self._db.transaction() as session:
                run, effects = runs.retry_run(
                    session,
                    request.run_id,
                    request_id=request.request_id or None,
                    started_by=who,
                )
                steps, executions = runs.run_steps(session, run.id)
                message = run_pb(run, steps, executions)
            self._after_commit(effects)
            return message

        run = await self._unit(self._idempotent, create, request.request_id)
        log.info("run retried", run_id=run.run_id, retry_of=request.run_id)
        return executor_service_pb2.RetryRunResponse(run=run)

    @map_errors
    async def ApproveStep(  # noqa: N802
        self,
        request: executor_service_pb2.ApproveStepRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> executor_service_pb2.ApproveStepResponse:
        """See the proto."""
        if request.decision == executor_service_pb2.APPROVAL_DECISION_UNSPECIFIED:
            raise InvalidArgument(
                "decision is required (APPROVE or REJECT)",
                violations=[Violation("decision", "required", "REQUIRED")],
            )
        approve = request.decision == executor_service_pb2.APPROVAL_DECISION_APPROVE

        def work() -> Any:
            with self._db.transaction() as session:
                run, effects = waits.decide_approval(
                    session,
                    request.run_id,
                    request.node_id,
                    approve=approve,
                    comment=request.comment,
                    # Through the gateway the token's name decides, not what the request says.
                    approver=actor(context) or request.approver,
                )
                steps, executions = runs.run_steps(session, run.id)
                message = run_pb(run, steps, executions)
            self._after_commit(effects)
            return message

        run = await self._unit(work)
        log.info(
            "approval decided", run_id=request.run_id, step_id=request.node_id, approve=approve
        )
        return executor_service_pb2.ApproveStepResponse(run=run)

    async def wake_forever(self) -> None:
        """Act on WAITING steps whose time has come: due retries, approval and child timeouts."""
        while True:
            await asyncio.sleep(WAKE_INTERVAL_S)
            try:
                await asyncio.to_thread(self.wake_once)
            except Exception:
                log.exception("wake-up sweep failed")

    def wake_once(self) -> int:
        """One pass over due WAITING steps; returns how many were acted on."""
        with self._db.read() as session:
            due = waits.due_wakeups(session, now=utcnow())
        for run_id, node_id in due:
            with self._db.transaction() as session:
                effects = waits.wake_step(session, run_id, node_id, rand=random.random)
            self._after_commit(effects)
        return len(due)

    async def reap_forever(self) -> None:
        """Close attempts whose worker stopped heartbeating (conveyor.executor.liveness), every
        `CONVEYOR_REAP_INTERVAL_S`: a lost step's next attempt is queued within about
        `CONVEYOR_WORKER_LOST_AFTER_S` plus this interval of its worker's death."""
        while True:
            await asyncio.sleep(self._settings.reap_interval_s)
            try:
                await asyncio.to_thread(self.reap_once)
            except Exception:
                # The database may be down: workers cannot heartbeat either, so silence is
                # only counted again from when this sweep sees the database anew.
                self._watching_since = None
                log.warning("liveness sweep failed", exc_info=True)

    def reap_once(self) -> int:
        """One pass of the liveness sweep; returns how many attempts were closed as lost.

        An attempt counts as lost only after `worker_lost_after_s` of silence *observed* by
        this process: after the executor starts, or after the database was unreachable,
        workers get that long to heartbeat again before any attempt is closed.
        """
        now = time.monotonic()
        if self._watching_since is None:
            self._watching_since = now
        if now - self._watching_since < self._settings.worker_lost_after_s:
            with self._db.read() as session:  # still notice an outage meanwhile
                session.execute(select(1))
            return 0
        return liveness.reap_lost(
            self._db,
            lost_after_s=self._settings.worker_lost_after_s,
            after_commit=self._after_commit,
            reattempts=self._settings.lost_reattempts,
        )

    async def sweep_forever(self) -> None:
        """Re-send QUEUED steps whose message may have been lost (at-least-once delivery)."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await asyncio.to_thread(self.sweep_once)
            except Exception:
                log.exception("requeue sweep failed")

    def sweep_once(self) -> int:
        """One pass of the requeue sweeper; returns how many messages were re-sent."""
        with self._db.transaction() as session:
            dispatches = runs.stale_queued(
                session, older_than=runs.requeue_cutoff(self._settings.requeue_after_s)
            )
        if dispatches:
            log.warning("re-sending queued steps", count=len(dispatches))
            send_steps(self._app, self._settings.broker_url, dispatches)
        return len(dispatches)


def registration(servicer: ExecutorServicer) -> ServiceRegistration:
    """The executor service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server(
            servicer, server
        ),
    )
