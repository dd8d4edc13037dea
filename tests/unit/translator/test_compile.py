"""The compiled plan: its shape, defaults, foreach bodies, and editor exports."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import struct_pb2

from conveyor.translator.domain import compile_workflow, parse_document
from conveyor.translator.wire import plan_from_pb, plan_to_pb

from ._docs import edge, node, workflow

ALL_BUT_UNRETRIED = [
    "TIMEOUT",
    "NONZERO_EXIT",
    "WORKER_LOST",
    "HTTP_STATUS",
    "CONNECTION",
    "INFRA",
    "INTERNAL",
]


def _plan(document: Any) -> dict[str, Any]:
    result = compile_workflow(document)
    assert result.ok, result.diagnostics
    assert result.plan is not None
    return result.plan


def _diamond() -> dict[str, Any]:
    return workflow(
        [
            node("start", "trigger.manual"),
            node("ping", argv=["ping", "-c1", "{{ params.host }}"], timeout_s=10, label="Ping"),
            node("up", "logic.condition", expression="{{ steps.ping.exit_code == 0 }}"),
            node("save", "action.http", method="post", url="https://cmdb/{{ params.host }}"),
            node("alert", "action.notify", url="https://hooks/x", json={"h": "{{ params.host }}"}),
            node("join", "action.sleep", seconds=1, trigger_rule="none_failed_min_one_success"),
        ],
        [
            edge("start", "ping"),
            edge("ping", "up"),
            edge("up", "save", "true"),
            edge("up", "alert", "false"),
            edge("save", "join"),
            edge("alert", "join"),
        ],
        description="check a router",
        parameters={"type": "object", "properties": {"host": {"type": "string"}}},
        defaults={"timeout_s": 300, "retries": {"max": 2, "backoff_s": 5}, "queue": "net"},
    )


def test_diamond_with_condition_compiles_to_the_plan_shape() -> None:
    plan = _plan(_diamond())
    assert list(plan) == ["schema", "name", "description", "parameters", "nodes", "entry"]
    assert plan["schema"] == "conveyor/v1"
    assert plan["description"] == "check a router"
    assert plan["entry"] == ["start"]
    assert list(plan["nodes"]) == ["start", "ping", "up", "save", "alert", "join"]
    ping = plan["nodes"]["ping"]
    assert ping == {
        "id": "ping",
        "type": "action.command",
        "label": "Ping",
        "data": {
            "argv": ["ping", "-c1", "{{ params.host }}"],
            "shell": False,
            "success_codes": [0],
        },
        "timeout_s": 10.0,
        "retries": {
            "max": 2,
            "backoff_s": 5.0,
            "factor": 2.0,
            "max_backoff_s": 300.0,
            "jitter": False,
            "on": ALL_BUT_UNRETRIED,
        },
        "queue": "net",
        "trigger_rule": "none_failed_min_one_success",
        "continue_on_error": False,
        "parents": [{"node": "start", "handle": None}],
        "children": [{"node": "up", "handle": None}],
        "group": None,
        "body": None,
        "position": None,
    }
    up = plan["nodes"]["up"]
    assert up["data"] == {"expression": "steps.ping.exit_code == 0"}
    assert up["children"] == [
        {"node": "save", "handle": "true"},
        {"node": "alert", "handle": "false"},
    ]
    # Defaults fill actions only: a condition is neither timed out nor retried by them.
    assert up["timeout_s"] is None and up["retries"]["max"] == 0
    assert plan["nodes"]["save"]["data"]["method"] == "POST"
    assert plan["nodes"]["save"]["timeout_s"] == 300.0
    assert plan["nodes"]["join"]["parents"] == [
        {"node": "save", "handle": None},
        {"node": "alert", "handle": None},
    ]
    json.dumps(plan)  # the plan is stored and sent as JSON


def test_compiling_is_deterministic_for_text_and_objects() -> None:
    document = _diamond()
    assert _plan(document) == _plan(json.dumps(document)) == _plan(json.dumps(document).encode())


def test_react_flow_export_with_editor_fields_translates() -> None:
    exported = {
        "nodes": [
            {
                "id": "1",
                "type": "trigger.manual",
                "position": {"x": 0, "y": 0},
                "data": {"label": "Start"},
                "width": 150,
                "height": 40,
                "selected": False,
                "dragging": False,
                "measured": {"width": 150, "height": 40},
                "positionAbsolute": {"x": 0, "y": 0},
                "style": {"color": "red"},
                "className": "n",
                "sourcePosition": "right",
                "targetPosition": "left",
            },
            {
                "id": "2",
                "type": "action.command",
                "position": {"x": 200, "y": 0},
                "data": {"label": "List", "command": "ls -la /tmp"},
                "selected": True,
                "zIndex": 3,
                "hidden": False,
                "draggable": True,
            },
        ],
        "edges": [
            {
                "id": "xy-edge__1-2",
                "source": "1",
                "target": "2",
                "sourceHandle": None,
                "targetHandle": None,
                "animated": True,
                "type": "smoothstep",
                "markerEnd": {"type": "arrowclosed"},
                "style": {"strokeWidth": 2},
                "label": "go",
            },
        ],
        "viewport": {"x": 10, "y": -4, "zoom": 1.25},
    }
    plan = _plan({"schema": "conveyor/v1", "name": "from-editor", **exported})
    assert list(plan["nodes"]) == ["1", "2"]
    assert plan["nodes"]["2"]["position"] == {"x": 200.0, "y": 0.0}
    assert plan["nodes"]["2"]["label"] == "List"
    assert plan["nodes"]["2"]["data"] == {
        "command": "ls -la /tmp",
        "shell": False,
        "success_codes": [0],
    }


def test_foreach_body_is_grouped_and_ordered() -> None:
    doc = workflow(
        [
            node("b2", argv=["echo", "{{ steps.b1.stdout }} {{ index }}"]),
            node("list", argv=["ls"]),
            node("each", "logic.foreach", items="steps.list.output", concurrency=4),
            node("b1", argv=["echo", "{{ item }}", "{{ steps.list.stdout }}"]),
            node("after", argv=["echo", "{{ steps.each.results | length }}"]),
        ],
        [edge("list", "each"), edge("b1", "b2"), edge("each", "after")],
    )
    doc["nodes"][0]["parentId"] = "each"
    doc["nodes"][3]["parentId"] = "each"
    plan = _plan(doc)
    order = list(plan["nodes"])
    assert order.index("each") < order.index("b1") < order.index("b2")
    assert plan["entry"] == ["list"]
    each = plan["nodes"]["each"]
    assert each["body"] == ["b1", "b2"]
    assert each["data"] == {"items": "steps.list.output", "concurrency": 4}
    assert each["children"] == [{"node": "after", "handle": None}]
    assert plan["nodes"]["b1"]["group"] == "each"
    assert plan["nodes"]["b1"]["parents"] == []
    assert plan["nodes"]["b2"]["parents"] == [{"node": "b1", "handle": None}]


def test_body_node_cannot_read_a_step_after_the_foreach() -> None:
    doc = workflow(
        [
            node("each", "logic.foreach", items=[1, 2]),
            node("b", argv=["{{ steps.after.stdout }}"]),
            node("after"),
        ],
        [edge("each", "after")],
    )
    doc["nodes"][1]["parentId"] = "each"
    [problem] = compile_workflow(doc).diagnostics
    assert (problem.code, problem.node_id) == ("UNKNOWN_REFERENCE", "b")


def test_edges_do_not_cross_a_foreach_boundary() -> None:
    doc = workflow(
        [node("each", "logic.foreach", items=[1]), node("b"), node("out")],
        [edge("b", "out", id="leak")],
    )
    doc["nodes"][1]["parentId"] = "each"
    [problem] = compile_workflow(doc).diagnostics
    assert (problem.code, problem.edge_id, problem.path) == ("INVALID_FIELD", "leak", "/edges/0")


def test_parent_must_be_a_foreach() -> None:
    doc = workflow([node("a"), node("b")])
    doc["nodes"][1]["parentId"] = "a"
    [problem] = compile_workflow(doc).diagnostics
    assert (problem.code, problem.path) == ("INVALID_FIELD", "/nodes/1/parentId")


def test_node_options_override_defaults_field_by_field() -> None:
    doc = workflow(
        [
            node(
                "a",
                retries={"backoff_s": 2, "on": ["TIMEOUT"], "jitter": True},
                queue="gpu",
                continue_on_error=True,
                trigger_rule="all_done",
            ),
            node("wait", "action.approval", message="ok?"),
        ],
        defaults={"timeout_s": 60, "retries": {"max": 3}},
    )
    plan = _plan(doc)
    a = plan["nodes"]["a"]
    assert a["retries"] == {
        "max": 3,
        "backoff_s": 2.0,
        "factor": 2.0,
        "max_backoff_s": 300.0,
        "jitter": True,
        "on": ["TIMEOUT"],
    }
    assert (a["queue"], a["timeout_s"], a["continue_on_error"], a["trigger_rule"]) == (
        "gpu",
        60.0,
        True,
        "all_done",
    )
    # A document default timeout never expires a person's approval.
    assert plan["nodes"]["wait"]["timeout_s"] is None
    assert plan["nodes"]["wait"]["queue"] == "default"


def test_protobuf_struct_with_float_numbers_compiles() -> None:
    struct = struct_pb2.Struct()
    struct.update(
        workflow(
            [
                node("each", "logic.foreach", items="[1, 2]", concurrency=2),
                node("cmd", argv=["true"], retries={"max": 3}, success_codes=[0, 1], timeout_s=1.5),
            ]
        )
    )
    plan = _plan(struct)
    assert plan["nodes"]["each"]["data"]["concurrency"] == 2
    assert isinstance(plan["nodes"]["each"]["data"]["concurrency"], int)
    assert plan["nodes"]["cmd"]["retries"]["max"] == 3
    assert plan["nodes"]["cmd"]["data"]["success_codes"] == [0, 1]
    assert plan["nodes"]["cmd"]["timeout_s"] == 1.5


def test_parse_document_returns_the_object() -> None:
    document, problems = parse_document('{"schema": "conveyor/v1", "n": 2.0, "m": 2}')
    assert problems == []
    assert document == {"schema": "conveyor/v1", "n": 2.0, "m": 2}
    assert document is not None
    assert isinstance(document["n"], float) and isinstance(document["m"], int)


def test_floats_in_json_text_stay_floats_and_whole_floats_count_as_whole_numbers() -> None:
    """`1.0` written in a document reaches the plan (and the wire) as `1.0`; an option that
    needs a whole number takes `3.0` as 3."""
    doc = workflow(
        [
            node("each", "logic.foreach", items="[1, 2]", concurrency=2.0),
            node(
                "cmd",
                argv=["true"],
                retries={"max": 3.0},
                success_codes=[0.0, 1],
                stdin='{"ratio": 1.0}',
                env={"X": "1"},
            ),
            node(
                "call",
                "action.http",
                method="POST",
                url="https://example.com",
                expect_status=[200.0],
                json={"one": 1.0, "big": 2**70, "half": 0.5},
            ),
        ]
    )
    text = json.dumps(doc)
    assert '"one": 1.0' in text
    plan = _plan(text)
    assert plan["nodes"]["cmd"]["retries"]["max"] == 3
    assert isinstance(plan["nodes"]["cmd"]["retries"]["max"], int)
    body = plan["nodes"]["call"]["data"]["json"]
    assert isinstance(body["one"], float) and body["big"] == 2**70 and body["half"] == 0.5
    back = plan_from_pb(plan_to_pb(plan))
    assert back["nodes"]["call"]["data"]["json"] == body
    assert isinstance(back["nodes"]["call"]["data"]["json"]["one"], float)


def test_a_fractional_number_is_not_a_whole_number() -> None:
    compiled = compile_workflow(json.dumps(workflow([node("cmd", retries={"max": 2.5})])))
    assert compiled.plan is None
    assert any("retries.max" in d.message for d in compiled.diagnostics)
