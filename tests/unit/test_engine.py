"""The run-time DAG rules: trigger rules, branches, error edges, skip propagation, retries."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from conveyor.executor.engine import (
    SKIP_BRANCH_NOT_TAKEN,
    SKIP_NO_UPSTREAM_FAILURE,
    SKIP_UPSTREAM_FAILED,
    SKIP_UPSTREAM_SKIPPED,
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
    return {"nodes": nodes, "entry": entry}


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
        "c": (StepState.SKIPPED, SKIP_UPSTREAM_FAILED),
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
        ("all_success", [Edge.SUCCESS, Edge.UNTAKEN], True),
        ("all_done", [Edge.UNTAKEN, Edge.UNTAKEN], False),
        ("all_done", [Edge.UNTAKEN, Edge.FAILED], True),
        ("none_failed", [Edge.UNTAKEN, Edge.PENDING], None),
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
    # A wide join's edges come counted by status: the same verdict and reason.
    assert evaluate_rule(rule, Counter(edges)) == evaluate_rule(rule, edges)


@pytest.mark.parametrize(
    ("rule", "counts", "expected"),
    [
        ("all_success", {Edge.SUCCESS: 999, Edge.PENDING: 1}, (None, "")),
        ("all_success", {Edge.SUCCESS: 1000}, (True, "")),
        (
            "all_success",
            {Edge.SUCCESS: 998, Edge.FAILED: 1, Edge.PENDING: 1},
            (False, SKIP_UPSTREAM_FAILED),
        ),
        ("all_success", {Edge.SUCCESS: 999, Edge.SKIPPED: 1}, (False, SKIP_UPSTREAM_SKIPPED)),
        ("one_failed", {Edge.SUCCESS: 1000}, (False, SKIP_NO_UPSTREAM_FAILURE)),
        (
            "none_failed_min_one_success",
            {Edge.UPSTREAM_FAILED: 1, Edge.PENDING: 999},
            (False, SKIP_UPSTREAM_FAILED),
        ),
        ("all_done", {Edge.UNTAKEN: 1000}, (False, SKIP_BRANCH_NOT_TAKEN)),
        # Statuses with no edge left (a count moved to another status) do not count.
        ("all_success", {Edge.SUCCESS: 3, Edge.PENDING: 0, Edge.FAILED: 0}, (True, "")),
        ("all_done", {Edge.PENDING: 0}, (True, "")),
    ],
)
def test_trigger_rules_on_counted_edges(
    rule: str, counts: dict[Edge, int], expected: tuple[bool | None, str]
) -> None:
    assert evaluate_rule(rule, counts) == expected


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


ALL_RULES = [
    "all_success",
    "all_done",
    "one_success",
    "one_failed",
    "none_failed",
    "none_failed_min_one_success",
]


def _condition(rule: str) -> tuple[dict[str, Any], dict[str, StepView], str]:
    p = plan(
        [("cond", "yes", "true"), ("cond", "no", "false")],
        types={"cond": "logic.condition"},
        rules={"yes": rule, "no": rule},
    )
    return p, {"cond": StepView(StepState.SUCCEEDED, handle="true")}, "cond"


def _switch(rule: str) -> tuple[dict[str, Any], dict[str, StepView], str]:
    p = plan(
        [("env", "yes", "dev"), ("env", "no", "prod"), ("env", "no2", "default")],
        types={"env": "logic.switch"},
        rules={"yes": rule, "no": rule, "no2": rule},
    )
    return p, {"env": StepView(StepState.SUCCEEDED, handle="dev")}, "env"


def _error_taken(rule: str) -> tuple[dict[str, Any], dict[str, StepView], str]:
    # a failed and its error edge was taken: its normal successor "no" is on an untaken path.
    p = plan([("a", "no", None), ("a", "yes", "error")], rules={"no": rule, "yes": rule})
    return p, {"a": StepView(StepState.FAILED, failure_handled=True)}, "a"


def _error_not_taken(rule: str) -> tuple[dict[str, Any], dict[str, StepView], str]:
    # a succeeded: its error handler "no" is on an untaken path.
    p = plan([("a", "yes", None), ("a", "no", "error")], rules={"no": rule, "yes": rule})
    return p, {"a": StepView(StepState.SUCCEEDED)}, "a"


BRANCHES = {
    "condition": _condition,
    "switch": _switch,
    "error edge taken": _error_taken,
    "error edge not taken": _error_not_taken,
}


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("branch", list(BRANCHES))
def test_untaken_branch_is_skipped_whatever_the_rule(branch: str, rule: str) -> None:
    p, states, changed = BRANCHES[branch](rule)
    got = run(p, states, [changed])
    untaken = {n for n in got if n.startswith("no")}
    assert untaken, got
    for node in untaken:
        assert got[node] == (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN), (node, got)
    # The taken branch follows its rule: one_failed needs a failure, which a taken branch is not.
    expected = (
        (StepState.SKIPPED, SKIP_NO_UPSTREAM_FAILURE)
        if rule == "one_failed"
        else (StepState.QUEUED, "")
    )
    assert got["yes"] == expected


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("branch", list(BRANCHES))
def test_skip_propagates_down_the_untaken_path_whatever_the_rule(branch: str, rule: str) -> None:
    p, states, changed = BRANCHES[branch](rule)
    for node in [n for n in p["nodes"] if n.startswith("no")]:
        deep = f"{node}_child"
        p["nodes"][node]["children"].append({"node": deep, "handle": None})
        p["nodes"][deep] = {
            "id": deep,
            "type": "action.command",
            "parents": [{"node": node, "handle": None}],
            "children": [],
            "trigger_rule": rule,
        }
    got = run(p, states, [changed])
    for node in [n for n in p["nodes"] if n.endswith("_child")]:
        assert got[node] == (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN), (node, got)


# A join of the taken branch ("yes") and the untaken one ("no"): the untaken parent is
# left out, so the join sees only the taken parent's outcome.
JOIN_CASES = [
    # rule, outcome of the taken branch's step, expected
    ("all_success", StepState.SUCCEEDED, (StepState.QUEUED, "")),
    ("all_success", StepState.FAILED, (StepState.SKIPPED, SKIP_UPSTREAM_FAILED)),
    ("all_done", StepState.SUCCEEDED, (StepState.QUEUED, "")),
    ("all_done", StepState.FAILED, (StepState.QUEUED, "")),
    ("one_success", StepState.SUCCEEDED, (StepState.QUEUED, "")),
    ("one_success", StepState.FAILED, (StepState.SKIPPED, SKIP_UPSTREAM_FAILED)),
    ("one_failed", StepState.SUCCEEDED, (StepState.SKIPPED, SKIP_NO_UPSTREAM_FAILURE)),
    ("one_failed", StepState.FAILED, (StepState.QUEUED, "")),
    ("none_failed", StepState.SUCCEEDED, (StepState.QUEUED, "")),
    ("none_failed", StepState.FAILED, (StepState.SKIPPED, SKIP_UPSTREAM_FAILED)),
    ("none_failed_min_one_success", StepState.SUCCEEDED, (StepState.QUEUED, "")),
    ("none_failed_min_one_success", StepState.FAILED, (StepState.SKIPPED, SKIP_UPSTREAM_FAILED)),
]


@pytest.mark.parametrize(("rule", "taken", "expected"), JOIN_CASES)
def test_join_of_a_taken_and_an_untaken_branch(
    rule: str, taken: StepState, expected: tuple[StepState, str]
) -> None:
    p = plan(
        [
            ("cond", "yes", "true"),
            ("cond", "no", "false"),
            ("yes", "join", None),
            ("no", "join", None),
        ],
        types={"cond": "logic.condition"},
        rules={"join": rule},
    )
    states = {
        "cond": StepView(StepState.SUCCEEDED, handle="true"),
        "yes": StepView(taken),
        "no": StepView(StepState.SKIPPED, skip_reason=SKIP_BRANCH_NOT_TAKEN),
    }
    assert run(p, states, ["yes"]) == {"join": expected}


@pytest.mark.parametrize("rule", ALL_RULES)
def test_join_of_only_untaken_branches_is_skipped(rule: str) -> None:
    p = plan(
        [("env", "a", "prod"), ("env", "b", "staging"), ("a", "join", None), ("b", "join", None)],
        types={"env": "logic.switch"},
        rules={"join": rule, "a": rule, "b": rule},
    )
    got = run(p, {"env": StepView(StepState.SUCCEEDED, handle="dev")}, ["env"])
    assert got["join"] == (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN)


def test_join_waits_while_a_branch_is_undecided() -> None:
    p = plan(
        [
            ("cond", "yes", "true"),
            ("cond", "no", "false"),
            ("yes", "join", None),
            ("no", "join", None),
            ("other", "join", None),
        ],
        types={"cond": "logic.condition"},
        rules={"join": "all_done"},
    )
    states = {
        "cond": StepView(StepState.SUCCEEDED, handle="true"),
        "yes": StepView(StepState.SUCCEEDED),
        "other": StepView(StepState.RUNNING),
    }
    got = run(p, states, ["cond"])
    assert got == {"no": (StepState.SKIPPED, SKIP_BRANCH_NOT_TAKEN)}


def test_skipped_parent_that_is_not_a_branch_counts_as_done() -> None:
    # "handler" (one_failed) did not fire; "cleanup" (all_done) after it still runs, while an
    # all_success successor is skipped as "upstream skipped".
    p = plan(
        [("a", "handler", None), ("handler", "cleanup", None), ("handler", "strict", None)],
        rules={"handler": "one_failed", "cleanup": "all_done", "strict": "all_success"},
    )
    got = run(p, {"a": StepView(StepState.SUCCEEDED)}, ["a"])
    assert got == {
        "handler": (StepState.SKIPPED, SKIP_NO_UPSTREAM_FAILURE),
        "cleanup": (StepState.QUEUED, ""),
        "strict": (StepState.SKIPPED, SKIP_UPSTREAM_SKIPPED),
    }


def test_a_parent_skipped_by_upstream_failure_counts_as_failed() -> None:
    p = plan(
        [
            ("a", "b", None),
            ("b", "join", None),
            ("c", "join", None),
            ("b", "handler", None),
            ("b", "cleanup", None),
        ],
        rules={"join": "none_failed", "handler": "one_failed", "cleanup": "all_done"},
    )
    states = {"a": StepView(StepState.FAILED), "c": StepView(StepState.SUCCEEDED)}
    got = run(p, states, ["a"])
    assert got == {
        "b": (StepState.SKIPPED, SKIP_UPSTREAM_FAILED),
        "join": (StepState.SKIPPED, SKIP_UPSTREAM_FAILED),
        "handler": (StepState.QUEUED, ""),
        "cleanup": (StepState.QUEUED, ""),
    }
