"""Queues, workers, alerts and metrics in the distributed mode (separate OS processes)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import duration_pb2

from conveyor.cli.client import Client
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.monitor.v1 import (
    alert_service_pb2,
    alert_service_pb2_grpc,
    insight_service_pb2,
    insight_service_pb2_grpc,
)
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

pytestmark = pytest.mark.distributed

T = TypeVar("T")
IDLE_QUEUE = "ops-idle"
WAIT_S = 90.0


def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll until probe returns a value; fail with `what` after a generous deadline."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Receiver:
    """A local webhook endpoint recording every JSON POST."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with harness.distributed(
        tmp_path_factory.mktemp("ops"), POSTGRES_URL, REDIS_URL, workers=1
    ) as info:
        yield info


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def stubs(stack: dict[str, Any]) -> Iterator[tuple[Any, Any, Client]]:
    channel = harness.grpc_channel(stack)
    client = Client(stack["grpc"], token=stack["token"])
    yield (
        insight_service_pb2_grpc.InsightServiceStub(channel),
        alert_service_pb2_grpc.AlertServiceStub(channel),
        client,
    )
    client.close()
    channel.close()


def _rule(name: str, kind: int, url: str, **fields: Any) -> Any:
    return alert_service_pb2.CreateAlertRuleRequest(
        rule=alert_service_pb2.AlertRule(
            display_name=name, kind=kind, webhook_urls=[url], enabled=True, **fields
        )
    )


def _queue(insight: Any, name: str) -> Any:
    reply = insight.GetQueueStats(insight_service_pb2.GetQueueStatsRequest(queues=[name]))
    return reply.queues[0]


def test_queue_depth_rises_and_falls(
    stack: dict[str, Any], stubs: tuple[Any, Any, Client], receiver: Receiver
) -> None:
    insight, alerts, client = stubs
    alerts.CreateAlertRule(
        _rule(
            "idle queue deep",
            alert_service_pb2.ALERT_KIND_QUEUE_DEPTH,
            receiver.url,
            queue=IDLE_QUEUE,
            threshold=2,
        )
    )
    text = wf.doc("ops-idle-queue", [wf.cmd("only", ["true"], queue=IDLE_QUEUE)], [])
    job = client.create_job(text).job
    runs = [client.start_run(job.job_id, {}).run_id for _ in range(3)]
    assert _queue(insight, IDLE_QUEUE).depth == 3  # sent before StartRun returned
    waiting = _queue(insight, IDLE_QUEUE)
    assert waiting.oldest_age_source == insight_service_pb2.AGE_SOURCE_DATABASE
    assert waiting.consumers == 0
    fired = eventually(
        lambda: next(
            (p for p in receiver.posts if p["kind"] == "QUEUE_DEPTH" and p["state"] == "FIRING"),
            None,
        ),
        "the queue depth alert",
    )
    assert fired["subject"] == IDLE_QUEUE and "3 messages" in fired["text"]

    stack["spawn"]("drainer", "worker", "--queues", IDLE_QUEUE, "--hostname", "drainer@%h")
    for run_id in runs:
        assert list(client.watch(run_id))[-1].run_state_changed.state  # each run reaches its end
    assert _queue(insight, IDLE_QUEUE).depth == 0
    drained = _queue(insight, IDLE_QUEUE)
    assert not drained.HasField("oldest_age")
    assert drained.rate_in > 0 and drained.rate_out > 0
    eventually(
        lambda: next(
            (p for p in receiver.posts if p["kind"] == "QUEUE_DEPTH" and p["state"] == "RESOLVED"),
            None,
        ),
        "the queue depth alert to resolve",
    )
    listed = alerts.ListAlerts(alert_service_pb2.ListAlertsRequest()).alerts
    depth_alerts = [a for a in listed if a.rule_name == "idle queue deep"]
    assert len(depth_alerts) == 1  # one alert for the whole spell, not one per evaluation
    assert depth_alerts[0].state == alert_service_pb2.ALERT_STATE_RESOLVED
    assert depth_alerts[0].deliveries == 2
    stats = insight.GetJobStats(insight_service_pb2.GetJobStatsRequest(job_id=job.job_id))
    assert stats.total_runs == 3 and stats.success_rate == 1.0
    assert [(c.state, c.count) for c in stats.runs_by_state] == [(run_pb2.RUN_STATE_SUCCEEDED, 3)]
    assert stats.HasField("p95_duration") and stats.mean_attempts == 1.0


def test_metrics_exposition_passes_promtool(
    stack: dict[str, Any], stubs: tuple[Any, Any, Client]
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    _, _, client = stubs
    job = client.create_job(wf.doc("ops-metrics", [wf.cmd("ok", ["true"])], [])).job
    client_run = client.start_run(job.job_id, {})
    assert list(client.watch(client_run.run_id))
    # The gateway's /metrics holds every service; wait until the monitor counted the run.
    body = eventually(
        lambda: (
            text
            if 'conveyor_runs_total{job="ops-metrics"'
            in (
                text := httpx.get(
                    f"{stack['http']}/metrics", timeout=10, headers=harness.http_headers(stack)
                ).text
            )
            else None
        ),
        "the run in conveyor_runs_total",
    )
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body.encode(), capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for name in (
        "conveyor_steps_total{",
        "conveyor_step_duration_seconds_bucket{",
        "conveyor_queue_depth{",
        "conveyor_queue_oldest_age_seconds{",
        "conveyor_workers{",
        "conveyor_schedule_lag_seconds_count{",
        "conveyor_event_delivery_seconds_bucket{",
        'conveyor_scrape_up{service="translator"} 1.0',
        'conveyor_scrape_up{service="executor"} 1.0',
        'conveyor_scrape_up{service="monitor"} 1.0',
        'conveyor_scrape_up{service="scheduler"} 1.0',
    ):
        assert name in body, name


def test_bad_input_is_rejected(stubs: tuple[Any, Any, Client]) -> None:
    insight, alerts, _ = stubs
    with pytest.raises(grpc.RpcError) as err:
        alerts.CreateAlertRule(
            _rule(
                "",
                alert_service_pb2.ALERT_KIND_QUEUE_AGE,
                "ftp://x",
                max_duration=duration_pb2.Duration(),
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        insight.GetJobStats(insight_service_pb2.GetJobStatsRequest(job_id="no-such-job"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_failed_run_alert_fires_once_and_resolves_on_success(
    stubs: tuple[Any, Any, Client], receiver: Receiver
) -> None:
    _, alerts, client = stubs
    alerts.CreateAlertRule(
        _rule("exit job failed", alert_service_pb2.ALERT_KIND_RUN_FAILED, receiver.url,
              job="ops-exit")
    )  # fmt: skip
    text = wf.doc(
        "ops-exit",
        [wf.cmd("exit", ["python3", "-c", "import sys; sys.exit(int(sys.argv[1]))",
                         "{{ params.code }}"])],
        [],
        parameters={"type": "object", "properties": {"code": {"type": "integer"}}},
    )  # fmt: skip
    job = client.create_job(text).job

    def posts(state: str) -> list[dict[str, Any]]:
        return [p for p in receiver.posts if p["rule"] == "exit job failed" and p["state"] == state]

    for _ in range(2):  # a second failure while firing is not announced again
        run = client.start_run(job.job_id, {"code": 3})
        assert (
            list(client.watch(run.run_id))[-1].run_state_changed.state == run_pb2.RUN_STATE_FAILED
        )
        eventually(lambda: posts("FIRING") or None, "the failed run alert")
    good = client.start_run(job.job_id, {"code": 0})
    assert (
        list(client.watch(good.run_id))[-1].run_state_changed.state == run_pb2.RUN_STATE_SUCCEEDED
    )
    resolved = eventually(lambda: posts("RESOLVED") or None, "the failed run alert to resolve")
    assert len(posts("FIRING")) == 1 and len(resolved) == 1
    assert resolved[0]["subject"] == "ops-exit" and "[RESOLVED]" in resolved[0]["text"]


@pytest.mark.parametrize("via", ["http", "grpc"])
def test_trace_context_reaches_every_attempt_row(stack: dict[str, Any], via: str) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    client = Client(stack["grpc"], token=stack["token"])
    try:
        text = wf.doc(
            "ops-traced", [wf.cmd("first", ["true"]), wf.cmd("second", ["true"])],
            [("first", "second")],
        )  # fmt: skip
        job = client.create_job(text).job
        if via == "http":
            started = httpx.post(
                f"{stack['http']}/v1/jobs/{job.job_id}:run",
                json={},
                headers={"traceparent": traceparent, **harness.http_headers(stack)},
                timeout=30,
            )
            assert started.status_code == 200, started.text
            run_id = started.json()["run"]["run_id"]
        else:
            reply = client.executor.StartRun(
                executor_service_pb2.StartRunRequest(job_id=job.job_id),
                metadata=[("traceparent", traceparent)],
                timeout=30,
            )
            run_id = reply.run.run_id
        assert list(client.watch(run_id))[-1].run_state_changed.state == run_pb2.RUN_STATE_SUCCEEDED
    finally:
        client.close()
    with psycopg.connect(stack["database_url"]) as conn:
        rows = conn.execute(
            "SELECT node_id, trace_id FROM job_executions WHERE run_id = %s ORDER BY node_id",
            (run_id,),
        ).fetchall()
    # "second" was sent by the worker that ran "first": the context went through Celery twice.
    assert rows == [("first", trace_id), ("second", trace_id)]


# Last: it kills the only worker of the default queue.
def test_killed_worker_goes_offline_and_alerts(
    stack: dict[str, Any], stubs: tuple[Any, Any, Client], receiver: Receiver
) -> None:
    insight, alerts, _ = stubs
    alerts.CreateAlertRule(
        _rule("worker lost", alert_service_pb2.ALERT_KIND_WORKER_OFFLINE, receiver.url)
    )

    def worker0() -> Any:
        reply = insight.ListWorkers(insight_service_pb2.ListWorkersRequest())
        return next((w for w in reply.workers if w.hostname.startswith("worker0@")), None)

    online = eventually(
        lambda: (
            w
            if (w := worker0())
            and w.state == insight_service_pb2.WORKER_STATE_ONLINE
            and w.concurrency
            else None
        ),
        "worker0 online with its configuration",
    )
    assert "default" in online.queues and online.concurrency == 4
    proc = next(p for p in stack["procs"] if "--hostname" in p.args and "worker0@%h" in p.args)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    offline = eventually(
        lambda: (
            w if (w := worker0()) and w.state == insight_service_pb2.WORKER_STATE_OFFLINE else None
        ),
        "worker0 to show offline",
    )
    assert offline.last_heartbeat_time.seconds > 0
    post = eventually(
        lambda: next(
            (
                p
                for p in receiver.posts
                if p["kind"] == "WORKER_OFFLINE" and p["subject"] == online.hostname
            ),
            None,
        ),
        "the worker offline webhook",
    )
    assert post["state"] == "FIRING"
    assert online.hostname in post["text"]
    firing = alerts.ListAlerts(
        alert_service_pb2.ListAlertsRequest(state=alert_service_pb2.ALERT_STATE_FIRING)
    ).alerts
    assert [a.subject for a in firing if a.rule_name == "worker lost"] == [online.hostname]
