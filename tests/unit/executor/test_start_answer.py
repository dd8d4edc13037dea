"""StartRun answers with the run it just wrote: built from the rows `start_run` made, the
message is the one a later GetRun reads back, attempts of inline steps included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor import runs
from conveyor.executor.convert import run_pb
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(database)
    yield database
    database.dispose()


def plan(nodes: list[dict[str, Any]], edges: list[tuple[str, ...]]) -> runs.JobPlan:
    doc = {
        "schema": "conveyor/v1",
        "name": "answer",
        "nodes": nodes,
        "edges": [
            {"source": e[0], "target": e[1], **({"sourceHandle": e[2]} if len(e) > 2 else {})}
            for e in edges
        ],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    return runs.JobPlan(job_id="id-answer", name="answer", version=1, plan=result.plan)


def cmd(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "action.command", "data": {"argv": ["true"]}}


CHAIN = plan([cmd("a"), cmd("b"), cmd("c")], [("a", "b"), ("b", "c")])
BRANCHES = plan(
    [
        {"id": "start", "type": "trigger.manual", "data": {}},
        {"id": "check", "type": "logic.condition", "data": {"expression": "1 > 0"}},
        cmd("yes"),
        cmd("no"),
    ],
    [("start", "check"), ("check", "yes", "true"), ("check", "no", "false")],
)


def start(db: Database, job: runs.JobPlan, request_id: str | None = None) -> run_pb2.Run:
    """What StartRun answers: the message built in the start's own transaction."""
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, job, parameters={}, request_id=request_id, trigger="MANUAL", priority=0
        )
        return run_pb(run, *runs.started_run_steps(session, run))


def read_back(db: Database, run_id: str) -> run_pb2.Run:
    with db.read() as session:
        run = runs.get_run(session, run_id)
        return run_pb(run, *runs.run_steps(session, run.id))


@pytest.mark.parametrize("job", [CHAIN, BRANCHES], ids=["workers-only", "inline-steps"])
def test_the_answer_is_the_run_read_back(db: Database, job: runs.JobPlan) -> None:
    answer = start(db, job)
    assert answer == read_back(db, answer.run_id)
    assert [s.node_id for s in answer.steps] == list(job.plan["nodes"])


def test_inline_steps_answer_with_their_attempts(db: Database) -> None:
    answer = start(db, BRANCHES)
    steps = {s.node_id: s for s in answer.steps}
    assert steps["check"].state == run_pb2.STEP_STATE_SUCCEEDED
    assert [e.attempt for e in steps["check"].executions] == [1]
    assert steps["yes"].state == run_pb2.STEP_STATE_QUEUED and not steps["yes"].executions
    assert steps["no"].state == run_pb2.STEP_STATE_SKIPPED


def test_a_repeated_request_id_answers_the_stored_run(db: Database) -> None:
    first = start(db, BRANCHES, request_id="req-1")
    again = start(db, BRANCHES, request_id="req-1")
    assert again == first == read_back(db, first.run_id)
