"""The ``parameters`` JSON Schema: checking it, and validating a run's parameters against it.

Decisions where the format leaves room:

- The schema is JSON Schema draft 2020-12 and must describe an object (no
  ``type`` or ``type: object``); a boolean schema is not accepted.
- ``format`` is asserted (``"format": "ipv4"`` rejects ``"banana"``), since a
  run's input is exactly where users expect it checked.
- ``params.X`` in a template must be a top-level ``properties`` key (or match
  ``patternProperties``) when the schema declares either; ``additionalProperties``
  does not make an undeclared name acceptable. A schema declaring neither
  leaves ``params`` references unchecked.
- Defaults: a missing property with a ``default`` gets a copy of it, and
  objects present (or defaulted) are filled the same way, level by level.
- Unknown parameters: when the schema declares ``properties`` or
  ``patternProperties`` and says nothing about ``additionalProperties`` (or
  ``unevaluatedProperties``), a top-level run parameter it does not declare is
  refused (a typo such as ``nme`` for ``name`` would otherwise be ignored and the
  run go on with the default). JSON Schema itself allows such names; a schema that
  wants them sets ``"additionalProperties": true``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from conveyor.shared import diagnostics as dg
from conveyor.shared.diagnostics import Diagnostic, Diagnostics, pointer
from conveyor.shared.limits import to_plain

__all__ = ["Declared", "check_parameters_schema", "declared_parameters", "validate_parameters"]

# Defaults are applied this many object levels down at most; schemas are small.
_MAX_DEFAULT_DEPTH = 32


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return "'parameters' must be a JSON Schema object"
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and kind == ["object"]):
        return '\'parameters\' must describe an object ("type": "object")'
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"'parameters' is not a valid JSON Schema (draft 2020-12): {exc.message}" + (
            f" at '{where}'" if where else ""
        )
    except Exception as exc:  # a schema the checker itself chokes on
        return f"'parameters' cannot be checked as a JSON Schema: {exc}"
    return None


@functools.lru_cache(maxsize=64)
def _prepared(schema_text: str) -> str | Draft202012Validator:
    """A schema's problem (text), or its validator, by its canonical JSON text.

    Checking a schema against the metaschema costs more than validating a run's
    parameters; a job's runs share one schema, so each process checks it once.
    """
    schema = json.loads(schema_text)
    problem = _schema_problem(schema)
    if problem is not None:
        return problem
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _checked(schema: Any) -> str | Draft202012Validator:
    """`_prepared` for a schema made plain by `to_plain` (JSON values only)."""
    return _prepared(json.dumps(schema, sort_keys=True, separators=(",", ":")))


def check_parameters_schema(document: Mapping[str, Any], out: Diagnostics) -> dict[str, Any]:
    """The document's parameters schema, or ``{}`` when absent or invalid (reported)."""
    schema = document.get("parameters")
    if schema is None:
        return {}
    problem = _schema_problem(schema)
    if problem is not None:
        out.error(dg.INVALID_PARAMETERS_SCHEMA, problem, "/parameters")
        return {}
    checked: dict[str, Any] = schema
    return checked


@dataclass(frozen=True)
class Declared:
    """The parameter names a schema declares."""

    names: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self.names or any(p.search(name) for p in self.patterns)
        )


def declared_parameters(schema: Mapping[str, Any]) -> Declared | None:
    """What ``params.X`` may name, or None when the schema declares no properties at all."""
    properties = schema.get("properties")
    pattern_properties = schema.get("patternProperties")
    if not isinstance(properties, dict) and not isinstance(pattern_properties, dict):
        return None
    patterns: list[re.Pattern[str]] = []
    for raw in pattern_properties or {}:
        try:
            patterns.append(re.compile(raw))
        except re.error:
            continue
    return Declared(frozenset(properties or {}), tuple(patterns))


def _apply_defaults(schema: Mapping[str, Any], value: dict[str, Any]) -> None:
    pending: list[tuple[Mapping[str, Any], dict[str, Any], int]] = [(schema, value, 0)]
    while pending:
        current_schema, current, depth = pending.pop()
        properties = current_schema.get("properties")
        if not isinstance(properties, dict) or depth >= _MAX_DEFAULT_DEPTH:
            continue
        for name, sub in properties.items():
            if not isinstance(sub, dict):
                continue
            if name not in current and "default" in sub:
                current[name] = copy.deepcopy(sub["default"])
            if isinstance(current.get(name), dict):
                pending.append((sub, current[name], depth + 1))


def _violations(validator: Draft202012Validator, params: dict[str, Any]) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for error in sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path)):
        base = pointer("parameters", *error.absolute_path)
        instance = error.instance if isinstance(error.instance, dict) else {}
        if error.validator == "required":
            missing = [
                name
                for name in error.validator_value
                if name not in instance and repr(name) in error.message
            ]
            paths = [base + pointer(name) for name in missing[:1]] or [base]
        elif error.validator == "additionalProperties" and error.validator_value is False:
            declared = declared_parameters(error.schema) or Declared(frozenset(), ())
            paths = [base + pointer(k) for k in instance if k not in declared] or [base]
        else:
            paths = [base]
        found.extend(
            Diagnostic(dg.INVALID_FIELD, f"parameter '{path[12:]}': {error.message}", path)
            if path != "/parameters"
            else Diagnostic(dg.INVALID_FIELD, f"parameters: {error.message}", path)
            for path in paths
        )
    return found


def _unknown(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[Diagnostic]:
    """Top-level names the schema does not declare, unless it speaks about extra properties."""
    if "additionalProperties" in schema or "unevaluatedProperties" in schema:
        return []
    declared = declared_parameters(schema)
    if declared is None:
        return []
    known = ", ".join(sorted(declared.names)) or "none"
    return [
        Diagnostic(
            dg.INVALID_FIELD,
            f"unknown parameter {name!r} (declared: {known})",
            pointer("parameters", name),
        )
        for name in values
        if name not in declared
    ]


def validate_parameters(
    plan_or_schema: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Validate run parameters against a plan's (or a bare) schema; returns them with defaults."""
    if not isinstance(plan_or_schema, Mapping):
        problem = "there is no parameters schema to validate against"
        return {}, [Diagnostic(dg.INVALID_PARAMETERS_SCHEMA, problem, "/parameters")]
    is_plan = "nodes" in plan_or_schema and "parameters" in plan_or_schema
    schema_value = plan_or_schema.get("parameters") if is_plan else plan_or_schema
    schema_plain = to_plain(schema_value if schema_value is not None else {}, max_depth=256)
    schema = schema_plain.value
    checked = "'parameters' schema nests too deeply" if schema_plain.too_deep else _checked(schema)
    # Parameters decoded from JSON text are exact, so a float stays a float; a protobuf
    # Struct has only doubles, so there a whole number means an integer.
    converted = to_plain(params, max_depth=256, whole_floats=isinstance(params, dict))
    if not isinstance(converted.value, dict):
        return {}, [Diagnostic(dg.INVALID_FIELD, "parameters must be an object", "/parameters")]
    values: dict[str, Any] = converted.value
    diagnostics = [
        Diagnostic(dg.INVALID_FIELD, "parameter value is not JSON", "/parameters" + path)
        for path in converted.bad_values
    ]
    if isinstance(checked, str):
        diagnostics.append(Diagnostic(dg.INVALID_PARAMETERS_SCHEMA, checked, "/parameters"))
        return values, diagnostics
    _apply_defaults(schema, values)
    diagnostics.extend(_unknown(schema, values))
    try:
        diagnostics.extend(_violations(checked, values))
    except Exception as exc:  # e.g. an unresolvable $ref found only while validating
        diagnostics.append(
            Diagnostic(
                dg.INVALID_PARAMETERS_SCHEMA,
                f"'parameters' cannot be applied: {exc}",
                "/parameters",
            )
        )
    return values, diagnostics
