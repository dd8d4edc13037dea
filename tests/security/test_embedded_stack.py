"""Hostile workflows through a real embedded stack: the worker runs inside this process."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.cli.client import Client
from conveyor.cli.render import run_json
from tests.conftest import open_to_steps
from tests.integration import harness
from tests.integration import workflows as wf

SECRET = "emb3dded-s3cret-value"
DB_CREDENTIAL = "hunter2-database-password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = open_to_steps(tmp_path_factory.mktemp("security"))
    secrets_file = tmp / "secrets.env"
    secrets_file.write_text(f"TOKEN={SECRET}\n")
    secrets_file.chmod(0o644)
    saved = os.environ.get("CONVEYOR_TEST_ONLY_CREDENTIAL")
    os.environ["CONVEYOR_TEST_ONLY_CREDENTIAL"] = DB_CREDENTIAL  # in this process's environ
    try:
        # No egress allow list: loopback (where every service listens here) is denied.
        with harness.embedded(tmp, secrets_file=secrets_file, egress_allow="") as addresses:
            client = Client(addresses["grpc"], token=addresses["token"])
            yield {"client": client, "tmp": tmp, "secrets_file": secrets_file, **addresses}
            client.close()
    finally:
        if saved is None:
            os.environ.pop("CONVEYOR_TEST_ONLY_CREDENTIAL", None)
        else:
            os.environ["CONVEYOR_TEST_ONLY_CREDENTIAL"] = saved


def run_to_end(client: Client, text: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    job = client.create_job(text).job
    run = client.start_run(job.job_id, params or {})
    list(client.watch(run.run_id))
    return run_json(client.get_run(run.run_id))


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in result["steps"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="the default step user applies to root workers")
def test_a_step_reads_nothing_of_the_worker(stack: dict[str, Any], counts: Counter[str]) -> None:
    script = (
        f"cat /proc/{os.getpid()}/environ; cat /proc/$PPID/environ; "
        f"cat {stack['secrets_file']}; ls {stack['tmp']}; exit 0"
    )
    doc = wf.doc("sec-read-worker", [wf.cmd("peek", ["sh", "-c", script])], [])
    result = run_to_end(stack["client"], doc)
    peek = steps(result)["peek"]
    counts["embedded credential reads tried"] += 3
    text = json.dumps(peek)
    assert peek["state"] == "SUCCEEDED", peek
    assert DB_CREDENTIAL not in text and SECRET not in text
    assert "Permission denied" in peek["stderr"]
    counts["embedded credential reads leaked"] += int(DB_CREDENTIAL in text or SECRET in text)


def test_shell_injection_through_run_parameters(
    stack: dict[str, Any], counts: Counter[str]
) -> None:
    marker = stack["tmp"] / "PWNED"
    nodes = [
        {
            "id": f"s{i}",
            "type": "action.command",
            "data": {"command": text, "shell": True},
        }
        for i, text in enumerate(
            [
                "echo {{ params.x }}",
                "echo '{{ params.x }}'",
                'echo "{{ params.x }}"',
                'echo "$(echo {{ params.x }})"',
            ]
        )
    ]
    parameters = {"type": "object", "properties": {"x": {"type": "string"}}}
    doc = wf.doc("sec-inject", nodes, [], parameters=parameters)
    for payload in (f"'; touch {marker}; '", f'"; touch {marker}; "', f"$(touch {marker})"):
        result = run_to_end(stack["client"], doc, {"x": payload})
        counts["embedded injection tried"] += len(nodes)
        assert result["state"] == "SUCCEEDED", result
        assert not marker.exists()


def test_ssrf_to_the_stacks_own_services_is_denied(
    stack: dict[str, Any], counts: Counter[str]
) -> None:
    targets = [f"{stack['http']}/metrics", f"http://{stack['grpc']}/"]
    targets += ["http://0x7f000001:1/", "http://169.254.169.254/latest/meta-data/"]
    nodes = [
        {"id": f"h{i}", "type": "action.http", "data": {"method": "GET", "url": url}}
        for i, url in enumerate(targets)
    ]
    result = run_to_end(stack["client"], wf.doc("sec-ssrf", nodes, []))
    for step in steps(result).values():
        counts["embedded ssrf tried"] += 1
        assert step["state"] == "FAILED", step
        assert step["error_category"] == "CONNECTION"
        assert "egress denied" in step["error_message"]


def test_a_template_bomb_fails_and_the_worker_goes_on(
    stack: dict[str, Any], counts: Counter[str]
) -> None:
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    doc = wf.doc(
        "sec-bomb",
        [wf.cmd("bomb", ["echo", bomb], timeout_s=5), wf.cmd("after", ["echo", "fine"])],
        [("bomb", "after")],
    )
    doc_data = json.loads(doc)
    doc_data["nodes"][1]["data"]["trigger_rule"] = "all_done"
    result = run_to_end(stack["client"], json.dumps(doc_data))
    counts["embedded template bomb tried"] += 1
    s = steps(result)
    assert s["bomb"]["error_category"] == "TEMPLATE"
    assert s["after"]["state"] == "SUCCEEDED"


def test_templates_see_only_upstream_steps(stack: dict[str, Any]) -> None:
    doc = wf.doc(
        "sec-upstream",
        [
            wf.cmd("a", ["echo", "a"]),
            wf.cmd("side", ["echo", "side-output"]),
            wf.cmd("delay", ["sleep", "1"]),
            wf.cmd("c", ["echo", "{{ steps | list | sort | join(',') }}|{{ steps | tojson }}"]),
        ],
        [("a", "side"), ("a", "delay"), ("delay", "c")],
    )
    result = run_to_end(stack["client"], doc)
    s = steps(result)
    assert s["side"]["state"] == "SUCCEEDED"
    # "side" (an echo) ends long before "delay" (a one-second sleep) lets "c" start.
    names, _, dumped = s["c"]["stdout"].strip().partition("|")
    assert names == "a,delay"
    assert "side-output" not in dumped
