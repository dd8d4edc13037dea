"""Distributed mode: committed work survives a broker that is down, and SIGTERM is graceful."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

pytestmark = pytest.mark.distributed


def _wait_for(predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("condition not met in time")


@pytest.fixture
def broken_broker(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Every service up, but the broker URL points at a port where nothing listens."""
    env = {"CONVEYOR_BROKER_URL": f"redis://127.0.0.1:{harness.free_port()}/0"}
    with harness.distributed(tmp_path, POSTGRES_URL, REDIS_URL, workers=0, extra_env=env) as info:
        yield info


def test_start_run_is_committed_and_answered_while_the_broker_is_down(
    broken_broker: dict[str, Any],
) -> None:
    client = Client(broken_broker["grpc"], token=broken_broker["token"])
    try:
        job = client.create_job(wf.doc("broker-down", [wf.cmd("work", ["true"])], [])).job
        run = client.start_run(job.job_id, {})  # answered, not INTERNAL
        stored = client.get_run(run.run_id)
    finally:
        client.close()
    assert stored.run_id == run.run_id
    steps = {s.node_id: s for s in stored.steps}
    assert steps["work"].state == run_pb2.STEP_STATE_QUEUED  # the sweeper will send it


@pytest.fixture
def graceful(tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = {"CONVEYOR_SHUTDOWN_GRACE_S": "3", "CONVEYOR_REQUEUE_AFTER_S": "5"}
    with harness.distributed(tmp_path, POSTGRES_URL, REDIS_URL, workers=1, extra_env=env) as info:
        yield info


def test_sigterm_finishes_short_steps_and_hands_long_ones_back(
    graceful: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "long-started-once"
    long_script = f"test -e {marker} && exit 0; touch {marker}; sleep 120"
    text = wf.doc(
        "graceful",
        [
            wf.cmd("short", ["sleep", "1"]),
            wf.cmd("long", ["sh", "-c", long_script]),
        ],
        [],
    )
    client = Client(graceful["grpc"], token=graceful["token"])
    health_channel = grpc.insecure_channel(graceful["monitor"])
    try:
        job = client.create_job(text).job
        run = client.start_run(job.job_id, {})

        def both_running() -> bool:
            states = {s.node_id: s.state for s in client.get_run(run.run_id).steps}
            return states == {
                "short": run_pb2.STEP_STATE_RUNNING,
                "long": run_pb2.STEP_STATE_RUNNING,
            }

        _wait_for(both_running)
        _wait_for(marker.exists)
        worker = graceful["procs"][-1]
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)  # the grace (3 s) bounds the wait; no step stays behind
        assert worker.returncode == 0

        mid = {s.node_id: s for s in client.get_run(run.run_id).steps}
        assert mid["short"].state == run_pb2.STEP_STATE_SUCCEEDED
        assert mid["long"].state == run_pb2.STEP_STATE_QUEUED  # handed back, not RUNNING
        first = mid["long"].executions[0]
        assert first.error_category == run_pb2.ERROR_CATEGORY_WORKER_LOST
        assert "handed back" in first.error_message

        graceful["procs"].append(graceful["spawn"]("worker-2", "worker", "--concurrency", "2"))
        list(client.watch(run.run_id))
        final = client.get_run(run.run_id)
        assert final.state == run_pb2.RUN_STATE_SUCCEEDED, final.error_message
        assert {s.node_id: s.attempts for s in final.steps} == {"short": 1, "long": 2}

        # A service on SIGTERM reports NOT_SERVING before it goes away.
        monitor = graceful["procs"][2]
        watch = health_pb2_grpc.HealthStub(health_channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        os.killpg(monitor.pid, signal.SIGTERM)
        statuses = []
        try:
            for reply in watch:
                statuses.append(reply.status)
        except grpc.RpcError:
            pass
        assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
        monitor.wait(timeout=30)
        assert monitor.returncode == 0
    finally:
        health_channel.close()
        client.close()
