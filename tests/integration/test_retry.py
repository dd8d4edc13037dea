"""RetryRun: a failed run resumes from the failed step, reusing what succeeded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.kernel.grpcserver import error_details
from tests.integration import harness
from tests.integration import workflows as wf


def _retry_doc(tmp: Path) -> str:
    count, mark = tmp / "count", tmp / "mark"
    return wf.doc(
        f"retry-{tmp.name}",
        [
            wf.cmd("a", ["sh", "-c", f"echo ran >> {count}; echo hello"]),
            {"id": "cond", "type": "logic.condition", "data": {"expression": "params.go"}},
            wf.cmd("yes", ["echo", "taken"]),
            wf.cmd("no", ["echo", "not taken"]),
            wf.cmd("b", ["test", "-e", str(mark)]),
            wf.cmd("c", ["echo", "{{ steps.a.stdout | trim }}"]),
        ],
        [("a", "cond"), ("cond", "yes", "true"), ("cond", "no", "false"), ("a", "b"), ("b", "c")],
        parameters={
            "type": "object",
            "properties": {"go": {"type": "boolean", "default": True}},
        },
    )


def _wait(client: Client, run_id: str) -> run_pb2.Run:
    for _ in client.watch(run_id):
        pass
    return client.get_run(run_id)


def test_retry_reuses_succeeded_steps_and_runs_the_rest(client: Client, tmp_path: Path) -> None:
    job = client.create_job(_retry_doc(tmp_path)).job
    first = _wait(client, client.start_run(job.job_id, {}).run_id)
    assert first.state == run_pb2.RUN_STATE_FAILED
    (tmp_path / "mark").touch()

    request = executor_service_pb2.RetryRunRequest(run_id=first.run_id, request_id=first.run_id)
    retried = client.executor.RetryRun(request).run
    assert client.executor.RetryRun(request).run.run_id == retried.run_id  # idempotent
    final = _wait(client, retried.run_id)

    assert final.state == run_pb2.RUN_STATE_SUCCEEDED, final.error_message
    assert final.trigger == run_pb2.RUN_TRIGGER_RETRY
    assert final.retry_of_run_id == first.run_id
    steps = {s.node_id: s for s in final.steps}
    for reused in ("a", "cond", "yes"):
        assert steps[reused].state == run_pb2.STEP_STATE_SUCCEEDED
        assert not steps[reused].executions, f"{reused} ran again"
    assert steps["no"].state == run_pb2.STEP_STATE_SKIPPED  # the branch decision is kept
    assert steps["b"].state == run_pb2.STEP_STATE_SUCCEEDED and len(steps["b"].executions) == 1
    assert steps["c"].stdout.strip() == "hello"  # the reused step's output is in scope
    assert (tmp_path / "count").read_text().splitlines() == ["ran"]


def test_retry_of_a_run_that_did_not_fail_is_refused(
    client: Client, stack: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "mark").touch()
    job = client.create_job(_retry_doc(tmp_path)).job
    done = _wait(client, client.start_run(job.job_id, {}).run_id)
    assert done.state == run_pb2.RUN_STATE_SUCCEEDED
    with pytest.raises(grpc.RpcError) as err:
        client.executor.RetryRun(executor_service_pb2.RetryRunRequest(run_id=done.run_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    reply = httpx.post(
        f"{stack['http']}/v1/runs/{done.run_id}:retry",
        json={},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "FAILED_PRECONDITION"
    with pytest.raises(grpc.RpcError) as err:
        client.executor.RetryRun(executor_service_pb2.RetryRunRequest(run_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        client.executor.RetryRun(executor_service_pb2.RetryRunRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_id" in [field for field, _, _ in error_details(err.value)[1]]
