"""Limits: big, deep and long documents end in LIMIT_EXCEEDED, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.translator.domain import Limits, compile_workflow, parse_document

from ._docs import chain, edge, node, workflow


def _limit_paths(document: Any, **limits: int) -> list[str]:
    result = compile_workflow(document, limits=Limits(**limits))
    assert result.plan is None
    return [d.path for d in result.diagnostics if d.code == "LIMIT_EXCEEDED"]


def test_ten_thousand_node_chain_compiles() -> None:
    document = chain(10_000)
    result = compile_workflow(json.dumps(document))
    assert result.ok, result.diagnostics[:3]
    assert result.plan is not None
    order = list(result.plan["nodes"])
    assert order[:3] == ["n0", "n1", "n2"]
    assert order[-1] == "n9999"
    assert result.plan["nodes"]["n9999"]["parents"] == [{"node": "n9998", "handle": None}]


def test_reference_far_up_a_long_chain_is_upstream() -> None:
    document = chain(2_000)
    document["nodes"][-1]["data"]["argv"] = ["echo", "{{ steps.n0.stdout }}"]
    assert compile_workflow(document).ok


@pytest.mark.parametrize(
    "text", ["[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000, "[" * 100_000]
)
def test_deep_json_text_is_a_limit_not_a_recursion_error(text: str) -> None:
    result = compile_workflow(text)
    assert [d.code for d in result.diagnostics] == ["LIMIT_EXCEEDED"]
    assert "levels deep" in result.diagnostics[0].message


def test_deep_mapping_is_a_limit() -> None:
    deep: dict[str, Any] = {}
    current = deep
    for _ in range(10_000):
        current["x"] = {}
        current = current["x"]
    document = workflow([node("a", env={})])
    document["nodes"][0]["data"]["stdin"] = deep
    assert _limit_paths(document) == [""]


def test_self_referencing_mapping_is_a_limit() -> None:
    looped: dict[str, Any] = {"schema": "conveyor/v1"}
    looped["again"] = looped
    assert _limit_paths(looped) == [""]


def test_document_size_is_checked_before_parsing() -> None:
    text = '{"schema": "conveyor/v1", "pad": "' + "x" * 5_000 + '"'  # not even valid JSON
    result = compile_workflow(text, limits=Limits(max_document_bytes=1_000))
    assert [d.code for d in result.diagnostics] == ["LIMIT_EXCEEDED"]
    assert "1000" in result.diagnostics[0].message
    document, problems = parse_document(text.encode(), limits=Limits(max_document_bytes=1_000))
    assert document is None and problems[0].code == "LIMIT_EXCEEDED"


def test_huge_string_is_a_template_limit() -> None:
    document = workflow([node("a", argv=["echo", "é" * 40_000])])  # 80,000 bytes
    assert _limit_paths(document) == ["/nodes/0/data/argv/1"]


def test_node_and_edge_counts() -> None:
    document = workflow([node(f"n{i}") for i in range(5)], [edge("n0", "n1")] * 4)
    assert _limit_paths(document, max_nodes=4, max_edges=3) == ["/nodes", "/edges"]


def test_literal_foreach_items() -> None:
    document = workflow([node("each", "logic.foreach", items=list(range(11)))])
    assert _limit_paths(document, max_foreach_items=10) == ["/nodes/0/data/items"]
    assert compile_workflow(document, limits=Limits(max_foreach_items=11)).ok
