"""A process decodes a plan once per content: the runs of one job version share it, and the
cache stays within its bounds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.executor import models
from conveyor.translator.domain import compile_workflow
from conveyor.translator.wire import plan_to_pb


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    models.forget_plans()
    yield
    models.forget_plans()


def plan_bytes(name: str, argv: list[str] | None = None) -> tuple[bytes, dict[str, Any]]:
    doc = {
        "schema": "conveyor/v1",
        "name": name,
        "nodes": [{"id": "a", "type": "action.command", "data": {"argv": argv or ["true"]}}],
        "edges": [],
    }
    compiled = compile_workflow(json.dumps(doc))
    assert compiled.plan is not None, compiled.diagnostics
    return plan_to_pb(compiled.plan).SerializeToString(), compiled.plan


def test_equal_bytes_decode_once_to_one_shared_plan() -> None:
    raw, plan = plan_bytes("one")
    first = models.decoded_plan(raw)
    assert first == plan
    assert models.decoded_plan(bytes(raw)) is first


def test_different_plans_are_different_entries() -> None:
    a, _ = plan_bytes("same", ["true"])
    b, plan_b = plan_bytes("same", ["false"])
    assert models.decoded_plan(a) is not models.decoded_plan(b)
    assert models.decoded_plan(b) == plan_b


def test_the_cache_keeps_its_count_and_byte_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = [plan_bytes(f"p{i}")[0] for i in range(models.DECODED_CACHE_SIZE + 5)]
    for raw in plans:
        models.decoded_plan(raw)
    assert len(models._DECODED) == models.DECODED_CACHE_SIZE
    assert plans[0] not in models._DECODED and plans[-1] in models._DECODED
    models.forget_plans()
    size = len(plans[0])
    monkeypatch.setattr(models, "DECODED_CACHE_BYTES", 8 * size)
    for raw in plans[:20]:
        models.decoded_plan(raw)
    assert models._decoded_bytes <= 8 * size
    assert 1 <= len(models._DECODED) <= 8
    # A plan bigger than a quarter of the budget is decoded but not kept.
    big = plan_bytes("big", ["echo", "x" * (3 * size)])[0]
    assert models.decoded_plan(big) is not models.decoded_plan(big)


def test_plan_facts_are_computed_once_per_plan_object() -> None:
    from conveyor.executor import runs

    calls: list[str] = []

    def width(plan: dict[str, Any], node_id: str) -> int:
        calls.append(node_id)
        return len(plan["nodes"])

    one: dict[str, Any] = {"nodes": {"a": {}, "b": {}}}
    equal: dict[str, Any] = {"nodes": {"a": {}, "b": {}}}
    assert runs.plan_fact(one, "width", "a", width) == 2
    assert runs.plan_fact(one, "width", "a", width) == 2
    assert calls == ["a"]
    # An equal but distinct plan object, another node, another kind: worked out anew.
    assert runs.plan_fact(equal, "width", "a", width) == 2
    assert runs.plan_fact(one, "width", "b", width) == 2
    assert runs.plan_fact(one, "other", "a", width) == 2
    assert calls == ["a", "a", "b", "a"]
    for i in range(runs.PLAN_FACTS + 3):
        runs.plan_fact({"nodes": {str(i): {}}}, "width", "x", width)
    assert len(runs._FACTS) == runs.PLAN_FACTS
