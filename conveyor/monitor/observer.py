"""The monitor's background work: queue and worker gauges, alert evaluation and delivery."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import structlog

from conveyor.kernel import metrics
from conveyor.kernel.db import Database
from conveyor.kernel.ids import utcnow
from conveyor.kernel.settings import Settings
from conveyor.monitor import alerting, alertstore, queues
from conveyor.monitor.runstats import RunStats
from conveyor.monitor.workers import WorkerTracker

log = structlog.get_logger(__name__)

WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_BACKOFF_S = 0.5
# After a start, worker-offline alerts are neither resolved nor raised until every live
# worker has had time to send a heartbeat (Celery's slowest default period is 2 s).
WORKER_WARMUP_S = 10.0
PRUNE_EVERY_S = 3600.0
# Alert rules on runs look at the runs that ended this recently.
RUN_LOOKBACK = timedelta(days=7)


async def post_webhook(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> str:
    """POST JSON with retries on connection errors and 5xx/429; '' on success, else the error."""
    error = ""
    for attempt in range(WEBHOOK_ATTEMPTS):
        try:
            response = await client.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
            if response.status_code < 300:
                return ""
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                return error
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt + 1 < WEBHOOK_ATTEMPTS:
            await asyncio.sleep(WEBHOOK_BACKOFF_S * 2**attempt)
    return error


class Observer:
    """Refreshes queue and worker figures and evaluates alert rules every interval."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        app: Any,
        tracker: WorkerTracker,
        runs: RunStats,
    ) -> None:
        self._settings = settings
        self._db = db
        self.runs = runs
        self._app = app
        self.tracker = tracker
        self.kind = queues.broker_kind(settings.broker_url)
        self._client = httpx.AsyncClient()
        self._started = time.monotonic()
        self._pruned_at: float | None = None

    async def close(self) -> None:
        """Close the webhook client and the channels to the executor and translator."""
        await self._client.aclose()
        self.runs.close()

    def _queue_names(self, queued: dict[str, Any]) -> list[str]:
        names = {q.strip() for q in self._settings.worker_queues.split(",") if q.strip()}
        names.add("default")
        names.update(queued)
        names.update(self.tracker.rates())
        for worker, _ in self.tracker.workers():
            names.update(worker.queues)
        return sorted(names)[: queues.MAX_QUEUES]

    def queue_figures(self, requested: list[str] | None = None) -> list[queues.QueueFigures]:
        """Current figures for the requested queues (or every known one); blocking."""
        queued = self.runs.queue_backlog()
        names = requested or self._queue_names(queued)
        depths = queues.broker_depths(self._app, names)
        consumers = {name: self.tracker.consumers(name) for name in names}
        return queues.assemble(
            queues=names,
            depths=depths,
            queued=queued,
            rates=self.tracker.rates(),
            worker_consumers=consumers,
            broker_counts_consumers=self.kind == "amqp",
            now=utcnow(),
        )

    def _facts(self) -> tuple[alerting.Facts, list[alerting.Rule], list[tuple[str, str, str]]]:
        now = utcnow()
        try:
            figures = self.queue_figures()
        except Exception:
            log.warning("queue figures unavailable", exc_info=True)
            figures = []
        for f in figures:
            metrics.QUEUE_DEPTH.labels(queue=f.queue).set(f.depth)
            metrics.QUEUE_OLDEST_AGE.labels(queue=f.queue).set(f.oldest_age_s or 0.0)
        seen = [(w.hostname, up) for w, up in self.tracker.workers()]
        metrics.WORKERS.labels(state="online").set(sum(1 for _, up in seen if up))
        metrics.WORKERS.labels(state="offline").set(sum(1 for _, up in seen if not up))
        known = time.monotonic() - self._started >= WORKER_WARMUP_S
        workers = seen if known else []
        if self._pruned_at is None or time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            with self._db.transaction() as session:
                alertstore.prune(session, now=now)
            self._pruned_at = time.monotonic()
        with self._db.read() as session:
            rules = alertstore.enabled_rules(session)
            firing = alertstore.firing_alerts(session)
        kinds = {r.kind for r in rules}
        # Asked of the executor only when a rule looks at them.
        watch_runs = kinds & {
            alerting.AlertKind.RUN_FAILED,
            alerting.AlertKind.CONSECUTIVE_FAILURES,
        }
        facts = alerting.Facts(
            now=now,
            ended_runs=self.runs.ended_runs(since=now - RUN_LOOKBACK) if watch_runs else [],
            running_steps=self.runs.running_steps()
            if alerting.AlertKind.STEP_DURATION in kinds
            else [],
            queues=[alerting.QueueFact(f.queue, f.depth, f.oldest_age_s) for f in figures],
            workers=workers,
            workers_known=known,
        )
        return facts, rules, firing

    def _apply(
        self, to_fire: list[alerting.Change], to_resolve: list[alerting.Change]
    ) -> list[tuple[alerting.Change, str, str]]:
        now = utcnow()
        out = []
        with self._db.transaction() as session:
            for change in to_fire:
                if not alertstore.rule_enabled(session, change.rule.id):
                    continue  # deleted or disabled since the facts were gathered
                row = alertstore.fire(session, change.rule, change.subject, change.message, now=now)
                out.append((change, row.id, alertstore.FIRING))
            for change in to_resolve:
                alertstore.resolve(session, change.alert_id, now=now)
                out.append((change, change.alert_id, alertstore.RESOLVED))
        return out

    async def evaluate_once(self) -> None:
        """Gather facts, fire and resolve alerts, deliver the changes."""
        facts, rules, firing = await asyncio.to_thread(self._facts)
        to_fire, to_resolve = alerting.reconcile(rules, facts, firing)
        if not to_fire and not to_resolve:
            return
        changes = await asyncio.to_thread(self._apply, to_fire, to_resolve)
        await asyncio.gather(*(self._deliver(c, alert_id, state) for c, alert_id, state in changes))

    async def _deliver(self, change: alerting.Change, alert_id: str, state: str) -> None:
        rule = change.rule
        log.info("alert state change", state=state, rule=rule.name, subject=change.subject)
        payload = {
            "text": alerting.slack_text(state, rule, change.subject, change.message),
            "state": state,
            "alert_id": alert_id,
            "rule_id": rule.id,
            "rule": rule.name,
            "kind": rule.kind.value,
            "subject": change.subject,
            "message": change.message,
            "time": utcnow().isoformat(),
        }
        for url in rule.webhook_urls:
            error = await post_webhook(self._client, url, payload)
            if error:
                log.warning("webhook delivery failed", url=url, error=error, alert_id=alert_id)
            await asyncio.to_thread(self._record, alert_id, error)

    def _record(self, alert_id: str, error: str) -> None:
        with self._db.transaction() as session:
            alertstore.record_delivery(session, alert_id, error)

    async def run_forever(self) -> None:
        """Evaluate every `alert_interval_s` until cancelled."""
        while True:
            try:
                await self.evaluate_once()
            except Exception:
                log.warning("alert evaluation failed", exc_info=True)
            await asyncio.sleep(self._settings.alert_interval_s)
