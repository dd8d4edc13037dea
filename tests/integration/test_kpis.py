"""GET /v1/kpis on the embedded suite: the figures of real runs, and bad windows refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration import harness

WORKFLOW = {
    "schema": "conveyor/v1",
    "name": "kpi-probe",
    "nodes": [
        {"id": "start", "type": "trigger.manual", "data": {}},
        {"id": "ok", "type": "action.command", "data": {"argv": ["true"]}},
    ],
    "edges": [{"id": "e1", "source": "start", "target": "ok"}],
}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        harness.embedded(tmp_path_factory.mktemp("kpis")) as addresses,
        httpx.Client(
            base_url=addresses["http"], timeout=30, headers=harness.http_headers(addresses)
        ) as client,
    ):
        yield client


def _run_to_end(http: httpx.Client) -> dict[str, Any]:
    http.post("/v1/jobs", json={"workflow": WORKFLOW, "update_existing": True}).raise_for_status()
    run_id = http.post("/v1/jobs/kpi-probe:run", json={}).json()["run"]["run_id"]
    for _ in range(300):
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()["run"]
        if run["state"] == "RUN_STATE_SUCCEEDED":
            return run
        time.sleep(0.1)
    raise AssertionError("the run did not succeed")


def _online_slots(http: httpx.Client) -> int:
    workers = http.get("/v1/workers").json()["workers"]
    return sum(w["concurrency"] for w in workers if w["state"] == "WORKER_STATE_ONLINE")


def test_kpis_count_the_runs_and_attempts_of_the_window(http: httpx.Client) -> None:
    for _ in range(2):
        _run_to_end(http)
    for _ in range(300):  # the worker's pool size arrives with its events
        if _online_slots(http):
            break
        time.sleep(0.1)
    k = http.get("/v1/kpis", params={"window": "3600s", "bucket": "600s"}).json()
    assert k["bucket"] == "600s"
    assert len(k["buckets"]) == 6
    assert sum(int(b["runs_started"]) for b in k["buckets"]) == 2
    assert sum(int(b["runs_succeeded"]) for b in k["buckets"]) == 2
    assert sum(b["busy_slot_seconds"] for b in k["buckets"]) > 0
    assert any("mean_queue_wait" in b for b in k["buckets"])
    (job,) = k["jobs"]
    assert (job["job_name"], job["runs"], job["succeeded"], job["success_rate"]) == (
        "kpi-probe",
        "2",
        "2",
        1.0,
    )
    assert "p95_duration" in job
    assert k["worker_slots"] == _online_slots(http) > 0
    assert any(b["worker_utilization"] > 0 for b in k["buckets"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "3000000s"}, "window"),
        ({"bucket": "10s"}, "bucket"),
        ({"window": "60s", "bucket": "120s"}, "bucket"),
        ({"window": "86400s", "bucket": "60s"}, "bucket"),
    ],
)
def test_bad_windows_are_refused(http: httpx.Client, params: dict[str, str], field: str) -> None:
    reply = http.get("/v1/kpis", params=params)
    assert reply.status_code == 400
    details = reply.json()["error"]["details"]
    violations = next(d for d in details if "fieldViolations" in d)["fieldViolations"]
    assert [v["field"] for v in violations] == [field]
