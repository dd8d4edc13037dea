"""Run parameters: validated against the plan's JSON Schema, with its defaults applied."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from conveyor.translator.domain import compile_workflow, validate_parameters

from ._docs import node, workflow

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "format": "ipv4"},
        "port": {"type": "integer", "default": 22},
        "ssh": {
            "type": "object",
            "default": {},
            "properties": {
                "user": {"type": "string", "default": "backup"},
                "keys": {"type": "array", "default": ["a"]},
            },
        },
    },
    "required": ["host"],
    "additionalProperties": False,
}


def _plan() -> dict[str, Any]:
    result = compile_workflow(workflow([node("a", argv=["{{ params.host }}"])], parameters=SCHEMA))
    assert result.plan is not None
    return result.plan


def test_defaults_are_applied_recursively() -> None:
    params, problems = validate_parameters(_plan(), {"host": "10.0.0.1"})
    assert problems == []
    assert params == {"host": "10.0.0.1", "port": 22, "ssh": {"user": "backup", "keys": ["a"]}}


def test_given_values_win_over_defaults() -> None:
    params, problems = validate_parameters(
        SCHEMA, {"host": "10.0.0.1", "port": 2222, "ssh": {"user": "root"}}
    )
    assert problems == []
    assert params["port"] == 2222 and params["ssh"] == {"user": "root", "keys": ["a"]}


def test_every_violation_is_reported_with_its_field() -> None:
    _, problems = validate_parameters(_plan(), {"port": "x", "extra": 1, "ssh": {"user": 5}})
    assert {(d.code, d.path) for d in problems} == {
        ("INVALID_FIELD", "/parameters/host"),
        ("INVALID_FIELD", "/parameters/port"),
        ("INVALID_FIELD", "/parameters/extra"),
        ("INVALID_FIELD", "/parameters/ssh/user"),
    }
    host = next(d for d in problems if d.path == "/parameters/host")
    assert "required" in host.message


def test_format_is_checked() -> None:
    _, problems = validate_parameters(SCHEMA, {"host": "not-an-address"})
    assert [d.path for d in problems] == ["/parameters/host"]


def test_values_decoded_from_json_text_stay_exact() -> None:
    params, problems = validate_parameters(
        {"type": "object"}, {"big": 2**53 + 1, "one": 1.0, "nested": [{"f": 2.0}]}
    )
    assert problems == []
    assert params["big"] == 9007199254740993
    assert isinstance(params["one"], float) and isinstance(params["nested"][0]["f"], float)


def test_struct_numbers_become_integers() -> None:
    struct = struct_pb2.Struct()
    struct.update({"host": "10.0.0.1", "port": 2022})
    params, problems = validate_parameters(_plan(), struct)
    assert problems == []
    assert params["port"] == 2022 and isinstance(params["port"], int)


def test_plan_without_schema_accepts_anything() -> None:
    result = compile_workflow(workflow([node("a")]))
    assert result.plan is not None and result.plan["parameters"] == {}
    assert validate_parameters(result.plan, {"x": [1]}) == ({"x": [1]}, [])


def test_invalid_schema_is_reported() -> None:
    _, problems = validate_parameters({"type": "object", "properties": {"a": {"type": 3}}}, {})
    assert [d.code for d in problems] == ["INVALID_PARAMETERS_SCHEMA"]


def test_unknown_parameter_is_refused_by_name() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}}
    _, problems = validate_parameters(schema, {"nme": "typo"})
    assert [(p.code, p.path) for p in problems] == [("INVALID_FIELD", "/parameters/nme")]
    assert "unknown parameter 'nme'" in problems[0].message
    assert "name" in problems[0].message


def test_unknown_parameter_allowed_when_schema_says_so() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "additionalProperties": True,
    }
    assert validate_parameters(schema, {"nme": "x"}) == ({"nme": "x"}, [])
    pattern = {"type": "object", "patternProperties": {"^env_": {"type": "string"}}}
    assert validate_parameters(pattern, {"env_a": "1"}) == ({"env_a": "1"}, [])
    assert validate_parameters(pattern, {"other": "1"})[1][0].path == "/parameters/other"


def test_schema_without_properties_leaves_parameters_open() -> None:
    assert validate_parameters({"type": "object"}, {"anything": 1}) == ({"anything": 1}, [])


def test_a_schema_is_checked_once_and_its_verdict_kept_per_content() -> None:
    from conveyor.shared import parameters

    parameters._prepared.cache_clear()
    bad = {"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}
    for _ in range(3):
        _, problems = validate_parameters(bad, {"n": 1})
        assert [p.code for p in problems] == ["INVALID_PARAMETERS_SCHEMA"]
        assert "minimum" in problems[0].message
        params, problems = validate_parameters(SCHEMA, {"host": "banana"})
        assert params["port"] == 22 and [p.path for p in problems] == ["/parameters/host"]
    # The same schema with its keys in another order is the same entry; a changed one is not.
    reordered = dict(reversed(list(SCHEMA.items())))
    assert validate_parameters(reordered, {"host": "10.0.0.1"})[1] == []
    changed = {**SCHEMA, "required": ["host", "port"]}
    assert validate_parameters(changed, {"host": "10.0.0.1"})[1] == []  # port has a default
    assert parameters._prepared.cache_info().misses == 3
    assert parameters._prepared.cache_info().hits == 5
