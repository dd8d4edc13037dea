"""The workflow language at run time, in the embedded and the distributed mode.

Approvals, foreach, sub-workflows, retries that wait in the database, the secrets file and
template errors.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import grpc
import pytest

from conveyor.cli.client import Client
from conveyor.cli.render import run_json
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

SECRET = "s3cr3t-Value-91"


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The suite in one of its two modes, with a secrets file in KEY=VALUE form."""
    tmp = tmp_path_factory.mktemp(f"lang-{request.param}")
    secrets = tmp / "secrets.env"
    secrets.write_text(f"# deploy secrets\nAPI_TOKEN='{SECRET}'\nexport OTHER=plain\n")
    if request.param == "embedded":
        with harness.embedded(tmp, secrets_file=secrets) as addresses:
            yield {"mode": "embedded", **addresses}
    else:
        with harness.distributed(
            tmp, POSTGRES_URL, REDIS_URL, extra_env={"CONVEYOR_SECRETS_FILE": str(secrets)}
        ) as info:
            yield {"mode": "distributed", **info}


def start(client: Client, text: str, params: dict[str, Any] | None = None) -> str:
    job = client.create_job(text).job
    return str(client.start_run(job.job_id, params or {}).run_id)


def finish(client: Client, run_id: str) -> dict[str, Any]:
    events = list(client.watch(run_id))
    assert events[-1].HasField("run_state_changed")
    return run_json(client.get_run(run_id))


def run_to_end(client: Client, text: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return finish(client, start(client, text, params))


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in result["steps"]}


def wait_for(client: Client, run_id: str, predicate: Any, timeout: float = 60) -> run_pb2.Run:
    """Poll GetRun until predicate(run) holds (a generous bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if predicate(run):
            return run
        assert time.monotonic() < deadline, f"run never reached the expected state: {run}"
        time.sleep(0.1)


def step_of(run: run_pb2.Run, node_id: str) -> run_pb2.Step:
    return next(s for s in run.steps if s.node_id == node_id)


def decide(
    client: Client, run_id: str, node_id: str, *, approve: bool, comment: str = ""
) -> run_pb2.Run:
    reply = client.executor.ApproveStep(
        executor_service_pb2.ApproveStepRequest(
            run_id=run_id,
            node_id=node_id,
            decision=executor_service_pb2.APPROVAL_DECISION_APPROVE
            if approve
            else executor_service_pb2.APPROVAL_DECISION_REJECT,
            comment=comment,
            approver="alice",
        ),
        timeout=30,
    )
    run: run_pb2.Run = reply.run
    return run


def approval(node_id: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action.approval", "data": data}


def gated(name: str, gates: int = 1, timeout_s: float | None = None) -> str:
    extra = {"timeout_s": timeout_s} if timeout_s else {}
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "trigger.manual", "data": {}}]
    edges: list[Any] = []
    for i in range(gates):
        nodes.append(approval(f"gate{i}", message="ship {{ params.v }}?", **extra))
        edges.append(("start", f"gate{i}"))
    nodes.append(wf.cmd("after", ["echo", "shipped"]))
    edges += [(f"gate{i}", "after") for i in range(gates)]
    params = {"type": "object", "properties": {"v": {"type": "string", "default": "1.2"}}}
    return wf.doc(name, nodes, edges, params)


def waiting(run: run_pb2.Run) -> bool:
    return bool(run.state == run_pb2.RUN_STATE_WAITING)


# --- approval -------------------------------------------------------------------------------


def test_approval_waits_then_approve_runs_on(client: Client, stack: dict[str, Any]) -> None:
    run_id = start(client, gated("lang-approve"))
    run = wait_for(client, run_id, waiting)
    gate = step_of(run, "gate0")
    assert gate.state == run_pb2.STEP_STATE_WAITING
    assert json.loads(gate.outputs_json)["message"] == "ship 1.2?"
    assert step_of(run, "after").state == run_pb2.STEP_STATE_PENDING
    decide(client, run_id, "gate0", approve=True, comment="looks good")
    result = finish(client, run_id)
    s = steps(result)
    assert result["state"] == "SUCCEEDED"
    assert s["gate0"]["outputs"]["approved"] is True
    # Recorded as the token's name ("approved by ..."), whatever approver the request named.
    assert s["gate0"]["outputs"]["by"] == stack["token_name"]
    assert s["gate0"]["outputs"]["comment"] == "looks good"
    assert s["after"]["stdout"] == "shipped\n"


def test_approval_reject_fails_step_with_comment(client: Client, stack: dict[str, Any]) -> None:
    run_id = start(client, gated("lang-reject"))
    wait_for(client, run_id, waiting)
    decide(client, run_id, "gate0", approve=False, comment="not on a Friday")
    result = finish(client, run_id)
    gate = steps(result)["gate0"]
    assert result["state"] == "FAILED"
    assert gate["state"] == "FAILED"
    assert gate["error_category"] == "REJECTED"
    assert "not on a Friday" in gate["error_message"]
    assert stack["token_name"] in gate["error_message"]
    assert steps(result)["after"]["state"] == "SKIPPED"


def test_approval_decision_errors(client: Client) -> None:
    run_id = start(client, gated("lang-decide-errors"))
    wait_for(client, run_id, waiting)
    with pytest.raises(grpc.RpcError) as err:
        decide(client, run_id, "after", approve=True)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        decide(client, run_id, "nope", approve=True)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        client.executor.ApproveStep(
            executor_service_pb2.ApproveStepRequest(run_id=run_id, node_id="gate0"), timeout=30
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    decide(client, run_id, "gate0", approve=True)
    with pytest.raises(grpc.RpcError) as err:
        decide(client, run_id, "gate0", approve=False)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert finish(client, run_id)["state"] == "SUCCEEDED"


def test_approval_times_out(client: Client) -> None:
    result = run_to_end(client, gated("lang-approval-timeout", timeout_s=1))
    gate = steps(result)["gate0"]
    assert result["state"] == "FAILED"
    assert gate["error_category"] == "TIMEOUT"
    assert "timed out" in gate["error_message"]


def test_waiting_approvals_hold_no_worker_slot(client: Client) -> None:
    # Six approvals wait at once, more than the worker's four slots; another run still runs.
    run_id = start(client, gated("lang-many-gates", gates=6))
    run = wait_for(client, run_id, waiting)
    assert all(step_of(run, f"gate{i}").state == run_pb2.STEP_STATE_WAITING for i in range(6))
    other = run_to_end(
        client,
        wf.doc(
            "lang-meanwhile",
            [wf.cmd(f"c{i}", ["echo", str(i)]) for i in range(5)],
            [],
        ),
    )
    assert other["state"] == "SUCCEEDED"
    for i in range(6):
        decide(client, run_id, f"gate{i}", approve=True)
    assert finish(client, run_id)["state"] == "SUCCEEDED"


def test_http_route_decides_an_approval(stack: dict[str, Any], client: Client) -> None:
    import httpx

    run_id = start(client, gated("lang-approve-http"))
    wait_for(client, run_id, waiting)
    bot = f"release-bot-{stack['mode']}"
    secret = harness.create_token(stack, bot, "operator")
    reply = httpx.post(
        f"{stack['http']}/v1/runs/{run_id}/steps/gate0:decide",
        json={"decision": "APPROVAL_DECISION_REJECT", "comment": "via http", "approver": "bob"},
        timeout=30,
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert reply.status_code == 200, reply.text
    result = finish(client, run_id)
    assert steps(result)["gate0"]["error_category"] == "REJECTED"
    # The token decides who it was, not what the request claims.
    assert steps(result)["gate0"]["outputs"]["by"] == bot


# --- foreach --------------------------------------------------------------------------------


def foreach_doc(name: str, *, fail_on: str = "", handled: bool = False, items: Any = None) -> str:
    body_data: dict[str, Any] = {
        "argv": ["sh", "-c", 'test "$0" != "$1" || exit 7; echo "$0"', "{{ item }}", fail_on]
    }
    if handled:
        body_data["continue_on_error"] = True
    nodes = [
        {"id": "start", "type": "trigger.manual", "data": {}},
        {
            "id": "loop",
            "type": "logic.foreach",
            "data": {"items": items if items is not None else "params.hosts", "concurrency": 3},
        },
        {"id": "fetch", "type": "action.command", "parentId": "loop", "data": body_data},
        {
            "id": "tag",
            "type": "action.command",
            "parentId": "loop",
            "data": {"argv": ["echo", "{{ index }}:{{ steps.fetch.stdout | trim }}"]},
            "trigger_rule": "all_done",
        },
        wf.cmd("report", ["echo", "{{ steps.loop.results | length }}"]),
    ]
    params = {
        "type": "object",
        "properties": {"hosts": {"type": "array", "items": {"type": "string"}}},
    }
    return wf.doc(name, nodes, [("start", "loop"), ("fetch", "tag"), ("loop", "report")], params)


HOSTS = ["r1", "r2", "r3", "r4", "r5"]


def test_foreach_runs_body_per_item_in_order(client: Client) -> None:
    result = run_to_end(client, foreach_doc("lang-foreach"), {"hosts": HOSTS})
    s = steps(result)
    assert result["state"] == "SUCCEEDED"
    results = s["loop"]["outputs"]["results"]
    assert [r["tag"]["stdout"] for r in results] == [f"{i}:{h}\n" for i, h in enumerate(HOSTS)]
    assert s["loop"]["outputs"]["count"] == 5
    assert s["fetch"]["state"] == "SUCCEEDED"
    assert s["report"]["stdout"] == "5\n"


def test_foreach_failing_item_fails_the_foreach(client: Client) -> None:
    result = run_to_end(client, foreach_doc("lang-foreach-fail", fail_on="r3"), {"hosts": HOSTS})
    s = steps(result)
    assert result["state"] == "FAILED"
    assert s["loop"]["state"] == "FAILED"
    assert s["loop"]["error_category"] == "NONZERO_EXIT"
    assert "item 2" in s["loop"]["error_message"]
    assert s["loop"]["outputs"]["failed_items"] == [2]
    # The other items ran to their end; results stay in item order.
    assert s["loop"]["outputs"]["results"][4]["fetch"]["stdout"] == "r5\n"
    assert s["fetch"]["state"] == "FAILED"
    assert s["report"]["state"] == "SKIPPED"


def test_foreach_failure_handled_in_body(client: Client) -> None:
    doc = foreach_doc("lang-foreach-handled", fail_on="r3", handled=True)
    result = run_to_end(client, doc, {"hosts": HOSTS})
    s = steps(result)
    assert result["state"] == "SUCCEEDED"
    assert s["loop"]["state"] == "SUCCEEDED"
    assert s["loop"]["outputs"]["results"][2]["tag"]["stdout"] == "2:\n"


def test_foreach_item_count_is_bounded(client: Client) -> None:
    doc = foreach_doc("lang-foreach-limit", items="range(10001) | list")
    result = run_to_end(client, doc, {"hosts": []})
    loop = steps(result)["loop"]
    assert result["state"] == "FAILED"
    assert "10001 items exceed the foreach limit of 10000" in loop["error_message"]
    assert steps(result)["fetch"]["state"] == "SKIPPED"


# --- sub-workflows --------------------------------------------------------------------------


def sub_doc(name: str, job: str, *, wait: bool = True, child_param: str | None = "who") -> str:
    """A parent that runs `job`, passing its `v` as the child's `child_param` (None: nothing)."""
    params = {"type": "object", "properties": {"v": {"type": "string", "default": "x"}}}
    passed = {child_param: "{{ params.v }}"} if child_param else {}
    return wf.doc(
        name,
        [
            {
                "id": "sub",
                "type": "action.subworkflow",
                "data": {"job": job, "parameters": passed, "wait": wait},
            },
            wf.cmd("after", ["echo", "child said {{ steps.sub.outputs.hello.stdout | trim }}"])
            if wait
            else wf.cmd("after", ["echo", "{{ steps.sub.run_id }}"]),
        ],
        [("sub", "after")],
        params,
    )


CHILD = wf.doc(
    "lang-child",
    [wf.cmd("hello", ["echo", "hi {{ params.who }}"])],
    [],
    {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
)


def test_subworkflow_waits_and_exposes_child_outputs(client: Client) -> None:
    client.create_job(CHILD)
    result = run_to_end(client, sub_doc("lang-parent", "lang-child"), {"v": "ops"})
    s = steps(result)
    assert result["state"] == "SUCCEEDED", result
    sub = s["sub"]["outputs"]
    assert sub["status"] == "SUCCEEDED"
    assert s["after"]["stdout"] == "child said hi ops\n"
    child = client.get_run(sub["run_id"])
    assert child.trigger == run_pb2.RUN_TRIGGER_SUBWORKFLOW
    assert child.parent_run_id == result["run_id"]
    assert child.parent_node_id == "sub"
    assert s["sub"]["child_run_id"] == sub["run_id"]


def test_subworkflow_without_wait_returns_at_once(client: Client) -> None:
    client.create_job(CHILD)
    result = run_to_end(client, sub_doc("lang-parent-nowait", "lang-child", wait=False))
    sub = steps(result)["sub"]["outputs"]
    assert result["state"] == "SUCCEEDED"
    assert sub["outputs"] == {}
    child = finish(client, sub["run_id"])
    assert child["state"] == "SUCCEEDED"


def test_subworkflow_cycle_is_detected(client: Client) -> None:
    client.create_job(sub_doc("lang-cycle-a", "lang-cycle-b", child_param="v"))
    client.create_job(sub_doc("lang-cycle-b", "lang-cycle-a", child_param="v"))
    result = run_to_end(client, sub_doc("lang-cycle-a", "lang-cycle-b", child_param="v"))
    assert result["state"] == "FAILED"
    # The innermost step that would restart a job on the chain fails with the cycle named;
    # every parent fails in turn with its child.
    child = client.get_run(steps(result)["sub"]["outputs"]["run_id"])
    inner = step_of(child, "sub")
    assert "sub-workflow cycle" in inner.error_message
    assert "lang-cycle-a -> lang-cycle-b -> lang-cycle-a" in inner.error_message


def test_subworkflow_child_failure_fails_step(client: Client) -> None:
    client.create_job(wf.doc("lang-bad-child", [wf.cmd("bad", ["sh", "-c", "exit 4"])], []))
    result = run_to_end(client, sub_doc("lang-parent-bad", "lang-bad-child", child_param=None))
    sub = steps(result)["sub"]
    assert result["state"] == "FAILED"
    assert sub["error_category"] == "NONZERO_EXIT"
    assert sub["outputs"]["status"] == "FAILED"


# --- secrets, templates, retries ------------------------------------------------------------


def test_secrets_file_values_are_masked_everywhere(client: Client) -> None:
    doc = wf.doc(
        "lang-secrets",
        [
            wf.cmd(
                "leak",
                [
                    "sh",
                    "-c",
                    'echo "token=$0"; echo "err $0" >&2; exit 3',
                    "{{ secrets.API_TOKEN }}",
                ],
            ),
            wf.cmd("other", ["echo", "{{ secrets.OTHER }}"]),
            {
                "id": "fail",
                "type": "logic.fail",
                "data": {"message": "bad token {{ secrets.API_TOKEN }}"},
            },
        ],
        [],
    )
    run_id = start(client, doc)
    events = list(client.watch(run_id))
    result = run_json(client.get_run(run_id))
    s = steps(result)
    assert s["leak"]["stdout"] == "token=***\n"
    assert "err ***" in s["leak"]["stderr"]
    # OTHER resolved (from an "export" line) and, being a secret, is masked too.
    assert s["other"]["state"] == "SUCCEEDED"
    assert s["other"]["stdout"] == "***\n"
    assert s["fail"]["error_message"] == "bad token ***"
    everything = json.dumps(result) + "".join(str(e) for e in events)
    assert SECRET not in everything
    assert "***" in result["error_message"]


def test_runtime_template_error_fails_step_with_template(client: Client) -> None:
    doc = wf.doc(
        "lang-template-error",
        [
            wf.cmd("a", ["echo", "{}"], output="json"),
            wf.cmd("b", ["echo", "{{ steps.a.output.missing.key }}"]),
            wf.cmd("c", ["echo", "{{ ''.__class__.__mro__ }}"]),
            wf.cmd("d", ["echo", "{{ 'x' | attr('__class__') }}"]),
            wf.cmd("e", ["echo", "{{ '{0.__class__}'.format_map(params) }}"]),
            wf.cmd("z", ["echo", "still runs"]),
        ],
        [("a", "b"), ("a", "c"), ("a", "d"), ("a", "e")],
    )
    result = run_to_end(client, doc)
    s = steps(result)
    assert result["state"] == "FAILED"
    for node in "bcde":
        assert s[node]["state"] == "FAILED", node
        assert s[node]["error_category"] == "TEMPLATE", node
        assert f"node '{node}'" in s[node]["error_message"]
        assert "<class" not in s[node]["stdout"]
    assert "steps.a.output.missing.key" in s["b"]["error_message"]
    assert s["z"]["state"] == "SUCCEEDED"


def test_retry_waits_in_the_database_then_runs_again(client: Client, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    doc = wf.doc(
        "lang-retry",
        [
            wf.cmd(
                "flaky",
                [
                    "sh",
                    "-c",
                    'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; [ $n -ge 3 ]',
                    str(counter),
                ],
                retries={"max": 3, "backoff_s": 0.5, "factor": 1},
            )
        ],
        [],
    )
    run_id = start(client, doc)
    events = list(client.watch(run_id))
    result = run_json(client.get_run(run_id))
    flaky = steps(result)["flaky"]
    assert result["state"] == "SUCCEEDED"
    assert flaky["attempts"] == 3
    changes = [
        (e.step_state_changed.state, e.step_state_changed.attempt)
        for e in events
        if e.HasField("step_state_changed") and e.step_state_changed.node_id == "flaky"
    ]
    waiting_ = run_pb2.STEP_STATE_WAITING
    queued = run_pb2.STEP_STATE_QUEUED
    assert (waiting_, 1) in changes and (queued, 2) in changes and (queued, 3) in changes
    # The next attempt is queued only after the WAITING backoff (no broker countdown).
    assert changes.index((waiting_, 1)) < changes.index((queued, 2))


def test_subworkflow_depth_is_bounded(client: Client) -> None:
    # d0 -> d1 -> ... -> d11: starting the eleventh nested run exceeds the depth of 10.
    for i in range(11):
        client.create_job(sub_doc(f"lang-depth-{i}", f"lang-depth-{i + 1}", child_param="v"))
    v_schema = {"type": "object", "properties": {"v": {"type": "string"}}}
    client.create_job(wf.doc("lang-depth-11", [wf.cmd("hello", ["echo", "deep"])], [], v_schema))
    result = run_to_end(client, sub_doc("lang-depth-0", "lang-depth-1", child_param="v"))
    assert result["state"] == "FAILED"
    run = client.get_run(result["run_id"])
    for _ in range(10):
        run = client.get_run(step_of(run, "sub").child_run_id)
    assert "nest deeper than 10 levels" in step_of(run, "sub").error_message


def test_cancelling_a_parent_cancels_its_child_run(client: Client) -> None:
    client.create_job(
        wf.doc(
            "lang-slow-child", [{"id": "nap", "type": "action.sleep", "data": {"seconds": 300}}], []
        )
    )
    run_id = start(client, sub_doc("lang-parent-cancel", "lang-slow-child", child_param=None))
    run = wait_for(client, run_id, lambda r: bool(step_of(r, "sub").child_run_id))
    child_id = step_of(run, "sub").child_run_id
    client.executor.CancelRun(
        executor_service_pb2.CancelRunRequest(run_id=run_id, reason="stop"), timeout=30
    )
    assert finish(client, run_id)["state"] == "CANCELLED"
    assert finish(client, child_id)["state"] == "CANCELLED"


# --- http, notify, switch, sleep ------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    posts: ClassVar[list[Any]] = []

    def do_GET(self) -> None:
        body = json.dumps({"env": "prod", "path": self.path}).encode()
        self.send_response(200 if self.path.startswith("/status") else 500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.posts.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def web() -> Iterator[str]:
    _Handler.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_switch_sleep_notify(client: Client, web: str) -> None:
    doc = wf.doc(
        "lang-http",
        [
            {
                "id": "get",
                "type": "action.http",
                "data": {"method": "GET", "url": "{{ params.base }}/status", "output": "json"},
            },
            {
                "id": "bad",
                "type": "action.http",
                "data": {"method": "GET", "url": "{{ params.base }}/x"},
            },
            {
                "id": "env",
                "type": "logic.switch",
                "data": {"value": "steps.get.output.env", "cases": ["prod", "dev"]},
            },
            {"id": "pause", "type": "action.sleep", "data": {"seconds": 0.2}},
            wf.cmd("devnote", ["echo", "dev"]),
            {
                "id": "tell",
                "type": "action.notify",
                "data": {
                    "url": "{{ params.base }}/hook",
                    "json": {"env": "{{ steps.get.output.env }}", "bad": "{{ steps.bad.status }}"},
                },
            },
        ],
        [
            ("get", "env"),
            ("env", "pause", "prod"),
            ("env", "devnote", "dev"),
            ("pause", "tell"),
            ("bad", "tell", "error"),
        ],
        {"type": "object", "properties": {"base": {"type": "string"}}},
    )
    result = run_to_end(client, doc, {"base": web})
    s = steps(result)
    assert result["state"] == "SUCCEEDED", result
    assert s["get"]["outputs"]["status"] == 200
    assert s["bad"]["error_category"] == "HTTP_STATUS"
    assert s["env"]["outputs"]["matched"] == "prod"
    assert s["devnote"]["skip_reason"] == "branch not taken"
    assert s["tell"]["outputs"]["status"] == 204
    assert _Handler.posts == [{"env": "prod", "bad": 500}]
