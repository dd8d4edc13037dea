"""The worker runtime: claims a step, runs it with the step runners, records the result."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery import Celery

from conveyor.executor import runs
from conveyor.executor.celeryapp import send_steps
from conveyor.executor.runners import StepContext, StepOutcome, execute
from conveyor.kernel import tracing
from conveyor.kernel.bus import EventBus
from conveyor.kernel.db import Database
from conveyor.kernel.settings import Settings

log = structlog.get_logger(__name__)

SECRET_PREFIX = "CONVEYOR_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret
CANCEL_POLL_S = 0.5


def load_secrets(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Secrets from CONVEYOR_SECRET_<NAME> environment variables."""
    env = os.environ if environ is None else environ
    return {k.removeprefix(SECRET_PREFIX): v for k, v in env.items() if k.startswith(SECRET_PREFIX)}


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
        self.secrets = load_secrets()
        self.hostname = socket.gethostname()

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
        """Run one attempt: claim it, execute it, record it, send the ready successors."""
        bound = log.bind(run_id=run_id, step_id=node_id, attempt=attempt)
        worker = str(getattr(request, "hostname", None) or self.hostname)
        delivery = getattr(request, "delivery_info", None) or {}
        queue = str(delivery.get("routing_key") or "")
        with self.db.transaction() as session:
            claim, effects = runs.claim_step(
                session,
                run_id,
                node_id,
                attempt,
                worker=worker,
                queue=queue,
                task_id=str(getattr(request, "id", "") or ""),
                trace_id=tracing.current_trace_id(),
            )
        self.after_commit(effects)
        if claim is None:
            bound.info("stale step message ignored")
            return
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
        outcome = execute(claim.node, ctx)
        result = to_result(outcome)
        bound.info(
            "step attempt ended",
            succeeded=result.succeeded,
            category=result.error_category,
            wall_s=result.wall_s,
        )
        with self.db.transaction() as session:
            effects = runs.finish_step(
                session, run_id, node_id, attempt, result, rand=random.random
            )
        self.after_commit(effects)

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
