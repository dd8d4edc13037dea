"""What the dashboard shows of running and ended steps, through the real stack: an attempt's
rendered inputs with secrets masked, a foreach's progress while it runs, and what each worker
is running, named as the attempts name it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

SECRET = "hunter2-insight-Secret"
SECRET_ENV = {"CONVEYOR_SECRET_API_KEY": SECRET}


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp(f"insight-{request.param}")
    if request.param == "distributed":
        with harness.distributed(
            tmp, POSTGRES_URL, REDIS_URL, workers=1, extra_env=SECRET_ENV
        ) as info:
            yield info
        return
    saved = {k: os.environ.get(k) for k in SECRET_ENV}
    os.environ.update(SECRET_ENV)  # the embedded worker reads its secrets at start
    try:
        with harness.embedded(tmp) as addresses:
            yield addresses
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[Client]:
    with Client(stack["grpc"], token=stack["token"]) as c:
        yield c


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with harness.http_client(stack) as c:
        yield c


def test_attempts_record_their_rendered_inputs_with_secrets_masked(
    client: Client, http: httpx.Client
) -> None:
    doc = wf.doc(
        "it-rendered-inputs",
        [
            wf.cmd(
                "call",
                ["echo", "user={{ params.user }}", "key={{ secrets.API_KEY }}"],
                env={"AUTH": "Bearer {{ secrets.API_KEY | upper }}"},
            )
        ],
        [],
        {"type": "object", "properties": {"user": {"type": "string", "default": "ops"}}},
    )
    job = client.create_job(doc).job
    run = client.start_run(job.job_id, {"user": "alice"})
    list(client.watch(run.run_id))
    reply = http.get(f"/v1/runs/{run.run_id}")
    assert reply.status_code == 200, reply.text
    [step] = reply.json()["run"]["steps"]
    assert step["state"] == "STEP_STATE_SUCCEEDED"
    [attempt] = step["executions"]
    inputs = attempt["rendered_inputs"]  # JSON text on gRPC, an object over HTTP
    text = json.dumps(inputs)
    assert SECRET not in text and SECRET.upper() not in text
    assert inputs["argv"] == ["echo", "user=alice", "key=***"]
    assert inputs["env"] == {"AUTH": "Bearer ***"}


def test_a_foreach_reports_its_progress_while_it_runs(client: Client) -> None:
    items = [f"i{n}" for n in range(8)]
    doc = wf.doc(
        "it-foreach-progress",
        [
            {
                "id": "loop",
                "type": "logic.foreach",
                "data": {"items": items, "concurrency": 1},
            },
            {
                "id": "work",
                "type": "action.command",
                "parentId": "loop",
                "data": {"argv": ["python3", "-c", "import time; time.sleep(0.4)"]},
            },
        ],
        [],
    )
    job = client.create_job(doc).job
    run = client.start_run(job.job_id, {})
    events = list(client.watch(run.run_id))
    progress = [
        e for e in events if e.HasField("step_progress") and e.step_progress.node_id == "loop"
    ]
    assert progress, [e.WhichOneof("payload") for e in events]
    counts = [(p.step_progress.items_done, p.step_progress.items_total) for p in progress]
    assert counts[0] == (0, 8)
    assert all(total == 8 for _done, total in counts)
    done = [d for d, _t in counts]
    assert done == sorted(done) and any(0 < d < 8 for d in done)
    # Every progress event comes while the foreach runs: after RUNNING, before its end.
    loop_states = [
        (e.sequence, e.step_state_changed.state)
        for e in events
        if e.HasField("step_state_changed") and e.step_state_changed.node_id == "loop"
    ]
    running = min(s for s, st in loop_states if st == run_pb2.STEP_STATE_RUNNING)
    ended = max(s for s, _st in loop_states)
    assert all(running < p.sequence < ended for p in progress)
    assert progress[-1].step_progress.attempt == 1


def test_a_worker_lists_what_it_runs_under_the_name_its_attempts_record(
    client: Client, http: httpx.Client
) -> None:
    doc = wf.doc(
        "it-worker-running",
        [wf.cmd("nap", ["python3", "-c", "import time; time.sleep(4)"])],
        [],
    )
    job = client.create_job(doc).job
    run = client.start_run(job.job_id, {})
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        for worker in http.get("/v1/workers").json().get("workers", []):
            running = [r for r in worker.get("running", []) if r["run_id"] == run.run_id]
            seen.extend({"hostname": worker["hostname"], **r} for r in running)
        time.sleep(0.2)
    assert seen, "no worker listed the running attempt"
    [entry] = seen
    assert entry["node_id"] == "nap" and entry["attempt"] == 1 and entry["start_time"]
    list(client.watch(run.run_id))
    [attempt] = client.get_run(run.run_id).steps[0].executions
    assert attempt.worker == entry["hostname"]
    assert "@" in attempt.worker


def test_a_waiting_approval_shows_the_message_it_rendered(
    client: Client, http: httpx.Client
) -> None:
    doc = wf.doc(
        "it-approval-inputs",
        [
            {
                "id": "ask",
                "type": "action.approval",
                "data": {"message": "Deploy {{ params.version }} using {{ secrets.API_KEY }}?"},
            }
        ],
        [],
        {"type": "object", "properties": {"version": {"type": "string"}}},
    )
    job = client.create_job(doc).job
    run = client.start_run(job.job_id, {"version": "1.2.3"})
    deadline = time.monotonic() + 30
    attempt: dict[str, Any] = {}
    while not attempt.get("rendered_inputs") and time.monotonic() < deadline:
        [step] = http.get(f"/v1/runs/{run.run_id}").json()["run"]["steps"]
        attempt = (step.get("executions") or [{}])[-1]
        time.sleep(0.1)
    assert step["state"] == "STEP_STATE_WAITING"
    inputs = attempt["rendered_inputs"]
    assert inputs["message"] == "Deploy 1.2.3 using ***?"
    # The decision ends the attempt; what it rendered stays.
    decided = http.post(
        f"/v1/runs/{run.run_id}/steps/ask:decide",
        json={"decision": "APPROVAL_DECISION_APPROVE", "comment": "ok"},
    )
    assert decided.status_code == 200, decided.text
    list(client.watch(run.run_id))
    [step] = http.get(f"/v1/runs/{run.run_id}").json()["run"]["steps"]
    assert step["state"] == "STEP_STATE_SUCCEEDED"
    assert step["executions"][-1]["rendered_inputs"] == inputs
