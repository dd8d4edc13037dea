"""The Celery application: at-least-once delivery settings and the one step task.

A message carries only (run_id, node_id, attempt); the database decides whether it is still
current, so a lost message is re-sent by the executor's sweeper and a repeated one is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery

from conveyor.executor import redistransport
from conveyor.kernel import tracing
from conveyor.kernel.logging import step_log_context
from conveyor.kernel.settings import Settings

TASK_NAME = "conveyor.run_step"
MAX_PRIORITY = 9

StepHandler = Callable[[str, str, int, Any], None]
_handler: StepHandler | None = None


def set_step_handler(handler: StepHandler) -> None:
    """Install the function the step task delegates to (the worker runtime)."""
    global _handler
    _handler = handler


def run_step(self: Any, run_id: str, node_id: str, attempt: int) -> None:
    """Execute one attempt of one step (thin adapter over the worker runtime)."""
    if _handler is None:
        raise RuntimeError("no worker runtime installed in this process")
    task_id = str(getattr(self.request, "id", "") or "")
    with step_log_context(run_id, node_id, attempt, task_id):
        _handler(run_id, node_id, attempt, self.request)


def make_celery(settings: Settings) -> Celery:
    """A Celery app for the configured broker, with Conveyor's delivery guarantees."""
    broker = settings.broker_url
    if broker.rstrip("/") == "memory:":
        # The memory transport ignores the host; naming one keeps kombu from warning about it
        # on every connection.
        broker = "memory://localhost/"
    app = Celery("conveyor", broker=broker, set_as_current=False)
    transport: dict[str, Any] = {}
    if settings.broker_url.startswith("memory://"):
        # The in-memory transport polls; the default 1 s would add a second per step.
        transport["polling_interval"] = 0.002
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        transport.update(
            priority_steps=list(range(MAX_PRIORITY + 1)),
            queue_order_strategy="priority",
            visibility_timeout=6 * 3600,
        )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_default_queue="default",
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=0,
        broker_transport_options=transport,
        # A redis:// URL gets kombu's Redis transport with one client per connection pool.
        broker_transport=redistransport.TRANSPORT if broker.startswith("redis://") else None,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Worker events (heartbeats, `worker-attempts`) are sent either way; task events
        # cost every step four messages that the monitor does not need.
        worker_send_task_events=settings.celery_task_events,
        task_send_sent_event=settings.celery_task_events,
        task_serializer="json",
        accept_content=["json"],
        enable_utc=True,
    )

    # One module-level callable for every app: Celery keeps a task name bound to the first
    # callable registered under it in this process.
    app.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=True)(run_step)
    return app


def broker_priority(broker_url: str, priority: int) -> int:
    """Conveyor priority (9 = most urgent) in the broker's terms (Redis: 0 = first)."""
    if broker_url.startswith(("redis://", "rediss://")):
        return MAX_PRIORITY - priority
    return priority


def send_steps(app: Celery, broker_url: str, dispatches: Iterable[Any]) -> None:
    """Send step messages (Dispatch objects) to their queues."""
    for d in dispatches:
        app.send_task(
            TASK_NAME,
            args=[d.run_id, d.node_id, d.attempt],
            queue=d.queue,
            priority=broker_priority(broker_url, d.priority),
            headers=tracing.inject(),
        )
