"""Triggers, branches, logic.fail, action.sleep and dispatch of unknown types."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conveyor.executor.runners import ErrorCategory, execute


def node(
    type_: str, node_id: str = "n", timeout_s: float | None = None, **data: Any
) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "data": data, "timeout_s": timeout_s}


@pytest.mark.parametrize("kind", ["manual", "schedule", "webhook"])
def test_triggers_succeed_with_no_outputs(make_ctx: Any, kind: str) -> None:
    outcome = execute(node(f"trigger.{kind}"), make_ctx())
    assert outcome.succeeded
    assert outcome.outputs == {}


@pytest.mark.parametrize(("code", "handle"), [(0, "true"), (1, "false")])
def test_condition_chooses_the_branch(make_ctx: Any, code: int, handle: str) -> None:
    ctx = make_ctx(steps={"ping": {"exit_code": code}})
    outcome = execute(node("logic.condition", expression="steps.ping.exit_code == 0"), ctx)
    assert outcome.succeeded
    assert outcome.handle == handle
    assert outcome.outputs == {"result": handle == "true"}


def test_condition_template_error(make_ctx: Any) -> None:
    outcome = execute(
        node("logic.condition", node_id="c", expression="steps.ping.code == 0"),
        make_ctx(node_id="c", steps={"ping": {}}),
    )
    assert outcome.error_category is ErrorCategory.TEMPLATE
    assert outcome.error_message is not None
    assert outcome.error_message.startswith(
        "node 'c' field data.expression: steps.ping.code == 0: "
    )


@pytest.mark.parametrize(
    ("env", "matched"), [("prod", "prod"), ("staging", "staging"), ("dev", "default")]
)
def test_switch_matches_a_case_or_default(make_ctx: Any, env: str, matched: str) -> None:
    data: dict[str, Any] = {"value": "params.env", "cases": ["prod", "staging"]}
    outcome = execute(node("logic.switch", **data), make_ctx(params={"env": env}))
    assert outcome.handle == matched
    assert outcome.outputs == {"matched": matched}


def test_switch_compares_non_strings_as_text(make_ctx: Any) -> None:
    data: dict[str, Any] = {"value": "{{ params.n > 2 }}", "cases": ["false", "true"]}
    outcome = execute(node("logic.switch", **data), make_ctx(params={"n": 5}))
    assert outcome.handle == "true"


def test_fail_reports_the_rendered_message(make_ctx: Any) -> None:
    outcome = execute(
        node("logic.fail", message="host {{ params.h }} is down"), make_ctx(params={"h": "r1"})
    )
    assert not outcome.succeeded
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message == "host r1 is down"


def test_sleep_finishes(make_ctx: Any) -> None:
    outcome = execute(node("action.sleep", seconds="{{ params.s }}"), make_ctx(params={"s": 0.05}))
    assert outcome.succeeded


def test_sleep_is_cancelled(make_ctx: Any) -> None:
    calls = itertools.count()
    outcome = execute(
        node("action.sleep", seconds=100), make_ctx(is_cancelled=lambda: next(calls) >= 2)
    )
    assert outcome.error_category is ErrorCategory.CANCELLED


def test_sleep_respects_the_timeout(make_ctx: Any) -> None:
    outcome = execute(node("action.sleep", timeout_s=0.1, seconds=100), make_ctx())
    assert outcome.error_category is ErrorCategory.TIMEOUT
    assert outcome.error_message == "timed out after 0.1 s"


def test_sleep_rejects_a_non_number(make_ctx: Any) -> None:
    outcome = execute(node("action.sleep", seconds="soon"), make_ctx())
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message is not None
    assert "data.seconds" in outcome.error_message


@pytest.mark.parametrize("kind", ["action.approval", "action.subworkflow", "logic.foreach", "x.y"])
def test_types_the_worker_handles_are_not_executed(make_ctx: Any, kind: str) -> None:
    outcome = execute(node(kind), make_ctx())
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message == f"node type {kind} is not executed by a runner"


def test_an_unexpected_error_becomes_an_internal_failure(make_ctx: Any) -> None:
    broken = {"id": "n", "type": "action.command", "data": {"argv": ["true"]}, "timeout_s": "soon"}
    outcome = execute(broken, make_ctx())
    assert not outcome.succeeded
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message is not None
    assert "soon" in outcome.error_message
