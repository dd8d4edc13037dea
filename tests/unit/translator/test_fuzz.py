"""Whatever it is given, compile_workflow returns a CompileResult and never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.translator.domain import CompileResult, compile_workflow

from ._docs import edge, node, workflow

SEED: dict[str, Any] = workflow(
    [
        node("start", "trigger.manual"),
        node("ping", argv=["ping", "{{ params.host }}"], retries={"max": 1}),
        node("ok", "logic.condition", expression="steps.ping.exit_code == 0"),
        node("sw", "logic.switch", value="params.mode", cases=["a", "b"]),
        node("each", "logic.foreach", items="[1, 2]", concurrency=2),
        node("body", argv=["echo", "{{ item }}"]),
        node("fail", "logic.fail", message="down {{ params.host }}"),
        node("http", "action.http", method="GET", url="https://x/{{ params.host }}"),
    ],
    [
        edge("start", "ping"),
        edge("ping", "ok"),
        edge("ok", "sw", "true"),
        edge("ok", "fail", "false"),
        edge("sw", "each", "a"),
        edge("sw", "http", "default"),
        edge("ping", "fail", "error"),
    ],
    parameters={
        "type": "object",
        "properties": {"host": {"type": "string"}, "mode": {"type": "string"}},
    },
)
SEED["nodes"][5]["parentId"] = "each"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "{{",
            "{{ steps.ping.x }}",
            "{% for %}",
            "true",
            "error",
            "ping",
            "each",
            "action.command",
            "logic.foreach",
            "conveyor/v1",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "data",
                    "source",
                    "target",
                    "argv",
                    "sourceHandle",
                    "parentId",
                    "retries",
                    "items",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    document = json.loads(json.dumps(SEED))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(document) if p]
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[path[-1]])))
        else:
            parent[path[-1]] = draw(json_values)
    return document


def _compiles_without_raising(document: Any) -> None:
    result = compile_workflow(document)
    assert isinstance(result, CompileResult)
    # The last-resort guard in compile_workflow must never be what produced the answer.
    assert not any("could not be checked" in d.message for d in result.diagnostics)
    assert (result.plan is None) == any(d.severity == "error" for d in result.diagnostics)
    if result.plan is not None:
        json.dumps(result.plan)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents(document: Any) -> None:
    _compiles_without_raising(document)
    _compiles_without_raising(json.dumps(document))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json(value: Any) -> None:
    _compiles_without_raising(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_text(text: str | bytes) -> None:
    _compiles_without_raising(text)
