"""A claimed step's template scope holds the outputs its templates name, and still every
output when a template reads `steps` by a name that is not a constant."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor import refs, runs
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(database)
    yield database
    database.dispose()


def plan_of(last_argv: list[str]) -> runs.JobPlan:
    """a -> b -> c, then `last` with the given argv."""
    nodes = [
        {"id": n, "type": "action.command", "data": {"argv": ["true"]}} for n in ("a", "b", "c")
    ]
    nodes.append({"id": "last", "type": "action.command", "data": {"argv": last_argv}})
    order = ["a", "b", "c", "last"]
    doc = {
        "schema": "conveyor/v1",
        "name": "scope",
        "parameters": {"type": "object", "properties": {"n": {"type": "string"}}},
        "nodes": [{**n, "position": {"x": 0, "y": 0}} for n in nodes],
        "edges": [
            {"id": f"e{i}", "source": s, "target": t}
            for i, (s, t) in enumerate(itertools.pairwise(order))
        ],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    return runs.JobPlan(job_id="j", name="scope", version=1, plan=result.plan)


def run_to_last(db: Database, plan: runs.JobPlan) -> dict[str, Any]:
    """Run a, b and c (each with an output) and claim `last`; its scope's steps."""
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, plan, parameters={"n": "b"}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    for node in ("a", "b", "c", "last"):
        with db.transaction() as session:
            claim, _ = runs.claim_step(
                session, run_id, node, 1, worker="w", queue="default", task_id="t"
            )
        assert claim is not None
        if node == "last":
            steps: dict[str, Any] = claim.scope["steps"]
            return steps
        result = runs.Result(succeeded=True, outputs={"stdout": f"out-{node}"})
        with db.transaction() as session:
            runs.finish_step(session, run_id, node, 1, result, rand=random.random)
    raise AssertionError("unreachable")


def test_only_the_named_steps_are_loaded(db: Database) -> None:
    steps = run_to_last(db, plan_of(["echo", "{{ steps.b.outputs.stdout }}"]))
    assert steps == {"b": {"stdout": "out-b"}}


def test_no_reference_loads_no_output(db: Database) -> None:
    assert run_to_last(db, plan_of(["true"])) == {}


def test_a_dynamic_reference_loads_every_output(db: Database) -> None:
    steps = run_to_last(db, plan_of(["echo", "{{ steps[params.n].outputs.stdout }}"]))
    assert set(steps) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["{{ steps.a.x }} {{ steps['b'].y }}"], {"a", "b"}),
        (["steps.c.outputs.exit_code == 0"], {"c"}),  # a bare condition expression
        (["echo hi", "{{ params.x }}"], set()),
        (["{% for s in steps %}{{ s }}{% endfor %}"], None),
        (["{{ steps | tojson }}"], None),
        (["{{ steps.a }"], None),  # not parseable: assume anything
    ],
)
def test_references_found_in_node_texts(texts: list[str], expected: set[str] | None) -> None:
    node = {"id": "n", "type": "action.command", "children": [{"node": "steps"}], "data": texts}
    found = refs.referenced_steps([node])
    assert found == (frozenset(expected) if expected is not None else None)
