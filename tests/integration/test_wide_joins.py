"""A wide join's edges are counted by state (`runs.is_counted_join`) instead of read parent
by parent; both ways decide every trigger rule alike, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from conveyor.executor import runs
from conveyor.executor.engine import SKIP_UPSTREAM_FAILED, StepState
from conveyor.kernel.db import Database
from conveyor.translator.domain import compile_workflow

WIDTH = 24
RULES = ("none_failed_min_one_success", "all_success", "all_done", "one_failed", "none_failed")


def plan(rule: str) -> runs.JobPlan:
    """start -> WIDTH parents -> join (with `rule`) -> after."""
    parents = [f"p{i}" for i in range(WIDTH)]
    nodes = [
        {"id": n, "type": "action.command", "data": {"argv": ["true"]}}
        for n in ["start", *parents, "after"]
    ]
    nodes.append(
        {"id": "join", "type": "action.command", "data": {"argv": ["true"]}, "trigger_rule": rule}
    )
    edges = [("start", p) for p in parents] + [(p, "join") for p in parents] + [("join", "after")]
    doc = {
        "schema": "conveyor/v1",
        "name": "wide",
        "nodes": [{**n, "position": {"x": 0, "y": 0}} for n in nodes],
        "edges": [{"id": f"e{i}", "source": s, "target": t} for i, (s, t) in enumerate(edges)],
    }
    compiled = compile_workflow(json.dumps(doc))
    assert compiled.plan is not None, compiled.diagnostics
    return runs.JobPlan(job_id="j", name="wide", version=1, plan=compiled.plan)


def result(ok: bool) -> runs.Result:
    return runs.Result(
        succeeded=ok,
        outputs={"exit_code": 0 if ok else 1},
        exit_code=0 if ok else 1,
        error_category=None if ok else "EXIT_CODE",
        error_message="" if ok else "exit code 1",
    )


def run_to_end(db: Database, job: runs.JobPlan, failing: set[str], order: list[str]) -> dict:
    """Run start, then the parents in `order` (those in `failing` fail), then whatever is
    queued, to the end; every step's (state, skip reason) and the run's state."""
    with db.transaction() as session:
        run, effects = runs.start_run(
            session, job, parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    queued = {d.node_id: d.attempt for d in effects.dispatch}

    def step(node: str) -> None:
        attempt = queued.pop(node)
        with db.transaction() as session:
            runs.claim_step(session, run_id, node, attempt, worker="w", queue="q", task_id="t")
        with db.transaction() as session:
            done = runs.finish_step(
                session, run_id, node, attempt, result(node not in failing), rand=random.random
            )
        queued.update({d.node_id: d.attempt for d in done.dispatch})

    step("start")
    for node in order:
        step(node)
    while queued:
        step(next(iter(queued)))
    with db.read() as session:
        got = runs.get_run(session, run_id)
        steps = {s.node_id: (s.state, s.skip_reason) for s in runs.run_steps(session, run_id)[0]}
        return {"run": got.state, "steps": steps}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("failures", [0, 1, WIDTH])
@pytest.mark.parametrize("counting", ["run-but-others", "parents"])
def test_counted_join_decides_as_reading_each_parent(
    db: Database, rule: str, failures: int, counting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted over the run's steps but the 3 others (start, join, after), or over the
    list of parents, the join decides as reading each parent does."""
    job = plan(rule)
    assert runs.is_counted_join(job.plan, "join")
    if counting == "parents":
        monkeypatch.setattr(runs, "FEW_OTHERS", 2)
    order = [f"p{i}" for i in range(WIDTH)]
    random.Random(7).shuffle(order)
    failing = set(order[:failures])
    counted = run_to_end(db, job, failing, order)
    monkeypatch.setattr(runs, "WIDE_JOIN", 10**9)  # every parent read one by one
    # A plan object of its own: what a plan is worked out once per plan object.
    job = plan(rule)
    assert not runs.is_counted_join(job.plan, "join")
    counted_calls: list[str] = []
    real = runs.StepCache.counted_edges

    def spy(self: runs.StepCache, plan_: Any, node_id: str) -> Any:
        edges = real(self, plan_, node_id)
        if edges is not None:
            counted_calls.append(node_id)
        return edges

    monkeypatch.setattr(runs.StepCache, "counted_edges", spy)
    read = run_to_end(db, job, failing, order)
    assert counted_calls == []  # this run read each parent
    assert counted == read
    assert counted["steps"]["join"][0] != StepState.PENDING  # the join was decided


def test_a_failed_parent_skips_an_all_success_join_before_the_others_end(db: Database) -> None:
    """The counted edges see a failure at once, as the per-parent reading does."""
    job = plan("all_success")
    with db.transaction() as session:
        run, _effects = runs.start_run(
            session, job, parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    for node, ok in (("start", True), ("p0", False)):
        with db.transaction() as session:
            runs.claim_step(session, run_id, node, 1, worker="w", queue="q", task_id="t")
        with db.transaction() as session:
            runs.finish_step(session, run_id, node, 1, result(ok), rand=random.random)
    with db.read() as session:
        steps = {s.node_id: s for s in runs.run_steps(session, run_id)[0]}
    assert steps["join"].state == StepState.SKIPPED
    assert steps["join"].skip_reason == SKIP_UPSTREAM_FAILED
    assert steps["p1"].state == StepState.QUEUED
