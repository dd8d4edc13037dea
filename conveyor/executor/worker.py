"""The worker runtime: claims a step, runs it with the step runners, records the result."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from celery import Celery

from conveyor.executor import orchestrate, runs, waits
from conveyor.executor.celeryapp import send_steps
from conveyor.executor.livelog import LiveLog
from conveyor.executor.liveness import Heartbeater
from conveyor.executor.runners import StepContext, StepOutcome, execute
from conveyor.executor.runners.base import ErrorCategory, Masker, StepError
from conveyor.executor.secrets import read_secrets_file
from conveyor.executor.v1 import executor_service_pb2_grpc
from conveyor.kernel import tracing
from conveyor.kernel.bus import EventBus
from conveyor.kernel.db import Database
from conveyor.kernel.grpcserver import sync_channel
from conveyor.kernel.settings import Settings

log = structlog.get_logger(__name__)

SECRET_PREFIX = "CONVEYOR_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret
CANCEL_POLL_S = 0.5


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
        self.hostname = socket.gethostname()
        self.heartbeats = Heartbeater(db, settings.attempt_heartbeat_s)
        self._stub: executor_service_pb2_grpc.ExecutorServiceStub | None = None

    def after_commit(self, effects: runs.Effects) -> None:
        """Publish events, then send step messages."""
        self.bus.publish(effects.events)
        if effects.dispatch:
            send_steps(self.app, self.settings.broker_url, effects.dispatch)

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
        worker = str(getattr(request, "hostname", None) or self.hostname)
        delivery = getattr(request, "delivery_info", None) or {}
        queue = str(delivery.get("routing_key") or "")
        task_id = str(getattr(request, "id", "") or "")
        with self.db.transaction() as session:
            claim, effects = runs.claim_step(
                session,
                run_id,
                node_id,
                attempt,
                worker=worker,
                queue=queue,
                task_id=task_id,
                trace_id=tracing.current_trace_id(),
            )
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
        )
        self.heartbeats.add((run_id, node_id, attempt))
        try:
            if claim.node.get("type") in orchestrate.ORCHESTRATED:
                self._orchestrate(claim, ctx)
                return None
            live = self._live_log(ctx)
            try:
                outcome = execute(claim.node, ctx)
            finally:
                live.close()  # every chunk is written before the result that ends the step
        finally:
            self.heartbeats.discard((run_id, node_id, attempt))
        result = to_result(outcome)
        bound.info(
            "step attempt ended",
            succeeded=result.succeeded,
            category=result.error_category,
            wall_s=result.wall_s,
        )
        handed: tuple[str, str, int, runs.Claim] | None = None
        with self.db.transaction() as session:
            effects = runs.finish_step(
                session, run_id, node_id, attempt, result, rand=random.random
            )
            nxt = self._handoff_candidate(effects, queue)
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
        self.after_commit(effects)
        return handed

    def _handoff_candidate(self, effects: runs.Effects, queue: str) -> Any:
        """The first successor ready on this message's queue (None when hand-off is off)."""
        if not self.settings.worker_handoff or not queue:
            return None
        return next((d for d in effects.dispatch if d.queue == queue), None)

    def _orchestrate(self, claim: runs.Claim, ctx: StepContext) -> None:
        """Foreach, approval and sub-workflow steps (see `conveyor.executor.orchestrate`)."""
        run_id, node_id, attempt = ctx.run_id, ctx.node_id, ctx.attempt
        node_type = claim.node["type"]
        effects: runs.Effects | None = None
        try:
            if node_type == "logic.foreach":
                result = orchestrate.run_foreach(claim, ctx)
            elif node_type == "action.approval":
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
        if effects is not None:
            self.after_commit(effects)
            return
        with self.db.transaction() as session:
            effects = runs.finish_step(
                session, run_id, node_id, attempt, result, rand=random.random
            )
        self.after_commit(effects)

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
            with self.db.transaction() as session:
                return runs.step_cancelled(session, run_id, node_id, attempt)

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
    )
