"""The worker runtime: claims a step, runs it with the step runners, records the result."""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog
from celery import Celery
from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from conveyor.executor import engine, inline, orchestrate, runs, waits
from conveyor.executor.celeryapp import send_steps
from conveyor.executor.egress import EgressPolicy
from conveyor.executor.livelog import LiveLog
from conveyor.executor.liveness import Heartbeater
from conveyor.executor.models import RunRow, cached_plan
from conveyor.executor.progress import ForeachProgress
from conveyor.executor.runners import StepContext, StepOutcome, execute
from conveyor.executor.runners.base import ErrorCategory, Masker, StepError
from conveyor.executor.runners.confine import make_undumpable, protect_file, resolve_step_user
from conveyor.executor.runners.rendered import recording, rendered_inputs
from conveyor.executor.running import RunningReport
from conveyor.executor.secrets import read_secrets_file
from conveyor.executor.v1 import executor_service_pb2_grpc
from conveyor.kernel import tracing
from conveyor.kernel.bus import EventBus
from conveyor.kernel.db import Database, is_unreachable
from conveyor.kernel.grpcserver import sync_channel
from conveyor.kernel.settings import Settings
from conveyor.shared import nodetypes as nt

log = structlog.get_logger(__name__)

SECRET_PREFIX = "CONVEYOR_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret
CANCEL_POLL_S = 0.5
RECORD_BACKOFF_S = 0.25
RECORD_MAX_BACKOFF_S = 5.0

T = TypeVar("T")


class RecordFailed(Exception):
    """The database stayed unreachable for longer than CONVEYOR_RECORD_RETRY_S."""


def load_secrets(
    environ: Mapping[str, str] | None = None, *, secrets_file: Path | None = None
) -> dict[str, str]:
    """Secrets from the secrets file, then CONVEYOR_SECRET_<NAME> variables (which win)."""
    env = os.environ if environ is None else environ
    found = read_secrets_file(secrets_file) if secrets_file else {}
    found.update(
        {k.removeprefix(SECRET_PREFIX): v for k, v in env.items() if k.startswith(SECRET_PREFIX)}
    )
    return found


class WorkerRuntime:
    """Everything a worker process needs to execute steps."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        bus: EventBus,
        app: Celery,
        artifacts: Any,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.app = app
        self.artifacts = artifacts
        self.secrets = load_secrets(secrets_file=settings.secrets_file)
        self.egress = EgressPolicy.from_settings(settings)
        Masker(v for v in self.secrets.values() if v)  # builds the (cached) mask patterns now
        # Confinement: steps run as an unprivileged user when the worker is root, cannot
        # read this process's environment or memory, nor the secrets file.
        self.step_user = resolve_step_user(settings.step_user)
        make_undumpable()
        if settings.secrets_file is not None:
            protect_file(settings.secrets_file, self.step_user)
        self.work_root = str((settings.step_work_root or settings.data_dir / "steps").resolve())
        # Successors this worker makes ready may be inline: same secrets, same budget.
        inline.configure(self.secrets, budget=inline.Budget.of(settings))
        # The Celery node name (name@host) once the worker is set up (`set_hostname`): what
        # attempts record and what the monitor lists the worker as.
        self.hostname = socket.gethostname()
        self.heartbeats = Heartbeater(db, settings.attempt_heartbeat_s)
        self.running = RunningReport(
            app, hostname=lambda: self.hostname, interval_s=settings.attempt_heartbeat_s
        )
        self._stub: executor_service_pb2_grpc.ExecutorServiceStub | None = None
        self.stopping = False

    def set_hostname(self, nodename: str) -> None:
        """Name attempts after the Celery worker's node name (``name@host``)."""
        if nodename:
            self.hostname = nodename

    def begin_shutdown(self, grace_s: float) -> threading.Timer | None:
        """Take no new work from hand-offs; after `grace_s`, hand the attempts still running
        back as new attempts (their processes are then stopped like a cancelled step's, and
        their late results ignored). Returns the timer (None when already shutting down)."""
        if self.stopping:
            return None
        self.stopping = True
        log.info("worker shutting down", running=len(self.heartbeats.active()), grace_s=grace_s)
        timer = threading.Timer(grace_s, self.hand_back_running)
        timer.daemon = True
        timer.start()
        return timer

    def hand_back_running(self) -> int:
        """Close every attempt this process still runs and queue its next attempt at once."""
        handed = 0
        for run_id, node_id, attempt in self.heartbeats.active():
            result = runs.Result(
                succeeded=False,
                outputs={},
                error_category="WORKER_LOST",
                error_message=f"worker {self.hostname!r} shut down before the step ended; "
                "handed back as a new attempt",
                reattempt=True,
            )
            try:
                with self.db.transaction() as session:
                    effects = runs.finish_step(
                        session, run_id, node_id, attempt, result, rand=random.random
                    )
            except Exception:  # the liveness sweep closes it once this process is gone
                log.warning("attempt not handed back", run_id=run_id, exc_info=True)
                continue
            self.after_commit(effects)
            log.warning("attempt handed back", run_id=run_id, step_id=node_id, attempt=attempt)
            handed += 1
        return handed

    def after_commit(self, effects: runs.Effects) -> None:
        """Publish events, then send step messages.

        What was committed stands whatever the bus or the broker does now: a message not sent
        leaves its step QUEUED, which the executor's sweeper sends again; an event not
        published is in the outbox, where watchers read it.
        """
        try:
            self.bus.publish(effects.events)
        except Exception:
            log.warning("events not published; watchers will read them", exc_info=True)
        if effects.dispatch:
            try:
                send_steps(self.app, self.settings.broker_url, effects.dispatch)
            except Exception:
                log.warning(
                    "step messages not sent; the sweeper will send them",
                    count=len(effects.dispatch),
                    exc_info=True,
                )

    def durably(self, what: str, work: Callable[[Session, bool], T]) -> T:
        """Run `work(session, retried)` in a transaction, retried with backoff while the
        database is unreachable, for up to `CONVEYOR_RECORD_RETRY_S`.

        `retried` is True from the second try on. Raises `RecordFailed` once the time is up.
        """
        deadline = time.monotonic() + self.settings.record_retry_s
        delay = RECORD_BACKOFF_S
        retried = False
        while True:
            try:
                with self.db.transaction() as session:
                    return work(session, retried)
            except DBAPIError as exc:
                if not is_unreachable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise RecordFailed(f"{what}: database unreachable: {exc}") from exc
                log.warning("database unreachable; retrying", what=what, retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, RECORD_MAX_BACKOFF_S)
                retried = True

    def handle(self, run_id: str, node_id: str, attempt: int, request: Any) -> None:
        """Run one attempt within the trace its message carries (see `_handle`)."""
        carrier = tracing.carrier_from(
            {h: getattr(request, h, None) for h in tracing.HEADERS if getattr(request, h, None)}
        )
        with tracing.span("run_step", carrier, kind=tracing.CONSUMER):
            self._handle(run_id, node_id, attempt, request)

    def _handle(self, run_id: str, node_id: str, attempt: int, request: Any) -> None:
        """Run one attempt: claim it, execute it, record it, send the ready successors.

        Hand-off: when a step's end makes a successor ready on the queue this message came
        from, the same transaction that records the end also claims that successor, and this
        thread runs it next instead of sending it through the broker (one transaction and one
        broker round trip less per step of a chain). Other ready successors are sent as usual.
        If the worker dies meanwhile, the successor is RUNNING without heartbeats and the
        executor's liveness sweep fails it as WORKER_LOST, like any attempt of a lost worker.
        """
        # Not request.hostname: Celery's thread pool fills that with the bare host name.
        worker = self.hostname
        delivery = getattr(request, "delivery_info", None) or {}
        queue = str(delivery.get("routing_key") or "")
        task_id = str(getattr(request, "id", "") or "")
        try:
            claim, effects = self.durably(
                "claim",
                lambda session, _retried: runs.claim_step(
                    session,
                    run_id,
                    node_id,
                    attempt,
                    worker=worker,
                    queue=queue,
                    task_id=task_id,
                    trace_id=tracing.current_trace_id(),
                ),
            )
        except RecordFailed:
            # The step is still QUEUED: hand the message back to the broker.
            log.warning("claim failed; message handed back", run_id=run_id, step_id=node_id)
            raise Reject("database unreachable", requeue=True) from None
        self.after_commit(effects)
        if claim is None:
            log.info("stale step message ignored", run_id=run_id, step_id=node_id, attempt=attempt)
            return
        current: tuple[str, str, int, runs.Claim] | None = (run_id, node_id, attempt, claim)
        while current is not None:
            current = self._run_claimed(*current, worker=worker, queue=queue, task_id=task_id)

    def _run_claimed(
        self,
        run_id: str,
        node_id: str,
        attempt: int,
        claim: runs.Claim,
        *,
        worker: str,
        queue: str,
        task_id: str,
    ) -> tuple[str, str, int, runs.Claim] | None:
        """Execute a claimed attempt and record it; returns the successor handed to us, if any."""
        bound = log.bind(run_id=run_id, step_id=node_id, attempt=attempt)
        scope = {**claim.scope, "secrets": self.secrets}
        scope["steps"] = self._upstream_steps(run_id, node_id, claim.scope.get("steps") or {})
        ctx = StepContext(
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            scope=scope,
            artifacts=self.artifacts,
            inline_output_cap=self.settings.inline_output_cap,
            default_timeout_s=self.settings.default_step_timeout_s,
            is_cancelled=self._cancel_check(run_id, node_id, attempt),
            secrets_to_mask=[v for v in self.secrets.values() if v],
            template_max_s=self.settings.template_max_s,
            template_max_output=self.settings.template_max_output,
            template_max_steps=self.settings.template_max_steps,
            egress=self.egress,
            work_root=self.work_root,
            keep_failed_workdirs=self.settings.keep_failed_workdirs,
            max_declared_files=self.settings.artifacts_max_declared_files,
            step_user=self.step_user,
        )
        # The attempt heartbeats until its result is recorded (or recording is given up), so
        # a database outage while recording is not mistaken for a lost worker.
        self.heartbeats.add((run_id, node_id, attempt))
        self.running.add((run_id, node_id, attempt))
        try:
            return self._execute_and_record(
                run_id, node_id, attempt, claim, ctx, worker=worker, queue=queue, task_id=task_id
            )
        except RecordFailed:
            bound.error(
                "result could not be recorded; the attempt will be closed as lost and re-attempted",
                exc_info=True,
            )
            return None
        finally:
            self.heartbeats.discard((run_id, node_id, attempt))
            self.running.discard((run_id, node_id, attempt))

    def _execute_and_record(
        self,
        run_id: str,
        node_id: str,
        attempt: int,
        claim: runs.Claim,
        ctx: StepContext,
        *,
        worker: str,
        queue: str,
        task_id: str,
    ) -> tuple[str, str, int, runs.Claim] | None:
        bound = log.bind(run_id=run_id, step_id=node_id, attempt=attempt)
        if claim.node.get("type") in orchestrate.ORCHESTRATED:
            self._orchestrate(claim, ctx)
            return None
        live = self._live_log(ctx)
        try:
            outcome = execute(claim.node, ctx)
        finally:
            live.close()  # every chunk is written before the result that ends the step
        result = to_result(outcome)
        bound.info(
            "step attempt ended",
            succeeded=result.succeeded,
            category=result.error_category,
            wall_s=result.wall_s,
        )

        def record(
            session: Session, retried: bool
        ) -> tuple[runs.Effects, tuple[str, str, int, runs.Claim] | None]:
            handed: tuple[str, str, int, runs.Claim] | None = None
            effects = runs.finish_step(
                session, run_id, node_id, attempt, result, rand=random.random
            )
            # After a failed try the commit's outcome is unknown: no hand-off then, so a
            # successor is never claimed by a transaction whose result this thread missed.
            nxt = None if retried else self._handoff_candidate(effects, queue)
            if nxt is not None:
                next_claim, claimed = runs.claim_step(
                    session,
                    nxt.run_id,
                    nxt.node_id,
                    nxt.attempt,
                    worker=worker,
                    queue=queue,
                    task_id=task_id,
                    trace_id=tracing.current_trace_id(),
                )
                if next_claim is not None:
                    effects.dispatch.remove(nxt)
                    effects.events.extend(claimed.events)
                    handed = (nxt.run_id, nxt.node_id, nxt.attempt, next_claim)
            return effects, handed

        effects, handed = self.durably("record", record)
        self.after_commit(effects)
        return handed

    def _upstream_steps(
        self, run_id: str, node_id: str, steps: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The outputs of the steps upstream of `node_id`: all a template may read."""
        if not steps:
            return {}
        plan = cached_plan(run_id)
        if plan is None:
            with self.db.read() as session:
                run = session.get(RunRow, run_id)
                plan = run.plan if run is not None else {"nodes": {}}
        upstream = engine.upstream_among(plan, node_id, steps)
        return {n: v for n, v in steps.items() if n in upstream}

    def _handoff_candidate(self, effects: runs.Effects, queue: str) -> Any:
        """The first successor ready on this message's queue (None when hand-off is off)."""
        if not self.settings.worker_handoff or not queue or self.stopping:
            return None
        return next((d for d in effects.dispatch if d.queue == queue), None)

    def _orchestrate(self, claim: runs.Claim, ctx: StepContext) -> None:
        """Foreach, approval and sub-workflow steps (see `conveyor.executor.orchestrate`)."""
        run_id, node_id, attempt = ctx.run_id, ctx.node_id, ctx.attempt
        with recording() as notes:
            result, effects = self._orchestrated(claim, ctx)
        masker = Masker(ctx.secrets_to_mask)
        inputs = rendered_inputs(claim.node.get("data"), notes, masker.value)
        if effects is not None:  # waiting (approval, sub-workflow): the attempt stays open
            self.after_commit(effects)
            if inputs is not None:
                try:
                    with self.db.transaction() as session:
                        runs.keep_rendered_inputs(session, run_id, node_id, attempt, inputs)
                except DBAPIError:  # a view of the attempt; the wait itself is committed
                    log.warning("rendered inputs not recorded", run_id=run_id, exc_info=True)
            return
        result = dataclasses.replace(result, rendered_inputs=inputs)
        effects = self.durably(
            "record",
            lambda session, _retried: runs.finish_step(
                session, run_id, node_id, attempt, result, rand=random.random
            ),
        )
        self.after_commit(effects)

    def _orchestrated(
        self, claim: runs.Claim, ctx: StepContext
    ) -> tuple[runs.Result, runs.Effects | None]:
        """Carry out an orchestrated step: its result to record, or the effects of a wait
        already committed (then there is nothing to record now)."""
        run_id, node_id, attempt = ctx.run_id, ctx.node_id, ctx.attempt
        node_type = claim.node["type"]
        effects: runs.Effects | None = None
        result = runs.Result(succeeded=False, outputs={})
        try:
            if node_type == nt.FOREACH:
                reporter = ForeachProgress(
                    db=self.db,
                    publish=self.bus.publish,
                    run_id=run_id,
                    node_id=node_id,
                    attempt=attempt,
                )
                try:
                    result = orchestrate.run_foreach(claim, ctx, progress=reporter.update)
                finally:
                    reporter.close()  # every progress event precedes the step's end
            elif node_type == nt.APPROVAL:
                message = orchestrate.approval_message(claim, ctx)
                with self.db.transaction() as session:
                    effects = waits.begin_approval(
                        session,
                        run_id,
                        node_id,
                        attempt,
                        message=message,
                        timeout_s=orchestrate.approval_timeout(claim),
                    )
            else:
                child = orchestrate.start_child(claim, ctx, self._executor_stub())
                if (claim.node.get("data") or {}).get("wait", True) is False:
                    result = to_result(orchestrate.child_started(child))
                else:
                    with self.db.transaction() as session:
                        effects = waits.begin_child_wait(
                            session,
                            run_id,
                            node_id,
                            attempt,
                            child_run_id=child.run_id,
                            timeout_s=orchestrate.child_wait_timeout(claim),
                            rand=random.random,
                        )
        except StepError as failure:
            result = to_result(_masked_failure(failure, ctx))
        except Exception as exc:  # a bug or a lost database must not leave the step RUNNING
            log.exception("orchestrated step crashed", run_id=run_id, step_id=node_id)
            crash = StepError(ErrorCategory.INTERNAL, f"{type(exc).__name__}: {exc}")
            result = to_result(_masked_failure(crash, ctx))
            effects = None
        return result, effects

    def _executor_stub(self) -> executor_service_pb2_grpc.ExecutorServiceStub:
        if self._stub is None:
            channel = sync_channel(self.settings.executor_addr)
            self._stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
        return self._stub

    def _live_log(self, ctx: StepContext) -> LiveLog:
        """Stream the attempt's output as STEP_LOG events (wires `ctx.on_output`)."""
        live = LiveLog(
            db=self.db,
            publish=self.bus.publish,
            run_id=ctx.run_id,
            node_id=ctx.node_id,
            attempt=ctx.attempt,
            cap=self.settings.live_log_cap,
        )
        ctx.on_output = live.write
        return live

    def _cancel_check(self, run_id: str, node_id: str, attempt: int) -> Callable[[], bool]:
        last = [time.monotonic()]

        def check() -> bool:
            now = time.monotonic()
            if now - last[0] < CANCEL_POLL_S:
                return False
            last[0] = now
            try:
                with self.db.read() as session:
                    return runs.step_cancelled(session, run_id, node_id, attempt)
            except DBAPIError:  # unreachable database: keep running, ask again next time
                log.warning("cancel check failed", run_id=run_id, step_id=node_id, exc_info=True)
                return False

        return check


def _masked_failure(failure: StepError, ctx: StepContext) -> StepOutcome:
    masker = Masker(ctx.secrets_to_mask)
    outcome = failure.outcome()
    outcome.error_message = masker.text(outcome.error_message or "")
    return outcome


def to_result(outcome: StepOutcome) -> runs.Result:
    """A runner's outcome in the form the executor records."""
    usage = outcome.usage
    exit_code = outcome.outputs.get("exit_code")
    category = outcome.error_category
    return runs.Result(
        succeeded=outcome.succeeded,
        outputs=outcome.outputs,
        error_category=str(category.value if hasattr(category, "value") else category)
        if category
        else None,
        error_message=outcome.error_message,
        handle=outcome.handle,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        wall_s=usage.wall_s if usage else None,
        cpu_user_s=usage.cpu_user_s if usage else None,
        cpu_system_s=usage.cpu_system_s if usage else None,
        max_rss_kb=usage.max_rss_kb if usage else None,
        rendered_inputs=outcome.rendered_inputs,
    )
