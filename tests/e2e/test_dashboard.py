"""The dashboard in a real browser against a real embedded Conveyor.

Elements are found by role and accessible name, as a person using a screen reader would.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from conveyor.cli.client import gateway_channel
from conveyor.executor.v1 import history_service_pb2, history_service_pb2_grpc
from tests.e2e.conftest import SECRET, create_job, sign_in
from tests.integration import harness

TIMEOUT_MS = 60_000


def _workflow(name: str, nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    start = {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "data": {}}
    edges, previous = [], "start"
    for i, node in enumerate(nodes):
        node.setdefault("position", {"x": 0, "y": 120 * (i + 1)})
        edges.append({"id": f"e{i}", "source": previous, "target": node["id"]})
        previous = node["id"]
    nodes = [start, *nodes]
    return {"schema": "conveyor/v1", "name": name, "nodes": nodes, "edges": edges, **extra}


GATED = _workflow(
    "e2e-gated",
    [
        {
            "id": "wait",
            "type": "action.command",
            "data": {
                "label": "Wait for the gate",
                "argv": [
                    "sh",
                    "-c",
                    'while [ ! -e "$GATE" ]; do sleep 0.05; done; echo "$GREETING"',
                ],
                "env": {"GATE": "{{ params.gate }}", "GREETING": "{{ params.greeting }}"},
            },
        }
    ],
    parameters={
        "type": "object",
        "properties": {
            "gate": {"type": "string", "minLength": 1},
            "greeting": {"type": "string", "enum": ["hi", "hello"], "default": "hi"},
            "copies": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
        },
        "required": ["gate"],
    },
)
FAILING = _workflow(
    "e2e-failing",
    [
        {
            "id": "break",
            "type": "action.command",
            "data": {"label": "Break", "argv": ["sh", "-c", "echo boom-on-stderr >&2; exit 3"]},
        }
    ],
)
APPROVAL = _workflow(
    "e2e-approval",
    [
        {"id": "signoff", "type": "action.approval", "data": {"label": "Sign-off"}},
        {"id": "after", "type": "action.command", "data": {"label": "After", "argv": ["true"]}},
    ],
)


SECRETIVE = _workflow(
    "e2e-secretive",
    [
        {
            "id": "call",
            "type": "action.command",
            "data": {
                "label": "Call the API",
                "argv": ["echo", "user={{ params.user }}", "key={{ secrets.E2E_KEY }}"],
            },
        }
    ],
    parameters={"type": "object", "properties": {"user": {"type": "string"}}},
)
LOOP = {
    "schema": "conveyor/v1",
    "name": "e2e-loop",
    "parameters": {
        "type": "object",
        "properties": {"gates": {"type": "array", "items": {"type": "string"}}},
    },
    "nodes": [
        {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "data": {}},
        {
            "id": "loop",
            "type": "logic.foreach",
            "position": {"x": 0, "y": 120},
            "width": 260,
            "height": 120,
            "data": {"label": "Each gate", "items": "params.gates", "concurrency": 1},
        },
        {
            "id": "pass",
            "type": "action.command",
            "parentId": "loop",
            "position": {"x": 20, "y": 40},
            "data": {
                "label": "Pass the gate",
                "argv": ["sh", "-c", 'while [ ! -e "$0" ]; do sleep 0.05; done', "{{ item }}"],
            },
        },
    ],
    "edges": [{"id": "e0", "source": "start", "target": "loop"}],
}


# 500 nodes: a trigger and 499 conditions (evaluated by the executor, no worker hop), on a grid.
WIDE = {
    "schema": "conveyor/v1",
    "name": "e2e-wide",
    "nodes": [
        {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "data": {}},
        *(
            {
                "id": f"c{i:03d}",
                "type": "logic.condition",
                "position": {"x": (i % 25) * 200, "y": 120 + (i // 25) * 90},
                "data": {"expression": "true"},
            }
            for i in range(499)
        ),
    ],
    "edges": [{"id": f"e{i}", "source": "start", "target": f"c{i:03d}"} for i in range(499)],
}
HISTORY_RUNS = 10_000


def _import_copies(suite: dict[str, Any], token: str, run_id: str, copies: int) -> None:
    """`copies` ended runs cloned from one run's exported records, through ImportRuns."""
    channel = gateway_channel(suite["grpc"], token)
    stub = history_service_pb2_grpc.RunHistoryServiceStub(channel)
    exported = stub.ExportRuns(history_service_pb2.ExportRunsRequest(run_ids=[run_id]))
    records = [json.loads(r) for r in exported.records]
    batch: list[str] = []
    for n in range(copies):
        clone = f"{n:08d}{run_id[8:]}"
        for record in records:
            row = dict(record["row"])
            if record["table"] == "job_runs":
                row.update(id=clone, request_id=None)
            else:
                row["run_id"] = clone
            batch.append(json.dumps({"table": record["table"], "row": row}))
        if len(batch) + len(records) > 10_000 or n == copies - 1:
            stub.ImportRuns(history_service_pb2.ImportRunsRequest(records=batch), timeout=120)
            batch = []
    channel.close()


def _start(http: httpx.Client, job_id: str, parameters: dict[str, Any] | None = None) -> str:
    reply = http.post(f"/v1/jobs/{job_id}:run", json={"parameters": parameters or {}})
    reply.raise_for_status()
    return str(reply.json()["run"]["run_id"])


def _wait_run(http: httpx.Client, run_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()["run"]
        if run["state"] == state:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {state}")


def _node(page: Page, label: str, state: str) -> Any:
    return page.get_by_role("button", name=f"Step {label}: {state}", exact=True)


def _mark_document(page: Page) -> None:
    """A flag in the window that a reload would clear."""
    page.evaluate("window.__notReloaded = true")


def _assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def test_start_a_run_from_the_form_and_watch_the_node_succeed_live(
    page: Page, http: httpx.Client, token: str, tmp_path: Path
) -> None:
    job_id = create_job(http, GATED)
    gate = tmp_path / "gate"
    sign_in(page, token)
    page.goto(f"/#/jobs/{job_id}")
    form = page.get_by_role("form", name="Start a run")
    # Validation happens before anything is sent.
    form.get_by_label("copies").fill("9")
    form.get_by_role("button", name="Start run").click()
    expect(form.get_by_role("alert").filter(has_text="gate is required")).to_be_visible()
    expect(form.get_by_role("alert").filter(has_text="copies must be at most 5")).to_be_visible()
    assert "#/runs/" not in page.url
    form.get_by_label("gate").fill(str(gate))
    form.get_by_label("copies").fill("2")
    form.get_by_label("greeting").select_option("hello")
    form.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"#/runs/\w+"))
    _mark_document(page)
    expect(_node(page, "Wait for the gate", "running")).to_be_visible(timeout=TIMEOUT_MS)
    gate.write_text("open")
    expect(_node(page, "Wait for the gate", "succeeded")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_role("heading", name=re.compile("e2e-gated"))).to_be_visible()
    _assert_not_reloaded(page)
    run_id = page.url.rsplit("/", 1)[1]
    run = http.get(f"/v1/runs/{run_id}").json()["run"]
    assert run["parameters"] == {"gate": str(gate), "greeting": "hello", "copies": 2}
    # The step's panel shows its attempt and its live-captured output.
    _node(page, "Wait for the gate", "succeeded").click()
    panel = page.get_by_role("complementary", name="Step Wait for the gate")
    expect(panel.get_by_role("table", name="Attempts").get_by_role("row")).to_have_count(2)
    expect(panel.get_by_label("stdout")).to_contain_text("hello")
    # Its inputs as the attempt rendered them, not the templates.
    rendered = panel.get_by_label("Rendered inputs")
    expect(rendered).to_contain_text('"GREETING": "hello"')
    expect(rendered).to_contain_text(f'"GATE": "{gate}"')
    expect(rendered).not_to_contain_text("params.greeting")


def test_rendered_inputs_show_secrets_masked(page: Page, http: httpx.Client, token: str) -> None:
    job_id = create_job(http, SECRETIVE)
    run_id = _start(http, job_id, {"user": "alice"})
    _wait_run(http, run_id, "RUN_STATE_SUCCEEDED")
    sign_in(page, token)
    page.goto(f"/#/runs/{run_id}")
    _node(page, "Call the API", "succeeded").click()
    panel = page.get_by_role("complementary", name="Step Call the API")
    rendered = panel.get_by_label("Rendered inputs")
    expect(rendered).to_contain_text('"user=alice"')
    expect(rendered).to_contain_text('"key=***"')
    assert SECRET not in panel.inner_text()
    assert SECRET not in page.content()


def test_a_foreach_shows_its_items_progress_while_it_runs(
    page: Page, http: httpx.Client, token: str, tmp_path: Path
) -> None:
    gates = [tmp_path / f"gate-{i}" for i in range(4)]
    job_id = create_job(http, LOOP)
    sign_in(page, token)
    run_id = _start(http, job_id, {"gates": [str(g) for g in gates]})
    page.goto(f"/#/runs/{run_id}")
    _mark_document(page)
    loop = _node(page, "Each gate", "running")
    expect(loop).to_contain_text("0/4 items", timeout=TIMEOUT_MS)
    gates[0].write_text("open")
    expect(loop).to_contain_text("1/4 items", timeout=TIMEOUT_MS)
    gates[1].write_text("open")
    expect(loop).to_contain_text("2/4 items", timeout=TIMEOUT_MS)
    for gate in gates[2:]:
        gate.write_text("open")
    expect(_node(page, "Each gate", "succeeded")).to_contain_text("4/4 items", timeout=TIMEOUT_MS)
    _assert_not_reloaded(page)


def test_runs_table_shows_a_new_run_and_its_end_without_reload(
    page: Page, http: httpx.Client, token: str, tmp_path: Path
) -> None:
    job_id = create_job(http, GATED)
    gate = tmp_path / "gate"
    sign_in(page, token)
    # The list is loaded before the run starts: its row can only come from the live feed.
    expect(page.get_by_role("table", name="Runs")).to_have_attribute("aria-busy", "false")
    _mark_document(page)
    run_id = _start(http, job_id, {"gate": str(gate)})
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Run {run_id}"))
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    # Who started it: the token's name, filled into the row that arrived live.
    expect(row.get_by_role("cell", name="dev", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    gate.write_text("open")
    expect(row.get_by_text("succeeded")).to_be_visible(timeout=TIMEOUT_MS)
    _assert_not_reloaded(page)
    # Filtering still works with the column: the run is among the succeeded ones only.
    page.get_by_label("State").select_option("RUN_STATE_SUCCEEDED")
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    page.get_by_label("State").select_option("RUN_STATE_FAILED")
    expect(page.get_by_role("table", name="Runs")).to_have_attribute("aria-busy", "false")
    expect(row).to_have_count(0)


def test_a_failed_steps_stderr_and_category_then_retry_it(
    page: Page, http: httpx.Client, token: str
) -> None:
    job_id = create_job(http, FAILING)
    run_id = _start(http, job_id)
    _wait_run(http, run_id, "RUN_STATE_FAILED")
    sign_in(page, token)
    page.goto(f"/#/runs/{run_id}")
    _node(page, "Break", "failed").click()
    panel = page.get_by_role("complementary", name="Step Break")
    expect(panel.get_by_role("group", name="Error")).to_contain_text("nonzero exit")
    expect(panel.get_by_label("stderr")).to_contain_text("boom-on-stderr")
    attempt = panel.get_by_role("table", name="Attempts").get_by_role("row").nth(1)
    expect(attempt).to_contain_text("3")  # the exit code
    page.get_by_role("button", name="Retry failed steps").click()
    page.wait_for_url(re.compile(r"#/runs/(?!" + run_id + r")\w+"))
    expect(page.get_by_role("link", name=run_id[:8])).to_be_visible()  # "Retry of"
    new_id = page.url.rsplit("/", 1)[1]
    retried = http.get(f"/v1/runs/{new_id}").json()["run"]
    assert retried["retry_of_run_id"] == run_id


def test_approve_a_waiting_step_with_a_comment(page: Page, http: httpx.Client, token: str) -> None:
    job_id = create_job(http, APPROVAL)
    run_id = _start(http, job_id)
    _wait_run(http, run_id, "RUN_STATE_WAITING")
    sign_in(page, token)
    page.goto(f"/#/runs/{run_id}")
    _node(page, "Sign-off", "waiting").click()
    decision = page.get_by_role("group", name="Decision")
    decision.get_by_label("Comment").fill("looks good")
    decision.get_by_role("button", name="Approve").click()
    expect(_node(page, "After", "succeeded")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_label("Run views")).to_be_visible()
    run = _wait_run(http, run_id, "RUN_STATE_SUCCEEDED")
    signoff = next(s for s in run["steps"] if s["node_id"] == "signoff")
    assert signoff["outputs"]["comment"] == "looks good"


def test_ten_thousand_runs_and_a_500_node_run_keep_the_pages_working(
    page: Page, http: httpx.Client, suite: dict[str, Any], token: str
) -> None:
    job_id = create_job(http, FAILING)
    source = _start(http, job_id)
    _wait_run(http, source, "RUN_STATE_FAILED")
    _import_copies(suite, token, source, HISTORY_RUNS)
    wide = _start(http, create_job(http, WIDE))
    _wait_run(http, wide, "RUN_STATE_SUCCEEDED")
    sign_in(page, token)
    # The history is paged: 50 rows a page, older pages on demand.
    page.goto(f"/#/runs?job={job_id}")
    table = page.get_by_role("table", name="Runs")
    expect(table).to_have_attribute("aria-busy", "false", timeout=TIMEOUT_MS)
    expect(table.get_by_role("link", name=re.compile(r"^Run "))).to_have_count(50)
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_text("page 2")).to_be_visible()
    expect(table).to_have_attribute("aria-busy", "false", timeout=TIMEOUT_MS)
    expect(table.get_by_role("link", name=re.compile(r"^Run "))).to_have_count(50)
    # The job's page with its 10,001 runs: stats and its latest runs.
    page.goto(f"/#/jobs/{job_id}")
    expect(page.get_by_role("heading", name="e2e-failing")).to_be_visible(timeout=TIMEOUT_MS)
    # The 500-node run: drawn (only what is in view), and a node opens its panel.
    page.goto(f"/#/runs/{wide}")
    node = page.get_by_role("button", name=re.compile(r"^Step c000: succeeded$"))
    expect(node).to_be_visible(timeout=TIMEOUT_MS)
    assert page.locator("[data-state]").count() >= 100
    node.click()
    panel = page.get_by_role("complementary", name="Step c000")
    expect(panel.get_by_label("Rendered inputs")).to_contain_text('"expression": true')


def test_workers_page_lists_the_worker_and_what_it_runs(
    page: Page, http: httpx.Client, token: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = _start(http, create_job(http, GATED), {"gate": str(gate)})
    _wait_run(http, run_id, "RUN_STATE_RUNNING")
    sign_in(page, token)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queues & workers").click()
    workers = page.get_by_role("table", name="Workers")
    online = workers.get_by_role("row").filter(has_text="online").first
    expect(online).to_be_visible()
    expect(page.get_by_role("table", name="Queues").get_by_role("row").nth(1)).to_be_visible()
    # What it runs: the waiting step, named by the worker its attempt records.
    running = page.get_by_role("list", name=re.compile(r"^Running on "))
    expect(running.get_by_role("link", name="wait")).to_be_visible(timeout=TIMEOUT_MS)
    expect(running).to_contain_text(f"run {run_id[:8]}")
    hostname = (running.get_attribute("aria-label") or "").removeprefix("Running on ")
    gate.write_text("open")
    run = _wait_run(http, run_id, "RUN_STATE_SUCCEEDED")
    [attempt] = next(s for s in run["steps"] if s["node_id"] == "wait")["executions"]
    assert attempt["worker"] == hostname
    # The link opens the run with that step's panel.
    page.goto(f"/#/runs/{run_id}?node=wait")
    expect(page.get_by_role("complementary", name="Step Wait for the gate")).to_be_visible()


def test_a_viewer_gets_no_action_buttons(
    page: Page, http: httpx.Client, suite: dict[str, Any]
) -> None:
    failing = create_job(http, FAILING)
    failed_run = _start(http, failing)
    approval = create_job(http, APPROVAL)
    waiting_run = _start(http, approval)
    _wait_run(http, failed_run, "RUN_STATE_FAILED")
    _wait_run(http, waiting_run, "RUN_STATE_WAITING")
    viewer = harness.create_token(suite, "e2e-reader", "viewer")
    sign_in(page, viewer)
    expect(page.get_by_label("Signed in as")).to_contain_text("viewer")
    page.goto(f"/#/runs/{failed_run}")
    expect(_node(page, "Break", "failed")).to_be_visible()
    expect(page.get_by_role("button", name="Retry failed steps")).to_have_count(0)
    page.goto(f"/#/runs/{waiting_run}")
    _node(page, "Sign-off", "waiting").click()
    expect(page.get_by_role("complementary", name="Step Sign-off")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    page.goto(f"/#/jobs/{failing}")
    expect(page.get_by_role("heading", name="e2e-failing")).to_be_visible()
    expect(page.get_by_role("form", name="Start a run")).to_have_count(0)


def test_screenshots_of_the_main_pages(
    page: Page, http: httpx.Client, token: str, tmp_path: Path
) -> None:
    """Renders each main page; CONVEYOR_SCREENSHOT_DIR=docs/images keeps the pictures."""
    out = Path(os.environ.get("CONVEYOR_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    examples = Path(__file__).resolve().parents[2] / "examples"
    hello = create_job(http, json.loads((examples / "hello.json").read_text()))
    run_id = _start(http, hello, {"name": "Conveyor"})
    _wait_run(http, run_id, "RUN_STATE_SUCCEEDED")
    failed = _start(http, create_job(http, FAILING))
    _wait_run(http, failed, "RUN_STATE_FAILED")
    waiting = _start(http, create_job(http, APPROVAL))
    _wait_run(http, waiting, "RUN_STATE_WAITING")
    gate = tmp_path / "gate"  # a step kept running, for the workers page
    busy = _start(http, create_job(http, GATED), {"gate": str(gate)})
    _wait_run(http, busy, "RUN_STATE_RUNNING")
    sign_in(page, token)
    shots = {
        "dashboard-runs.png": ("/#/runs", page.get_by_role("table", name="Runs")),
        "dashboard-run.png": (f"/#/runs/{run_id}", _node(page, "Say hello", "succeeded")),
        "dashboard-approval.png": (f"/#/runs/{waiting}", _node(page, "Sign-off", "waiting")),
        "dashboard-jobs.png": ("/#/jobs", page.get_by_role("table", name="Jobs")),
        "dashboard-errors.png": ("/#/errors", page.get_by_role("article").first),
        "dashboard-workers.png": ("/#/queues", page.get_by_role("table", name="Workers")),
        "dashboard-kpis.png": ("/#/kpis", page.get_by_role("table", name="Job KPIs")),
    }
    for name, (url, ready) in shots.items():
        page.goto(url)
        expect(ready).to_be_visible(timeout=TIMEOUT_MS)
        if name == "dashboard-approval.png":
            ready.click()
            expect(page.get_by_role("group", name="Decision")).to_be_visible()
        if name == "dashboard-run.png":  # the step's panel: attempts, rendered inputs, log
            ready.click()
            expect(page.get_by_label("Rendered inputs")).to_be_visible()
        if name == "dashboard-workers.png":
            running = page.get_by_role("list", name=re.compile(r"^Running on "))
            expect(running.get_by_role("link", name="wait")).to_be_visible(timeout=TIMEOUT_MS)
        page.wait_for_timeout(300)  # let the graph's fit-to-view settle
        page.screenshot(path=str(out / name))
        if name == "dashboard-kpis.png":  # the figures come from GetKpis, drawn as charts
            started = page.get_by_role("img", name=re.compile(r"^Runs started per hour: "))
            expect(started).to_be_visible()
            hello_row = page.get_by_role("row").filter(has_text="hello")
            expect(hello_row.first).to_contain_text("100%")
        assert (out / name).stat().st_size > 10_000
    gate.write_text("open")
    _wait_run(http, busy, "RUN_STATE_SUCCEEDED")


@pytest.fixture(autouse=True)
def _no_page_errors(page: Page) -> Any:
    """A script error in the page fails the test."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield
    assert errors == []
