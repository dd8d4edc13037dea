"""End-to-end runs through the gateway, in the embedded and the distributed mode."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from conveyor.cli.client import Client
from conveyor.cli.render import run_json
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.kernel.grpcserver import error_details
from conveyor.monitor.v1 import monitor_service_pb2
from conveyor.translator.v1 import translator_service_pb2
from tests.integration import workflows as wf


def run_to_end(client: Client, text: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    job = client.create_job(text).job
    run = client.start_run(job.job_id, params or {})
    events = list(client.watch(run.run_id))
    assert events[-1].HasField("run_state_changed")
    return run_json(client.get_run(run.run_id))


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in result["steps"]}


def test_output_passing(client: Client) -> None:
    result = run_to_end(client, wf.OUTPUT_PASSING)
    assert result["state"] == "SUCCEEDED"
    s = steps(result)
    assert s["produce"]["output"] == {"n": 41, "who": "ops"}
    assert s["consume"]["stdout"] == "42 ops\n"
    assert s["lines"]["output"] == ["a", "b", "c"]
    assert all(step["attempts"] == 1 for step in result["steps"])


def test_join_after_condition_runs_despite_skipped_branch(client: Client) -> None:
    result = run_to_end(client, wf.CONDITION_JOIN)
    s = steps(result)
    assert result["state"] == "SUCCEEDED"
    assert s["ok"]["output"] is None or s["ok"]["state"] == "SUCCEEDED"
    assert s["yes"]["state"] == "SUCCEEDED"
    assert s["no"]["state"] == "SKIPPED"
    assert s["no"]["skip_reason"] == "branch not taken"
    assert s["join"]["state"] == "SUCCEEDED"


def test_failing_step_fails_run_and_skips_downstream(client: Client) -> None:
    result = run_to_end(client, wf.FAILING)
    s = steps(result)
    assert result["state"] == "FAILED"
    assert s["bad"]["state"] == "FAILED"
    assert s["bad"]["exit_code"] == 3
    assert s["bad"]["error_category"] == "NONZERO_EXIT"
    assert "boom" in s["bad"]["stderr"]
    assert s["after"]["state"] == "SKIPPED"
    assert s["after"]["skip_reason"] == "upstream failed"
    assert "bad" in result["error_message"]


def test_timeout_kills_the_process_group(client: Client, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    result = run_to_end(client, wf.TIMEOUT, {"pidfile": str(pidfile)})
    slow = steps(result)["slow"]
    assert result["state"] == "FAILED"
    assert slow["error_category"] == "TIMEOUT"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {grandchild} survived the timeout")


@pytest.mark.parametrize("payload", ["; touch {marker}", "$(touch {marker})", "`touch {marker}`"])
def test_shell_injection_in_a_parameter_executes_nothing(
    client: Client, tmp_path: Path, payload: str
) -> None:
    marker = tmp_path / "pwned"
    text = payload.format(marker=marker)
    result = run_to_end(client, wf.INJECTION, {"text": text})
    assert result["state"] == "SUCCEEDED"
    assert not marker.exists()
    for node in ("argv", "split", "shell"):
        assert steps(result)[node]["stdout"] == text + "\n", node


def test_cancel_kills_running_step_and_skips_the_rest(client: Client) -> None:
    job = client.create_job(wf.SLEEPER).job
    run = client.start_run(job.job_id, {})
    for ev in client.watch(run.run_id):
        if (ev.step_state_changed.node_id, ev.step_state_changed.state) == (
            "nap",
            run_pb2.STEP_STATE_RUNNING,
        ):
            break
    client.executor.CancelRun(
        executor_service_pb2.CancelRunRequest(run_id=run.run_id, reason="test")
    )
    events = list(client.watch(run.run_id))
    assert events[-1].run_state_changed.state == run_pb2.RUN_STATE_CANCELLED
    final = client.get_run(run.run_id)
    s = {x.node_id: x for x in final.steps}
    assert s["nap"].state == run_pb2.STEP_STATE_CANCELLED
    assert s["after"].state == run_pb2.STEP_STATE_CANCELLED
    # the worker notices and kills `sleep 30`: the attempt ends before the sleep could have
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nap = {x.node_id: x for x in client.get_run(run.run_id).steps}["nap"]
        if nap.executions and nap.executions[-1].HasField("end_time"):
            break
        time.sleep(0.2)
    execution = nap.executions[-1]
    assert execution.state == run_pb2.STEP_STATE_CANCELLED
    ran_s = (execution.end_time.ToDatetime() - execution.start_time.ToDatetime()).total_seconds()
    assert ran_s < 30, "the sleep ran to its end: it was not killed"


def test_watcher_resumes_without_gaps_or_duplicates(client: Client) -> None:
    job = client.create_job(wf.CHATTY).job
    run = client.start_run(job.job_id, {})
    seen: list[int] = []
    # read a few events, drop the stream, reconnect from the last sequence, several times
    last = 0
    while True:
        stream = client.monitor.WatchRun(
            monitor_service_pb2.WatchRunRequest(run_id=run.run_id, after_sequence=last)
        )
        terminal = False
        for i, reply in enumerate(stream):
            assert reply.events, "a response is never empty"
            for event in reply.events:  # a response may carry several events
                seen.append(event.sequence)
                last = event.sequence
                if event.HasField("run_state_changed") and event.run_state_changed.state in (
                    run_pb2.RUN_STATE_SUCCEEDED,
                    run_pb2.RUN_STATE_FAILED,
                    run_pb2.RUN_STATE_CANCELLED,
                ):
                    terminal = True
            if i == 2:
                stream.cancel()
                break
        if terminal:
            break
    assert seen == list(range(1, len(seen) + 1))
    final = client.get_run(run.run_id)
    assert final.state == run_pb2.RUN_STATE_SUCCEEDED
    assert seen[-1] == final.last_sequence
    # a fresh watcher from 0 replays exactly the same sequence
    assert [e.sequence for e in client.watch(run.run_id)] == seen


def test_invalid_document_returns_every_diagnostic_and_saves_nothing(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.create_job(wf.INVALID)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _reason, violations = error_details(info.value)
    codes = {reason for _field, reason, _desc in violations}
    assert {"DUPLICATE_NODE_ID", "UNKNOWN_NODE_TYPE", "DANGLING_EDGE", "UNKNOWN_REFERENCE"} <= codes
    with pytest.raises(grpc.RpcError) as missing:
        client.translator.GetJob(translator_service_pb2.GetJobRequest(job_id="it-invalid"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_parameters_are_rejected_before_anything_is_written(client: Client) -> None:
    job = client.create_job(wf.INJECTION).job
    before = client.executor.ListRuns(executor_service_pb2.ListRunsRequest(job_id=job.job_id)).runs
    with pytest.raises(grpc.RpcError) as info:
        client.start_run(job.job_id, {"text": 12})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _reason, violations = error_details(info.value)
    assert violations and "text" in violations[0][0]
    after = client.executor.ListRuns(executor_service_pb2.ListRunsRequest(job_id=job.job_id)).runs
    assert len(after) == len(before)


def test_concurrent_runs_all_finish(client: Client) -> None:
    job = client.create_job(wf.CONDITION_JOIN).job
    results: list[int] = []

    def one() -> None:
        run = client.start_run(job.job_id, {})
        list(client.watch(run.run_id))
        results.append(client.get_run(run.run_id).state)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [run_pb2.RUN_STATE_SUCCEEDED] * 5


def test_bad_page_token_is_invalid_argument(client: Client) -> None:
    for token in ("bm90LWEtdGltZXxydW4=", "%%%"):
        with pytest.raises(grpc.RpcError) as err:
            client.executor.ListRuns(executor_service_pb2.ListRunsRequest(page_token=token))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in [field for field, _, _ in error_details(err.value)[1]]


def test_concurrent_start_runs_with_one_request_id_make_one_run(client: Client) -> None:
    job = client.create_job(wf.OUTPUT_PASSING).job
    request = executor_service_pb2.StartRunRequest(
        job_id=job.job_id, request_id="once-" + job.job_id
    )
    replies: list[Any] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            replies.append(client.executor.StartRun(request).run.run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(replies) == 8 and len(set(replies)) == 1


def test_a_chain_is_handed_off_on_one_worker_thread(client: Client) -> None:
    text = wf.doc(
        "handoff",
        [wf.cmd("c", ["echo", "1"]), wf.cmd("b", ["echo", "2"]), wf.cmd("a", ["echo", "3"])],
        [("c", "b"), ("b", "a")],
    )
    result = client.get_run(client.start_run(client.create_job(text).job.job_id, {}).run_id)
    for _ in client.watch(result.run_id):
        pass
    final = client.get_run(result.run_id)
    assert final.state == run_pb2.RUN_STATE_SUCCEEDED
    assert [s.node_id for s in final.steps] == ["c", "b", "a"]  # plan (topological) order
    executions = [s.executions[0] for s in final.steps]
    # b and a were claimed in the transaction that recorded their parent's end, so they ran
    # under the Celery message that started c: one message for the whole chain.
    assert len({e.task_id for e in executions}) == 1
    assert all(e.task_id for e in executions)


def test_a_page_token_only_continues_the_listing_it_came_from(client: Client) -> None:
    job = client.create_job(wf.doc("paged", [wf.cmd("a", ["true"])], [])).job
    for _ in range(3):
        list(client.watch(client.start_run(job.job_id, {}).run_id))
    first = client.executor.ListRuns(
        executor_service_pb2.ListRunsRequest(job_id=job.job_id, page_size=2)
    )
    assert len(first.runs) == 2 and first.next_page_token
    rest = client.executor.ListRuns(
        executor_service_pb2.ListRunsRequest(
            job_id=job.job_id, page_size=2, page_token=first.next_page_token
        )
    )
    assert len(rest.runs) >= 1
    assert not {r.run_id for r in rest.runs} & {r.run_id for r in first.runs}
    with pytest.raises(grpc.RpcError) as err:  # the same token with the job filter dropped
        client.executor.ListRuns(
            executor_service_pb2.ListRunsRequest(page_size=2, page_token=first.next_page_token)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [r for _, r, _ in error_details(err.value)[1]] == ["TOKEN_FILTER_MISMATCH"]
