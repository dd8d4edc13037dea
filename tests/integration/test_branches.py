"""A branch not taken never runs, whatever the trigger rule of the nodes on it."""

from __future__ import annotations

from typing import Any

from conveyor.cli.client import Client
from conveyor.cli.render import run_json
from tests.integration import workflows as wf


def _rule(node: dict[str, Any], rule: str) -> dict[str, Any]:
    return {**node, "data": {**node["data"], "trigger_rule": rule}}


BRANCHES = wf.doc(
    "it-untaken-branches",
    [
        {"id": "start", "type": "trigger.manual", "data": {}},
        {"id": "env", "type": "logic.switch", "data": {"value": "params.env", "cases": ["prod"]}},
        _rule(wf.cmd("prod_all_done", ["echo", "prod"]), "all_done"),
        _rule(wf.cmd("prod_none_failed", ["echo", "prod"]), "none_failed"),
        wf.cmd("dev", ["echo", "dev"]),
        {"id": "big", "type": "logic.condition", "data": {"expression": "params.n > 10"}},
        _rule(wf.cmd("big_yes", ["echo", "big"]), "all_done"),
        _rule(wf.cmd("big_no", ["echo", "small"]), "all_done"),
        wf.cmd("bad", ["false"]),
        _rule(wf.cmd("after_bad", ["echo", "after"]), "all_done"),
        wf.cmd("handler", ["echo", "handled"]),
        _rule(wf.cmd("join", ["echo", "join"]), "all_done"),
    ],
    [
        ("start", "env"),
        ("env", "prod_all_done", "prod"),
        ("env", "prod_none_failed", "prod"),
        ("env", "dev", "default"),
        ("start", "big"),
        ("big", "big_yes", "true"),
        ("big", "big_no", "false"),
        ("start", "bad"),
        ("bad", "after_bad"),
        ("bad", "handler", "error"),
        ("prod_all_done", "join"),
        ("dev", "join"),
    ],
    {
        "type": "object",
        "properties": {"env": {"type": "string"}, "n": {"type": "integer"}},
    },
)


def test_untaken_branches_are_skipped_whatever_the_rule(client: Client) -> None:
    job = client.create_job(BRANCHES).job
    run = client.start_run(job.job_id, {"env": "dev", "n": 3})
    list(client.watch(run.run_id))
    result = run_json(client.get_run(run.run_id))
    s = {step["node_id"]: step for step in result["steps"]}
    assert result["state"] == "SUCCEEDED", result
    for node in ("prod_all_done", "prod_none_failed", "big_yes", "after_bad"):
        assert s[node]["state"] == "SKIPPED", (node, s[node])
        assert s[node]["skip_reason"] == "branch not taken", (node, s[node])
    for node in ("dev", "big_no", "handler", "join"):
        assert s[node]["state"] == "SUCCEEDED", (node, s[node])
    assert s["env"]["outputs"]["matched"] == "default"
    assert s["big"]["outputs"]["result"] is False
    assert s["bad"]["state"] == "FAILED"
