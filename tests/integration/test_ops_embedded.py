"""Alert rule CRUD over HTTP and the CLI, job stats and /metrics, on the embedded suite."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.cli.client import Client
from conveyor.cli.main import app
from tests.integration import harness
from tests.integration import workflows as wf


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with harness.embedded(tmp_path_factory.mktemp("ops-embedded")) as addresses:
        yield addresses


@pytest.fixture
def http(suite: dict[str, str]) -> Iterator[httpx.Client]:
    with harness.http_client(suite) as c:
        yield c


def test_rule_crud_over_http(http: httpx.Client) -> None:
    rule = {
        "display_name": "etl keeps failing",
        "kind": "ALERT_KIND_CONSECUTIVE_FAILURES",
        "job": "etl",
        "threshold": "3",
        "webhook_urls": ["https://hooks.example/etl"],
        "enabled": True,
    }
    created = http.post("/v1/alertRules", json=rule)
    assert created.status_code == 200, created.text
    rule_id = created.json()["rule"]["rule_id"]
    assert http.get(f"/v1/alertRules/{rule_id}").json()["rule"]["threshold"] == "3"
    patched = http.patch(
        f"/v1/alertRules/{rule_id}",
        params={"update_mask": "threshold,enabled"},
        json={"threshold": "5", "enabled": False, "job": "ignored, not in the mask"},
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()["rule"]
    assert (after["threshold"], after.get("enabled", False), after["job"]) == ("5", False, "etl")
    listed = http.get("/v1/alertRules").json()["rules"]
    assert rule_id in [r["rule_id"] for r in listed]
    assert http.delete(f"/v1/alertRules/{rule_id}").status_code == 200
    missing = http.get(f"/v1/alertRules/{rule_id}")
    assert missing.status_code == 404


def test_bad_rules_are_rejected_with_field_violations(http: httpx.Client) -> None:
    bad = http.post(
        "/v1/alertRules",
        json={"display_name": "x", "kind": "ALERT_KIND_QUEUE_AGE", "webhook_urls": ["file:///x"]},
    )
    assert bad.status_code == 400
    details = json.dumps(bad.json())
    assert "rule.max_duration" in details and "rule.webhook_urls[0]" in details
    no_kind = http.post("/v1/alertRules", json={"display_name": "y"})
    assert no_kind.status_code == 400 and "rule.kind" in no_kind.text
    assert http.get("/v1/alertRules").json().get("rules", []) == [] or all(
        r["display_name"] not in ("x", "y") for r in http.get("/v1/alertRules").json()["rules"]
    )
    bad_mask = http.patch("/v1/alertRules/nope", params={"update_mask": "kind"}, json={})
    assert bad_mask.status_code == 404


def test_cli_creates_lists_and_deletes_rules(suite: dict[str, str]) -> None:
    runner = CliRunner(env={"CONVEYOR_TOKEN": suite["token"]})
    server = ["--server", suite["grpc"]]
    made = runner.invoke(
        app,
        ["alerts", "rules", "create", "--name", "slow steps", "--kind", "step-duration",
         "--max-seconds", "90", "--webhook", "http://127.0.0.1:9/x", "-o", "json", *server],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    rule_id = json.loads(made.output)["rule_id"]
    listed = runner.invoke(app, ["alerts", "rules", "list", *server])
    assert rule_id in listed.output and "step_duration" in listed.output
    changed = runner.invoke(
        app, ["alerts", "rules", "update", rule_id, "--disabled", "-o", "json", *server]
    )
    assert changed.exit_code == 0 and "enabled" not in json.loads(changed.output)
    wrong = runner.invoke(app, ["alerts", "rules", "create", "--name", "n", "--kind", "nope"])
    assert wrong.exit_code == 2
    assert runner.invoke(app, ["alerts", "rules", "delete", rule_id, *server]).exit_code == 0
    gone = runner.invoke(app, ["alerts", "rules", "show", rule_id, *server])
    assert gone.exit_code == 2 and "NOT_FOUND" in gone.output
    assert runner.invoke(app, ["alerts", "list", "--state", "firing", *server]).exit_code == 0


def _run(client: Client, job_id: str) -> str:
    run = client.start_run(job_id, {})
    events = list(client.watch(run.run_id))
    return str(events[-1].run_state_changed.state)


def _sample(body: str, series: str) -> float:
    """The value of one series in an exposition (0 when absent)."""
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


def test_job_stats_and_metrics(suite: dict[str, str], http: httpx.Client) -> None:
    # The embedded services of every suite in this process share one registry: compare deltas.
    counted = {
        'conveyor_runs_total{job="stats-flaky",state="FAILED"}': 1.0,
        'conveyor_steps_total{category="NONZERO_EXIT",state="FAILED",type="action.command"}': 1.0,
    }
    before = http.get("/metrics").text
    expected = {series: _sample(before, series) + n for series, n in counted.items()}
    client = Client(suite["grpc"], token=suite["token"])
    try:
        ok = client.create_job(wf.doc("stats-ok", [wf.cmd("a", ["true"])], [])).job
        flaky = client.create_job(
            wf.doc("stats-flaky", [wf.cmd("a", ["false"], retries={"max": 1, "backoff_s": 0})], [])
        ).job
        for _ in range(3):
            _run(client, ok.job_id)
        _run(client, flaky.job_id)
    finally:
        client.close()
    good = http.get(f"/v1/jobs/{ok.job_id}/stats").json()
    assert good["total_runs"] == "3" and good["success_rate"] == 1.0
    assert good["runs_by_state"] == [{"state": "RUN_STATE_SUCCEEDED", "count": "3"}]
    assert "p50_duration" in good and "p95_duration" in good
    assert good["mean_attempts"] == 1.0
    bad = http.get("/v1/jobs/stats-flaky/stats", params={"window": "3600s"}).json()
    assert bad["job_id"] == flaky.job_id and bad["success_rate"] == 0.0
    assert bad["mean_attempts"] == 2.0
    assert bad["top_error_categories"] == [
        {"category": "ERROR_CATEGORY_NONZERO_EXIT", "count": "2"}
    ]
    wide = http.get(f"/v1/jobs/{ok.job_id}/stats", params={"window": "99999999s"})
    assert wide.status_code == 400
    deadline = time.monotonic() + 60
    while True:
        body = http.get("/metrics").text
        got = {series: _sample(body, series) for series in expected}
        if got == expected and _sample(body, 'conveyor_workers{state="online"}') >= 1:
            break
        assert time.monotonic() < deadline, (got, expected)
        time.sleep(0.2)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


def test_queues_and_workers_over_http(http: httpx.Client) -> None:
    queues = http.get("/v1/queues").json()
    assert queues["broker"] == "memory"
    default = next(q for q in queues["queues"] if q["queue"] == "default")
    assert default["consumers"] == 1
    workers = http.get("/v1/workers").json()["workers"]
    assert [w["state"] for w in workers] == ["WORKER_STATE_ONLINE"]
    assert workers[0]["concurrency"] == 4 and workers[0]["queues"] == ["default"]
    too_many = http.get("/v1/queues", params=[("queues", f"q{i}") for i in range(101)])
    assert too_many.status_code == 400


def test_memory_queue_depth_fires_and_disabling_the_rule_resolves(
    suite: dict[str, str], http: httpx.Client
) -> None:
    rule = http.post(
        "/v1/alertRules",
        json={
            "display_name": "nobody consumes",
            "kind": "ALERT_KIND_QUEUE_DEPTH",
            "queue": "nobody",
            "threshold": "0",
            "enabled": True,
        },
    ).json()["rule"]
    again = http.post("/v1/alertRules", json={"display_name": "nobody consumes", "kind": 1})
    assert again.status_code == 409
    client = Client(suite["grpc"], token=suite["token"])
    try:
        job = client.create_job(wf.doc("ops-nobody", [wf.cmd("a", ["true"], queue="nobody")], []))
        run = client.start_run(job.job.job_id, {})
    finally:
        client.close()
    nobody = http.get("/v1/queues", params={"queues": "nobody"}).json()["queues"][0]
    assert nobody["depth"] == "1" and nobody["oldest_age_source"] == "AGE_SOURCE_DATABASE"

    def alerts(state: str) -> list[dict[str, Any]]:
        found = http.get("/v1/alerts", params={"state": state, "rule_id": rule["rule_id"]})
        return list(found.json().get("alerts", []))

    deadline = time.monotonic() + 60
    while not alerts("ALERT_STATE_FIRING"):
        assert time.monotonic() < deadline, "the queue depth alert never fired"
        time.sleep(0.2)
    assert alerts("ALERT_STATE_FIRING")[0]["subject"] == "nobody"
    off = http.patch(
        f"/v1/alertRules/{rule['rule_id']}", params={"update_mask": "enabled"}, json={}
    )
    assert off.status_code == 200
    assert alerts("ALERT_STATE_FIRING") == []
    assert [a["subject"] for a in alerts("ALERT_STATE_RESOLVED")] == ["nobody"]
    http.post(f"/v1/runs/{run.run_id}:cancel", json={})
