"""The run-time DAG rules: trigger rules, branches, error edges, skip propagation, retries."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.executor.engine import (
    SKIP_BRANCH_NOT_TAKEN,
    SKIP_UPSTREAM_FAILED,
    Edge,
    RetryPolicy,
    RunState,
    StepState,
    StepView,
    advance,
    evaluate_rule,
    run_outcome,
)


def plan(
    edges: list[tuple[str, str, str | None]],
    types: dict[str, str] | None = None,
    rules: dict[str, str] | None = None,
    coe: set[str] | None = None,
) -> dict[str, Any]:
    """A minimal compiled plan from (source, target, handle) edges."""
    ids = sorted({n for e in edges for n in e[:2]})
    nodes: dict[str, Any] = {
        n: {
            "id": n,
            "type": (types or {}).get(n, "action.command"),
            "parents": [],
            "children": [],
            "trigger_rule": (rules or {}).get(n, "none_failed_min_one_success"),
            "continue_on_error": n in (coe or set()),
        }
        for n in ids
    }
    for s, t, h in edges:
        nodes[s]["children"].append({"node": t, "handle": h})
        nodes[t]["parents"].append({"node": s, "handle": h})
    entry = [n for n in ids if not nodes[n]["parents"]]
    return {"nodes": nodes, "entry": entry, "order": ids}


def run(
    p: dict[str, Any], states: dict[str, StepView], changed: list[str]
) -> dict[str, tuple[StepState, str]]:
    def view(n: str) -> StepView:
        return states.get(n, StepView(StepState.PENDING))

    return {d.node_id: (d.state, d.reason) for d in advance(p, changed, view)}


def test_join_waits_for_every_parent() -> None:
    p = plan([("a", "c", None), ("b", "c", None)])
    assert (
        run(p, {"a": StepView(StepState.SUCCEEDED), "b": StepView(StepState.RUNNING)}, ["a"]) == {}
    )
    got = run(p, {"a": StepView(StepState.SUCCEEDED), "b": StepView(StepState.SUCCEEDED)}, ["b"])
    assert got == {"c": (StepState.QUEUED, "")}


def test_condition_skips_branch_not_taken_and_join_still_runs() -> None:
    p = plan(
        [
            ("cond", "yes", "true"),
            ("cond", "no", "false"),
            ("yes", "join", None),
            ("no", "join", None),
        ],
        types={"cond": "logic.condition"},
    )
    got = run(p, {"cond": StepView(StepState.SUCCEEDED, handle="true")}, ["cond"])
    assert got == {"yes": (StepState.QUEUED, ""), "no": (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN)}
    states = {
        "cond": StepView(StepState.SUCCEEDED, handle="true"),
        "yes": StepView(StepState.SUCCEEDED),
        "no": StepView(StepState.SKIPPED),
    }
    assert run(p, states, ["yes"]) == {"join": (StepState.QUEUED, "")}


def test_failure_skips_downstream_chain_with_reason() -> None:
    p = plan([("a", "b", None), ("b", "c", None)])
    got = run(p, {"a": StepView(StepState.FAILED)}, ["a"])
    assert got == {
        "b": (StepState.SKIPPED, SKIP_UPSTREAM_FAILED),
        "c": (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN),
    }


def test_error_edge_runs_handler_and_skips_normal_path() -> None:
    p = plan([("a", "ok", None), ("a", "handler", "error")])
    got = run(p, {"a": StepView(StepState.FAILED, failure_handled=True)}, ["a"])
    assert got == {
        "handler": (StepState.QUEUED, ""),
        "ok": (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN),
    }
    got = run(p, {"a": StepView(StepState.SUCCEEDED)}, ["a"])
    assert got == {
        "ok": (StepState.QUEUED, ""),
        "handler": (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN),
    }


def test_continue_on_error_lets_successors_run() -> None:
    p = plan([("a", "b", None)], coe={"a"})
    assert run(p, {"a": StepView(StepState.FAILED, failure_handled=True)}, ["a"]) == {
        "b": (StepState.QUEUED, "")
    }


@pytest.mark.parametrize(
    ("rule", "edges", "expected"),
    [
        ("all_success", [Edge.SUCCESS, Edge.SUCCESS], True),
        ("all_success", [Edge.SUCCESS, Edge.SKIPPED], False),
        ("all_success", [Edge.SUCCESS, Edge.PENDING], None),
        ("all_done", [Edge.FAILED, Edge.SKIPPED], True),
        ("all_done", [Edge.FAILED, Edge.PENDING], None),
        ("one_success", [Edge.SUCCESS, Edge.PENDING], True),
        ("one_success", [Edge.FAILED, Edge.SKIPPED], False),
        ("one_failed", [Edge.FAILED, Edge.PENDING], True),
        ("one_failed", [Edge.SUCCESS, Edge.SUCCESS], False),
        ("none_failed", [Edge.SKIPPED, Edge.SKIPPED], True),
        ("none_failed", [Edge.FAILED, Edge.PENDING], False),
        ("none_failed_min_one_success", [Edge.SKIPPED, Edge.SUCCESS], True),
        ("none_failed_min_one_success", [Edge.SKIPPED, Edge.SKIPPED], False),
        ("none_failed_min_one_success", [Edge.SUCCESS, Edge.PENDING], None),
    ],
)
def test_trigger_rules(rule: str, edges: list[Edge], expected: bool | None) -> None:
    assert evaluate_rule(rule, edges)[0] is expected


def test_all_done_runs_cleanup_after_failure() -> None:
    p = plan([("a", "cleanup", None)], rules={"cleanup": "all_done"})
    assert run(p, {"a": StepView(StepState.FAILED)}, ["a"]) == {"cleanup": (StepState.QUEUED, "")}


def test_run_outcome() -> None:
    assert run_outcome([(StepState.SUCCEEDED, False), (StepState.RUNNING, False)]) is None
    assert (
        run_outcome([(StepState.SUCCEEDED, False), (StepState.SKIPPED, False)])
        == RunState.SUCCEEDED
    )
    assert (
        run_outcome([(StepState.FAILED, True), (StepState.SUCCEEDED, False)]) == RunState.SUCCEEDED
    )
    assert run_outcome([(StepState.FAILED, False), (StepState.SKIPPED, False)]) == RunState.FAILED


def test_retry_policy_backoff_and_categories() -> None:
    policy = RetryPolicy.from_node(
        {"retries": {"max": 2, "backoff_s": 1, "factor": 3, "max_backoff_s": 5}}
    )
    assert policy.should_retry(1, "NONZERO_EXIT")
    assert policy.should_retry(2, "TIMEOUT")
    assert not policy.should_retry(3, "TIMEOUT")
    assert not policy.should_retry(1, "TEMPLATE")
    assert [policy.delay(a, rand=lambda: 1.0) for a in (1, 2, 3)] == [1, 3, 5]
    jittered = RetryPolicy.from_node({"retries": {"max": 1, "backoff_s": 10, "jitter": True}})
    assert jittered.delay(1, rand=lambda: 0.25) == 2.5
