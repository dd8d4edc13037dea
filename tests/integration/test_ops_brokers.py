"""Queue depth and consumers read from real brokers: Redis (priority lists) and RabbitMQ."""

from __future__ import annotations

import os
import time
import uuid

import kombu
import pytest

from conveyor.executor import redistransport
from conveyor.executor.celeryapp import TASK_NAME, broker_priority, make_celery
from conveyor.kernel.settings import Settings
from conveyor.monitor.queues import broker_depths
from tests.conftest import REDIS_URL
from tests.integration import harness

AMQP_URL = os.environ.get("CONVEYOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _send(app: object, broker_url: str, queue: str, priorities: list[int]) -> None:
    for p in priorities:
        app.send_task(  # type: ignore[attr-defined]
            TASK_NAME, args=["r", "n", 1], queue=queue, priority=broker_priority(broker_url, p)
        )


def test_redis_depth_sums_every_priority_list() -> None:
    with harness.redis_database(REDIS_URL) as url:
        app = make_celery(Settings(broker_url=url))
        _send(app, url, "ops-r", [0, 5, 9, 9])
        assert broker_depths(app, ["ops-r", "never-used"]) == {
            "ops-r": (4, 0),
            "never-used": (0, 0),
        }


def test_redis_channel_builds_one_client_per_connection_pool() -> None:
    with harness.redis_database(REDIS_URL) as url:
        app = make_celery(Settings(broker_url=url))
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            assert isinstance(channel, redistransport.Channel)
            first = channel._create_client()
            assert channel._create_client() is first
            assert first.connection_pool is channel.pool
            # A reconnect drops the pools (kombu's _disconnect_pools): a new pool, a new client.
            channel._disconnect_pools()
            second = channel._create_client()
            assert second is not first and second.connection_pool is channel.pool
            # Messages still go through: published with the shared client, then consumed.
            _send(app, url, "ops-shared", [1, 2])
            with conn.SimpleQueue("ops-shared", no_ack=False) as queue:
                bodies = [queue.get(timeout=5) for _ in range(2)]
                for message in bodies:
                    assert message.headers["task"] == TASK_NAME
                    message.ack()
            assert broker_depths(app, ["ops-shared"]) == {"ops-shared": (0, 0)}


def test_rediss_urls_keep_kombus_own_transport() -> None:
    app = make_celery(Settings(broker_url="rediss://127.0.0.1:6379/0"))
    assert app.conf.broker_transport is None
    assert make_celery(Settings(broker_url=REDIS_URL)).conf.broker_transport == (
        redistransport.TRANSPORT
    )


def _amqp_reachable() -> bool:
    try:
        with kombu.Connection(AMQP_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.mark.skipif(
    "CONVEYOR_TEST_AMQP_URL" not in os.environ and not _amqp_reachable(),
    reason="no RabbitMQ at the default local address (set CONVEYOR_TEST_AMQP_URL to require one)",
)
def test_rabbitmq_depth_and_consumers_by_passive_declare() -> None:
    queue = f"ops-{uuid.uuid4().hex[:8]}"
    app = make_celery(Settings(broker_url=AMQP_URL))
    try:
        _send(app, AMQP_URL, queue, [0, 3])
        # Publishing is asynchronous (no publisher confirms): the broker counts both messages
        # once it has routed them, which a busy machine can delay.
        expected = {queue: (2, 0), f"{queue}-missing": (0, 0)}
        deadline = time.monotonic() + 30
        while (seen := broker_depths(app, [queue, f"{queue}-missing"])) != expected:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        with kombu.Connection(AMQP_URL) as conn:
            q = kombu.Queue(queue, channel=conn.default_channel, no_declare=True)
            with conn.Consumer([q], callbacks=[], prefetch_count=1, auto_declare=False):
                depth, consumers = broker_depths(app, [queue])[queue]
                assert consumers == 1 and depth in (1, 2)  # one may be prefetched (unacked)
    finally:
        with kombu.Connection(AMQP_URL) as conn:
            conn.default_channel.queue_delete(queue)
