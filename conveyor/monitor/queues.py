"""Queue figures: depth and consumers from the broker, oldest age from the database.

Depth comes from a passive `queue_declare` through kombu, which every transport answers:
AMQP from the broker itself (message_count, consumer_count), Redis by summing LLEN over the
queue's priority lists, the memory transport from its in-process queues. None of them exposes
when a message was sent (Celery's messages carry no send time, and RabbitMQ's management API,
which could, is not assumed), so the oldest age is that of the oldest QUEUED step, which the
executor reports (RunStatsService.GetQueueBacklog). Consumers come from the broker on AMQP
and from online workers otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from conveyor.kernel.errors import Unavailable

MAX_QUEUES = 100


@dataclass(frozen=True)
class QueueFigures:
    """One queue's figures."""

    queue: str
    depth: int
    oldest_age_s: float | None
    consumers: int
    rate_in: float
    rate_out: float


def broker_kind(broker_url: str) -> str:
    """'redis', 'amqp' or 'memory'."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    return scheme


def broker_notes(kind: str) -> list[str]:
    """What this broker cannot tell, and where the figure comes from instead."""
    notes = [
        "oldest_age: Celery messages carry no send time; taken from the oldest QUEUED step "
        "in the database (a step waiting for a retry delay counts from when it was queued)",
        "rate_in/rate_out: steps queued on / started from the queue per second over the last "
        "minute (run events), counted since the monitor started",
    ]
    if kind == "amqp":
        notes.append(
            "depth and consumers: AMQP passive queue.declare; the management API (publish and "
            "deliver rates, unacked counts) is not used"
        )
    else:
        notes.append(
            f"consumers: the {kind} transport does not track consumers; counted from online "
            "workers known to consume the queue"
        )
    return notes


def broker_depths(app: object, queues: list[str]) -> dict[str, tuple[int, int]]:
    """(messages ready, consumers) per queue by passive declare; a missing queue is empty."""
    result: dict[str, tuple[int, int]] = {}
    try:
        with app.connection_for_read() as conn:  # type: ignore[attr-defined]
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            try:
                for queue in queues:
                    try:
                        ok = channel.queue_declare(queue=queue, passive=True)
                        result[queue] = (int(ok.message_count), int(ok.consumer_count))
                    except conn.channel_errors:
                        result[queue] = (0, 0)
                        # AMQP closes a channel whose passive declare failed.
                        channel = conn.channel()
            finally:
                channel.close()
    except Exception as exc:
        raise Unavailable(f"broker unreachable: {type(exc).__name__}: {exc}") from exc
    return result


def assemble(
    *,
    queues: list[str],
    depths: dict[str, tuple[int, int]],
    queued: dict[str, tuple[int, datetime | None]],
    rates: dict[str, tuple[float, float]],
    worker_consumers: dict[str, int],
    broker_counts_consumers: bool,
    now: datetime,
) -> list[QueueFigures]:
    """Combine broker, database and event figures per queue (pure)."""
    figures = []
    for queue in sorted(set(queues))[:MAX_QUEUES]:
        depth, consumers = depths.get(queue, (0, 0))
        _, oldest = queued.get(queue, (0, None))
        rate_in, rate_out = rates.get(queue, (0.0, 0.0))
        figures.append(
            QueueFigures(
                queue=queue,
                depth=depth,
                oldest_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else None,
                consumers=consumers if broker_counts_consumers else worker_consumers.get(queue, 0),
                rate_in=rate_in,
                rate_out=rate_out,
            )
        )
    return figures
