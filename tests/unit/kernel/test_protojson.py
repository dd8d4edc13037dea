"""JSON text fields: exact values both ways, the HTTP names, kinds and the depth limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format

from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.kernel.errors import InvalidArgument
from conveyor.kernel.protoconv import MAX_JSON_DEPTH, json_text, parse_json_text
from conveyor.kernel.protojson import JsonFieldError, from_json_dict, json_kind, to_json_dict
from conveyor.kernel.v1 import json_pb2
from conveyor.scheduler.v1 import schedule_pb2
from conveyor.translator.v1 import translator_pb2, translator_service_pb2

VALUES: dict[str, Any] = {
    "big": 2**53 + 1,
    "bigger": -(2**100),
    "one": 1.0,
    "huge": 1e300,
    "negzero": -0.0,
    "astral": "\U0001f680\U0001d11e",
    "nested": [{"a": [1.5, None, True]}],
}


def nest(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_json_text_round_trips_exactly() -> None:
    text = json_text(VALUES)
    back = parse_json_text(text, field="x")
    assert json.dumps(back) == json.dumps(VALUES)
    assert "9007199254740993" in text and '"one":1.0' in text
    text.encode("utf-8")  # astral characters are escaped, so any string is sendable


def test_depth_limit_is_inclusive() -> None:
    assert parse_json_text(json_text(nest(MAX_JSON_DEPTH)), field="p") == nest(MAX_JSON_DEPTH)
    with pytest.raises(InvalidArgument) as info:
        parse_json_text(json_text(nest(MAX_JSON_DEPTH + 1)), field="parameters")
    assert info.value.violations[0].field == "parameters"


@pytest.mark.parametrize("text", ["{", "NaN", "[Infinity]", "1e400", '{"a": 1} x'])
def test_text_that_is_not_finite_json_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_json_text(text, field="parameters")
    assert info.value.violations[0].field == "parameters"
    assert info.value.violations[0].reason == "INVALID_JSON"


def test_empty_text_is_the_default() -> None:
    assert parse_json_text("", field="x", default={}) == {}


def test_response_shows_json_fields_as_values_under_their_names() -> None:
    run = run_pb2.Run(
        run_id="r",
        parameters_json=json_text(VALUES),
        steps=[run_pb2.Step(node_id="a", outputs_json=json_text({"n": 1.0}), output_json="7")],
    )
    data = to_json_dict(run)
    assert json.dumps(data["parameters"]) == json.dumps(VALUES)
    assert "parameters_json" not in data
    step = data["steps"][0]
    assert json.dumps(step["outputs"]) == '{"n": 1.0}' and step["output"] == 7
    # An empty text is left out, as an unset Struct was.
    assert "output" not in to_json_dict(run_pb2.Step(node_id="b"))


def test_plan_node_data_is_a_value_in_the_json_mapping() -> None:
    plan = translator_pb2.Plan(
        nodes=[translator_pb2.PlanNode(id="a", data_json='{"big": 9007199254740993}')]
    )
    assert to_json_dict(plan)["nodes"][0]["data"] == {"big": 9007199254740993}


def test_request_takes_values_or_text() -> None:
    given = {"job_id": "j", "parameters": {"big": 2**53 + 1, "one": 1.0}}
    msg = from_json_dict(given, executor_service_pb2.StartRunRequest())
    assert msg.parameters_json == '{"big":9007199254740993,"one":1.0}'
    as_text = from_json_dict(
        {"jobId": "j", "parameters_json": "{}"}, executor_service_pb2.StartRunRequest()
    )
    assert as_text.parameters_json == "{}"


@pytest.mark.parametrize("value", [[1], "x", 3, None])
def test_an_object_field_refuses_other_values(value: Any) -> None:
    with pytest.raises(JsonFieldError) as info:
        from_json_dict({"parameters": value}, executor_service_pb2.StartRunRequest())
    assert info.value.field == "parameters"


def test_unknown_fields_are_still_refused() -> None:
    with pytest.raises(json_format.ParseError):
        from_json_dict({"parameterz": {}}, executor_service_pb2.StartRunRequest())


def test_every_json_field_is_a_string_named_json() -> None:
    marked = []
    for desc in (
        run_pb2.Run.DESCRIPTOR,
        run_pb2.Step.DESCRIPTOR,
        executor_service_pb2.StartRunRequest.DESCRIPTOR,
        translator_pb2.Job.DESCRIPTOR,
        translator_pb2.Plan.DESCRIPTOR,
        translator_pb2.PlanNode.DESCRIPTOR,
        schedule_pb2.Schedule.DESCRIPTOR,
    ):
        marked += [f.name for f in desc.fields if json_kind(f) != json_pb2.JSON_KIND_UNSPECIFIED]
    assert sorted(marked) == sorted(
        [
            "parameters_json",
            "output_json",
            "outputs_json",
            "parameters_json",
            "definition_json",
            "parameters_schema_json",
            "parameters_schema_json",
            "data_json",
            "parameters_json",
        ]
    )


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"])
def test_strings_that_cannot_be_stored_are_refused(text: str) -> None:
    with pytest.raises(JsonFieldError) as info:
        from_json_dict({"parameters": {"k": [text]}}, executor_service_pb2.StartRunRequest())
    assert info.value.field == "parameters"


def test_a_workflow_document_is_taken_as_a_value_or_as_text() -> None:
    doc = {"schema": "conveyor/v1", "nodes": [{"data": {"n": 2**60 + 1, "f": 0.5}}]}
    msg = from_json_dict({"workflow": doc}, translator_service_pb2.CreateJobRequest())
    assert msg.WhichOneof("source") == "workflow_json"
    assert json.loads(msg.workflow_json) == doc
    text = from_json_dict(
        {"workflow_json": "{not json"}, translator_service_pb2.ValidateWorkflowRequest()
    )
    assert text.workflow_json == "{not json"  # malformed text reaches the translator's diagnostics
