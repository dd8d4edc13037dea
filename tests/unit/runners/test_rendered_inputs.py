"""What an attempt records as its rendered inputs: rendered fields, secrets masked, bounded."""

from __future__ import annotations

import json
from typing import Any

from conveyor.executor.runners import execute
from conveyor.executor.runners.rendered import MAX_RECORD, MAX_STRING, bounded
from tests.unit.runners.conftest import MakeCtx

SECRET = "s3cr3t-Value-42"


def command(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "n", "type": "action.command", "data": data}


def test_rendered_fields_replace_templates_and_the_rest_stays(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(params={"who": "ops", "n": 3})
    node = command(
        {
            "argv": ["echo", "hello {{ params.who }}", "{{ params.n * 2 }}"],
            "env": {"GREETING": "hi {{ params.who }}"},
            "timeout_s": 30,
        }
    )
    outcome = execute(node, ctx)
    assert outcome.succeeded, outcome.error_message
    record = json.loads(outcome.rendered_inputs or "")
    assert record == {
        "argv": ["echo", "hello ops", "6"],
        "env": {"GREETING": "hi ops"},
        "timeout_s": 30,
    }


def test_shell_command_is_recorded_with_its_values(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(params={"file": "a b.txt"})
    node = command({"command": "echo {{ params.file }} | wc -c", "shell": True})
    outcome = execute(node, ctx)
    assert outcome.succeeded, outcome.error_message
    assert json.loads(outcome.rendered_inputs or "")["command"] == "echo a b.txt | wc -c"


def test_secrets_are_masked_in_every_form_the_logs_mask(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(secrets_to_mask=[SECRET])
    ctx.scope["secrets"]["TOKEN"] = SECRET  # type: ignore[index]
    node = command(
        {
            "argv": ["true", "--token={{ secrets.TOKEN }}", "{{ secrets.TOKEN | upper }}"],
            "env": {"AUTH": "Bearer {{ secrets.TOKEN | urlencode }}"},
        }
    )
    outcome = execute(node, ctx)
    assert outcome.succeeded, outcome.error_message
    text = outcome.rendered_inputs or ""
    assert SECRET not in text and SECRET.upper() not in text
    record = json.loads(text)
    assert record["argv"][1:] == ["--token=***", "***"]
    assert record["env"]["AUTH"].startswith("Bearer ***")


def test_a_failed_render_keeps_what_rendered_before_it(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(params={"who": "ops"})
    node = command({"argv": ["echo", "{{ params.who }}", "{{ params.missing.deeper }}"]})
    outcome = execute(node, ctx)
    assert not outcome.succeeded
    record = json.loads(outcome.rendered_inputs or "")
    assert record["argv"][1] == "ops"
    assert record["argv"][2] == "{{ params.missing.deeper }}"


def test_records_are_bounded() -> None:
    long = "x" * (MAX_STRING + 10)
    cut = json.loads(bounded({"script": long}))["script"]
    assert cut.startswith("x" * MAX_STRING) and cut.endswith("[10 more characters]")
    many = {f"k{i}": "y" * 1000 for i in range(100)}
    record = json.loads(bounded(many))
    assert record["truncated"] is True and len(record["preview"]) == MAX_RECORD
