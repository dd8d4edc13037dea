"""Steps that need no worker are decided in the executor's transaction, never sent to Celery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.executor import inline, runs
from conveyor.executor.models import ExecutionRow
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    inline.configure({"TOKEN": "s3cr3t-value"})
    yield
    inline.configure({})


def job(nodes: list[dict[str, Any]], edges: list[tuple[str, ...]]) -> runs.JobPlan:
    doc = {
        "schema": "conveyor/v1",
        "name": "inline",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "nodes": nodes,
        "edges": [
            {"source": e[0], "target": e[1], **({"sourceHandle": e[2]} if len(e) > 2 else {})}
            for e in edges
        ],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    return runs.JobPlan(job_id="id-inline", name="inline", version=1, plan=result.plan)


def cmd(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "action.command", "data": {"argv": ["true"]}}


BRANCHY = job(
    [
        {"id": "start", "type": "trigger.manual", "data": {}},
        {"id": "big", "type": "logic.condition", "data": {"expression": "params.n > 10"}},
        {"id": "kind", "type": "logic.switch", "data": {"value": "params.n", "cases": ["3", "4"]}},
        cmd("yes"),
        cmd("no"),
        cmd("three"),
        cmd("other"),
    ],
    [
        ("start", "big"),
        ("start", "kind"),
        ("big", "yes", "true"),
        ("big", "no", "false"),
        ("kind", "three", "3"),
        ("kind", "other", "default"),
    ],
)


def start(db: Database, plan: runs.JobPlan, params: dict[str, Any]) -> tuple[str, runs.Effects]:
    with db.transaction() as session:
        run, effects = runs.start_run(
            session, plan, parameters=params, request_id=None, trigger="MANUAL", priority=0
        )
        return run.id, effects


def steps(db: Database, run_id: str) -> dict[str, Any]:
    with db.transaction() as session:
        rows, _ = runs.run_steps(session, run_id)
        return {
            r.node_id: (r.state, r.handle, r.outputs, r.skip_reason, r.error_message) for r in rows
        }


def test_start_run_decides_trigger_and_branches_and_sends_only_workers_steps(
    db: Database,
) -> None:
    run_id, effects = start(db, BRANCHY, {"n": 3})
    assert sorted(d.node_id for d in effects.dispatch) == ["no", "three"]
    s = steps(db, run_id)
    assert s["start"][0] == "SUCCEEDED"
    assert s["big"][:3] == ("SUCCEEDED", "false", {"result": False})
    assert s["kind"][:3] == ("SUCCEEDED", "3", {"matched": "3"})
    assert s["yes"][0] == "SKIPPED" and s["yes"][3] == "branch not taken"
    assert s["other"][0] == "SKIPPED" and s["other"][3] == "branch not taken"
    assert s["no"][0] == "QUEUED" and s["three"][0] == "QUEUED"
    # The same events a worker's execution produces: QUEUED, RUNNING, SUCCEEDED.
    big = [
        (e.step_state, e.data.get("worker"))
        for e in effects.events
        if e.node_id == "big" and e.step_state
    ]
    assert big == [("QUEUED", None), ("RUNNING", inline.INLINE_WORKER), ("SUCCEEDED", None)]
    with db.transaction() as session:
        attempts = session.scalars(
            select(ExecutionRow).where(ExecutionRow.run_id == run_id, ExecutionRow.node_id == "big")
        ).all()
        assert [(a.attempt, a.state, a.worker) for a in attempts] == [
            (1, "SUCCEEDED", inline.INLINE_WORKER)
        ]
    with db.transaction() as session:
        assert runs.get_run(session, run_id).state == "RUNNING"


def test_successor_branch_is_decided_in_the_parent_end_transaction(db: Database) -> None:
    plan = job(
        [
            cmd("a"),
            {"id": "big", "type": "logic.condition", "data": {"expression": "params.n > 10"}},
            {"id": "stop", "type": "logic.fail", "data": {"message": "too big: {{ params.n }}"}},
            cmd("small"),
        ],
        [("a", "big"), ("big", "stop", "true"), ("big", "small", "false")],
    )
    run_id, effects = start(db, plan, {"n": 30})
    assert [d.node_id for d in effects.dispatch] == ["a"]
    with db.transaction() as session:
        runs.claim_step(session, run_id, "a", 1, worker="w", queue="default", task_id="t")
    with db.transaction() as session:
        done = runs.finish_step(
            session, run_id, "a", 1, runs.Result(succeeded=True, outputs={}), rand=lambda: 0.0
        )
    assert done.dispatch == []
    s = steps(db, run_id)
    assert s["stop"][0] == "FAILED" and s["stop"][4] == "too big: 30"
    assert s["small"][0] == "SKIPPED"
    with db.transaction() as session:
        run = runs.get_run(session, run_id)
        assert run.state == "FAILED"
        assert "too big: 30" in run.error_message


def test_secrets_are_masked_in_inline_outcomes(db: Database) -> None:
    plan = job(
        [{"id": "stop", "type": "logic.fail", "data": {"message": "t={{ secrets.TOKEN }}"}}], []
    )
    run_id, _ = start(db, plan, {})
    s = steps(db, run_id)
    assert s["stop"][0] == "FAILED"
    assert "s3cr3t-value" not in s["stop"][4]
    assert "***" in s["stop"][4]


def test_a_long_chain_of_branches_is_decided_without_recursion(db: Database) -> None:
    n = 400
    nodes = [
        {"id": f"c{i}", "type": "logic.condition", "data": {"expression": "true"}} for i in range(n)
    ]
    edges = [(f"c{i}", f"c{i + 1}", "true") for i in range(n - 1)]
    run_id, effects = start(db, job(nodes, edges), {})
    assert effects.dispatch == []
    assert {v[0] for v in steps(db, run_id).values()} == {"SUCCEEDED"}
    with db.transaction() as session:
        assert runs.get_run(session, run_id).state == "SUCCEEDED"


def test_a_condition_sees_the_outputs_of_the_parent_that_just_ended(db: Database) -> None:
    plan = job(
        [
            cmd("a"),
            {"id": "big", "type": "logic.condition", "data": {"expression": "steps.a.n > 1"}},
            cmd("yes"),
        ],
        [("a", "big"), ("big", "yes", "true")],
    )
    run_id, _ = start(db, plan, {})
    with db.transaction() as session:
        runs.claim_step(session, run_id, "a", 1, worker="w", queue="default", task_id="t")
    with db.transaction() as session:
        done = runs.finish_step(
            session, run_id, "a", 1, runs.Result(succeeded=True, outputs={"n": 5}), rand=lambda: 0.0
        )
    assert [d.node_id for d in done.dispatch] == ["yes"]
    assert steps(db, run_id)["big"][:3] == ("SUCCEEDED", "true", {"result": True})


def test_a_condition_sees_only_its_upstream_steps(db: Database) -> None:
    # `b` ends before `a`, but only `a` is upstream of the condition: as on a worker, `steps`
    # holds nothing else, even for an expression that reads `steps` as a whole.
    plan = job(
        [
            cmd("a"),
            cmd("b"),
            {
                "id": "chk",
                "type": "logic.condition",
                "data": {"expression": "'a' in steps and 'b' not in steps"},
            },
        ],
        [("a", "chk")],
    )
    run_id, _ = start(db, plan, {})
    for node in ("b", "a"):
        with db.transaction() as session:
            runs.claim_step(session, run_id, node, 1, worker="w", queue="default", task_id="t")
        with db.transaction() as session:
            runs.finish_step(
                session,
                run_id,
                node,
                1,
                runs.Result(succeeded=True, outputs={"n": 1}),
                rand=lambda: 0.0,
            )
    state, _, outputs, _, _ = steps(db, run_id)["chk"]
    assert (state, outputs) == ("SUCCEEDED", {"result": True})


def test_inline_steps_render_under_the_configured_budget(db: Database) -> None:
    plan = job([{"id": "stop", "type": "logic.fail", "data": {"message": "{{ 'x' * 500 }}"}}], [])
    run_id, _ = start(db, plan, {})
    assert steps(db, run_id)["stop"][4] == "x" * 500  # the default budget allows it
    inline.configure({}, budget=inline.Budget(max_output=100))
    try:
        run_id, _ = start(db, plan, {})
    finally:
        inline.configure({}, budget=inline.Budget())
    with db.transaction() as session:
        [attempt] = session.scalars(select(ExecutionRow).where(ExecutionRow.run_id == run_id))
    assert attempt.error_category == "TEMPLATE"
