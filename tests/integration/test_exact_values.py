"""User JSON arrives exactly: integers beyond 2^53, floats that are whole numbers, huge and
tiny floats, -0.0, deep nesting and astral characters go through StartRun (gRPC, HTTP and
`conveyor run --params-file`), templates, step outputs and GetRun unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from conveyor.cli.client import Client
from conveyor.cli.render import run_json
from conveyor.executor.v1 import executor_service_pb2
from tests.integration import workflows as wf
from tests.integration.test_examples import conveyor
from tests.integration.test_examples import run_json as cli_run_json


def _deep(levels: int) -> Any:
    value: Any = 2**64 + 1
    for i in range(levels):
        value = {"d": value} if i % 2 else [value]
    return value


VALUES: dict[str, Any] = {
    "big": 9007199254740993,
    "negative": -(2**70) - 1,
    "one": 1.0,
    "huge": 1e300,
    "tiny": 5e-324,
    "tenth": 0.1,
    "negzero": -0.0,
    "text": 'Grüße, naïve 🚀 \U0001d11e \u2028 "quoted" \\',
    # With the body's object and this one, 62 levels: inside the HTTP edge's limit of 64.
    "deep": _deep(60),
    "list": [1, 1.0, 2**63, [], {}, None, True],
}
TEXT = json.dumps(VALUES)

DOC = wf.doc(
    "it-exact-values",
    [
        wf.cmd(
            "echo",
            ["python3", "-c", "import sys; sys.stdout.write(sys.argv[1])", "{{ params | tojson }}"],
            output="json",
        ),
        wf.cmd(
            "pick",
            [
                "python3",
                "-c",
                "import sys; print(*sys.argv[1:], sep='|')",
                "{{ params.big }}",
                "{{ params.one }}",
                "{{ steps.echo.output.negative }}",
                "{{ steps.echo.output.huge }}",
                "{{ steps.echo.output.text }}",
            ],
        ),
    ],
    [("echo", "pick")],
    parameters={"type": "object"},
)
PICKED = f"9007199254740993|1.0|{-(2**70) - 1}|1e+300|{VALUES['text']}\n"


def same(a: Any, b: Any) -> bool:
    """Equal as JSON text: 1.0 is not 1, -0.0 is not 0.0."""
    return json.dumps(a) == json.dumps(b)


def finish(client: Client, run_id: str) -> dict[str, Any]:
    events = list(client.watch(run_id))
    assert events[-1].HasField("run_state_changed")
    return run_json(client.get_run(run_id))


def check(result: dict[str, Any]) -> None:
    assert result["state"] == "SUCCEEDED", result
    assert same(result["parameters"], VALUES)
    steps = {s["node_id"]: s for s in result["steps"]}
    assert same(steps["echo"]["output"], VALUES)
    assert same(steps["echo"]["outputs"]["output"], VALUES)
    assert steps["pick"]["stdout"] == PICKED


def test_start_run_over_grpc_keeps_values_exact(client: Client) -> None:
    job = client.create_job(DOC).job
    reply = client.executor.StartRun(
        executor_service_pb2.StartRunRequest(job_id=job.job_id, parameters_json=TEXT), timeout=60
    )
    assert same(json.loads(reply.run.parameters_json), VALUES)
    check(finish(client, reply.run.run_id))


def test_start_run_over_http_keeps_values_exact(client: Client, http: httpx.Client) -> None:
    job = client.create_job(DOC).job
    body = '{"parameters": ' + TEXT + "}"
    resp = http.post(
        f"/v1/jobs/{job.job_id}:run", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    run = json.loads(resp.text)["run"]
    assert same(run["parameters"], VALUES)
    finish(client, run["run_id"])
    got = json.loads(http.get(f"/v1/runs/{run['run_id']}").text)["run"]
    assert got["state"] == "RUN_STATE_SUCCEEDED"
    assert same(got["parameters"], VALUES)
    steps = {s["node_id"]: s for s in got["steps"]}
    assert same(steps["echo"]["output"], VALUES)
    assert same(steps["echo"]["outputs"]["output"], VALUES)
    assert steps["pick"]["stdout"] == PICKED
    assert "parameters_json" not in got and "outputs_json" not in steps["echo"]


def test_http_refuses_parameters_that_are_not_an_object(client: Client, http: httpx.Client) -> None:
    job = client.create_job(DOC).job
    resp = http.post(f"/v1/jobs/{job.job_id}:run", json={"parameters": [1, 2]})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["details"][0]["fieldViolations"][0]["field"] == "parameters"


def test_cli_params_file_keeps_values_exact(
    client: Client, stack: dict[str, Any], tmp_path: Path
) -> None:
    workflow = tmp_path / "exact.json"
    workflow.write_text(DOC)
    params = tmp_path / "params.json"
    params.write_text(TEXT)
    proc = conveyor(
        "run",
        str(workflow),
        "--server",
        stack["grpc"],
        "--params-file",
        str(params),
        "--output",
        "json",
        cwd=tmp_path,
        token=stack["token"],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check(cli_run_json(proc))
