"""A worker killed mid-step: its attempt becomes WORKER_LOST and the step is retried elsewhere."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The distributed suite with fast heartbeats, so a lost worker is noticed in seconds."""
    tmp = tmp_path_factory.mktemp("liveness")
    env = {"CONVEYOR_ATTEMPT_HEARTBEAT_S": "0.5", "CONVEYOR_WORKER_LOST_AFTER_S": "3"}
    with harness.distributed(tmp, POSTGRES_URL, REDIS_URL, workers=1, extra_env=env) as info:
        yield info


def test_killed_worker_attempt_is_lost_and_retried(stack: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt-started"
    script = f"test -e {marker} && echo second && exit 0; touch {marker}; sleep 60"
    text = wf.doc(
        "lost-worker",
        [
            wf.cmd(
                "work",
                ["sh", "-c", script],
                retries={"max": 1, "backoff_s": 0},
            ),
            wf.cmd("after", ["echo", "{{ steps.work.stdout | trim }}"]),
        ],
        [("work", "after")],
    )
    client = Client(stack["grpc"], token=stack["token"])
    try:
        job = client.create_job(text).job
        run = client.start_run(job.job_id, {})
        for ev in client.watch(run.run_id):
            if (ev.step_state_changed.node_id, ev.step_state_changed.state) == (
                "work",
                run_pb2.STEP_STATE_RUNNING,
            ):
                break
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = stack["procs"][-1]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        stack["procs"].append(stack["spawn"]("worker-replacement", "worker", "--concurrency", "2"))

        events = list(client.watch(run.run_id))
        assert events[-1].HasField("run_state_changed")
        final = client.get_run(run.run_id)
    finally:
        client.close()
    assert final.state == run_pb2.RUN_STATE_SUCCEEDED, final.error_message
    steps = {s.node_id: s for s in final.steps}
    work = steps["work"]
    assert work.attempts == 2
    first, second = work.executions
    assert first.state == run_pb2.STEP_STATE_FAILED
    assert first.error_category == run_pb2.ERROR_CATEGORY_WORKER_LOST
    assert "stopped heartbeating" in first.error_message
    assert second.state == run_pb2.STEP_STATE_SUCCEEDED
    assert steps["after"].stdout.strip() == "second"
