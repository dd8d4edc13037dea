"""The compiled plan crosses gRPC typed: a 10,000-node plan holding every node type goes from
the translator's TranslateWorkflow to the executor's reading of it, whole and in order."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import update

from conveyor.executor import models, runs
from conveyor.executor.models import RunRow
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.translator.api import TranslatorServicer
from conveyor.translator.domain import compile_workflow
from conveyor.translator.domain.nodetypes import NODE_TYPES
from conveyor.translator.v1 import (
    translator_pb2,
    translator_service_pb2,
    translator_service_pb2_grpc,
)
from conveyor.translator.wire import plan_from_pb, plan_to_pb

NODES = 10_000
EXACT = {"id": 9007199254740993, "ratio": 0.1, "huge": 1e300, "text": "Grüße 🚀"}


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "data": data}


def every_type_document(total: int = NODES) -> dict[str, Any]:
    """A valid workflow with a node of every type (and every edge handle), padded to `total`
    nodes by a chain of commands."""
    nodes = [
        _node("start", "trigger.manual"),
        _node("cron", "trigger.schedule"),
        _node("hook", "trigger.webhook"),
        _node(
            "cmd",
            "action.command",
            argv=["echo", "{{ params.env }}"],
            timeout_s=2.5,
            retries={"max": 3, "backoff_s": 0.5, "on": ["TIMEOUT", "NONZERO_EXIT"]},
            queue="fast",
            label="Echo",
            trigger_rule="one_success",
        ),
        _node("cond", "logic.condition", expression="steps.cmd.exit_code == 0"),
        _node("sw", "logic.switch", value="params.env", cases=["a", "b"]),
        _node("http", "action.http", method="POST", url="https://example.com/x", json=EXACT),
        _node("note", "action.notify", url="https://example.com/hook", body="b"),
        _node("bad", "logic.fail", message="no case"),
        _node("scr", "action.script", interpreter="sh", script="echo hi", continue_on_error=True),
        _node("nap", "action.sleep", seconds=1),
        _node("gate", "action.approval", message="ship?", timeout_s=60),
        _node("sub", "action.subworkflow", job="other", parameters={"n": 1.0}),
        _node("each", "logic.foreach", items="[1, 2]", concurrency=2),
        {**_node("inner", "action.command", argv=["echo", "{{ item }}"]), "parentId": "each"},
    ]
    nodes[3]["position"] = {"x": 120, "y": -40.5}
    edges = [
        ("start", "cmd", None),
        ("cron", "cmd", None),
        ("hook", "cmd", None),
        ("cmd", "cond", None),
        ("cond", "sw", "true"),
        ("cond", "scr", "false"),
        ("sw", "http", "a"),
        ("sw", "note", "b"),
        ("sw", "bad", "default"),
        ("http", "nap", None),
        ("http", "scr", "error"),
        ("nap", "gate", None),
        ("gate", "sub", None),
        ("sub", "each", None),
    ]
    previous = "each"
    for i in range(total - len(nodes)):
        nodes.append(_node(f"n{i}", "action.command", argv=["true"]))
        edges.append((previous, f"n{i}", None))
        previous = f"n{i}"
    return {
        "schema": "conveyor/v1",
        "name": "every-type",
        "parameters": {"type": "object", "properties": {"env": {"type": "string"}}},
        "nodes": nodes,
        "edges": [
            {"source": s, "target": t, **({"sourceHandle": h} if h else {})} for s, t, h in edges
        ],
    }


@pytest.fixture(scope="module")
def document() -> str:
    return json.dumps(every_type_document())


@pytest.fixture(scope="module")
def compiled(document: str) -> dict[str, Any]:
    result = compile_workflow(document)
    assert result.plan is not None, result.diagnostics[:3]
    return result.plan


def test_the_document_holds_every_node_type(compiled: dict[str, Any]) -> None:
    assert {n["type"] for n in compiled["nodes"].values()} == set(NODE_TYPES)
    assert len(compiled["nodes"]) == NODES


def test_plan_survives_the_wire_whole_and_in_order(compiled: dict[str, Any]) -> None:
    wire = translator_pb2.Plan.FromString(plan_to_pb(compiled).SerializeToString())
    assert [n.id for n in wire.nodes] == list(compiled["nodes"])
    assert plan_from_pb(wire) == compiled
    assert list(plan_from_pb(wire)["nodes"]) == list(compiled["nodes"])


def test_plan_message_is_typed(compiled: dict[str, Any]) -> None:
    nodes = {n.id: n for n in plan_to_pb(compiled).nodes}
    cmd = nodes["cmd"]
    assert cmd.timeout.ToMilliseconds() == 2500
    assert cmd.retry_policy.max_retries == 3
    assert cmd.retry_policy.initial_backoff.ToMilliseconds() == 500
    assert list(cmd.retry_policy.retry_on) == [
        run_pb2.ERROR_CATEGORY_TIMEOUT,
        run_pb2.ERROR_CATEGORY_NONZERO_EXIT,
    ]
    assert cmd.trigger_rule == translator_pb2.TRIGGER_RULE_ONE_SUCCESS
    assert (cmd.queue, cmd.label) == ("fast", "Echo")
    assert (cmd.position.x, cmd.position.y) == (120.0, -40.5)
    assert [(e.node_id, e.HasField("handle")) for e in cmd.upstream] == [
        ("start", False),
        ("cron", False),
        ("hook", False),
    ]
    assert [(e.node_id, e.handle) for e in nodes["sw"].downstream] == [
        ("http", "a"),
        ("note", "b"),
        ("bad", "default"),
    ]
    assert [e.handle for e in nodes["http"].downstream] == ["", "error"]
    assert list(nodes["each"].body) == ["inner"]
    assert nodes["inner"].group == "each"
    assert nodes["scr"].continue_on_error
    # An approval's timeout is its deadline, which its data carries too.
    assert nodes["gate"].timeout.ToSeconds() == 60
    assert json.loads(nodes["gate"].data_json)["timeout_s"] == 60
    # Node data is JSON text: values come back exactly.
    assert json.loads(nodes["http"].data_json)["json"] == EXACT
    assert "9007199254740993" in nodes["http"].data_json
    # A whole-number float stays a float in node data.
    assert '"n":1.0' in nodes["sub"].data_json.replace(" ", "")


def _translate_over_grpc(document: str) -> translator_pb2.Plan:
    async def call() -> translator_pb2.Plan:
        server = grpc.aio.server()
        translator_service_pb2_grpc.add_TranslatorServiceServicer_to_server(
            TranslatorServicer(db=None),  # type: ignore[arg-type]  # TranslateWorkflow saves nothing
            server,
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as ch:
                stub = translator_service_pb2_grpc.TranslatorServiceStub(ch)
                reply = await stub.TranslateWorkflow(
                    translator_service_pb2.TranslateWorkflowRequest(workflow_json=document),
                    timeout=120,
                )
                plan: translator_pb2.Plan = reply.plan
                return plan
        finally:
            await server.stop(None)

    return asyncio.run(call())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(database)
    yield database
    database.dispose()


def test_translator_to_executor_keeps_every_node_in_order(
    document: str, compiled: dict[str, Any], db: Database
) -> None:
    plan = plan_from_pb(_translate_over_grpc(document))
    assert plan == compiled
    job = runs.JobPlan(job_id="j", name="every-type", version=1, plan=plan)
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, job, parameters={"env": "a"}, request_id=None, trigger="MANUAL", priority=0
        )
        rows, _ = runs.run_steps(session, run.id)
    assert [r.node_id for r in rows] == list(compiled["nodes"])
    # The executor stores the typed message and reads the plan back from it, in order.
    with db.read() as session:
        row = session.get(RunRow, run.id)
        assert row is not None and row.plan_data is None and row.plan_pb is not None
        stored = plan_from_pb(translator_pb2.Plan.FromString(row.plan_pb))
    assert stored == compiled
    assert list(stored["nodes"]) == list(compiled["nodes"])
    assert [r.node_type for r in rows[:3]] == [
        "trigger.manual",
        "trigger.schedule",
        "trigger.webhook",
    ]


def test_a_run_made_before_typed_plans_reads_its_json_plan(
    compiled: dict[str, Any], db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = runs.JobPlan(job_id="j", name="every-type", version=1, plan=compiled)
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, job, parameters={"env": "a"}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as session:  # the row as an earlier version wrote it
        session.execute(
            update(RunRow).where(RunRow.id == run_id).values(plan_data=compiled, plan_pb=None)
        )
    monkeypatch.setattr(models, "_PLANS", OrderedDict())  # another process: nothing cached
    with db.read() as session:
        row = session.get(RunRow, run_id)
        assert row is not None
        assert row.plan == compiled
