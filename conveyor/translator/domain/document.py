"""Reading a document: JSON text or a mapping in, plain data and top-level checks out.

Decisions where the format leaves room:

- ``name`` is 1 to 200 characters of ``[A-Za-z0-9][A-Za-z0-9_.-]*``: it names a
  job in URLs, the CLI and ``action.subworkflow``, so it carries no spaces.
- ``schema`` missing or other than ``conveyor/v1`` is INVALID_DOCUMENT.
- ``description`` is optional text; ``edges`` is optional (no edges).
- Unknown top-level fields (``viewport`` and other editor state) are ignored.
- ``defaults`` may hold ``timeout_s``, ``retries`` and ``queue`` only; another
  key there is an INVALID_FIELD, because it is a typo rather than editor state.
- JSON text may not use ``NaN`` or ``Infinity``, which are not JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.shared import diagnostics as dg
from conveyor.shared.diagnostics import Diagnostic, Diagnostics, pointer
from conveyor.shared.limits import (
    DEFAULT_LIMITS,
    Limits,
    json_text_depth_exceeds,
    to_plain,
)
from conveyor.translator.domain.options import Options, check_options

__all__ = ["SCHEMA", "Header", "check_header", "load", "parse_document"]

SCHEMA = "conveyor/v1"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
DEFAULTS_KEYS = frozenset({"timeout_s", "retries", "queue"})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _too_big(limits: Limits, size: int) -> Diagnostic:
    return Diagnostic(
        dg.LIMIT_EXCEEDED,
        f"the document is {size} bytes, more than the limit of {limits.max_document_bytes}",
        "",
    )


def _too_deep(limits: Limits) -> Diagnostic:
    return Diagnostic(
        dg.LIMIT_EXCEEDED,
        f"the document nests objects and lists more than {limits.max_depth} levels deep",
        "",
    )


def parse_document(
    source: str | bytes, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """Parse JSON text into a document object, checking size and depth before parsing."""
    if isinstance(source, bytes | bytearray):
        if len(source) > limits.max_document_bytes:
            return None, [_too_big(limits, len(source))]
        try:
            text = bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, [
                Diagnostic(dg.INVALID_DOCUMENT, f"the document is not UTF-8 text: {exc}", "")
            ]
    elif isinstance(source, str):
        text = source
        # A character is at least one byte, so only a short string needs encoding to measure.
        if len(text) > limits.max_document_bytes or (
            len(text) * 4 > limits.max_document_bytes
            and len(text.encode("utf-8", "surrogatepass")) > limits.max_document_bytes
        ):
            return None, [_too_big(limits, len(text.encode("utf-8", "surrogatepass")))]
    else:
        return None, [
            Diagnostic(dg.INVALID_DOCUMENT, "the document must be JSON text or an object", "")
        ]
    if json_text_depth_exceeds(text, limits.max_depth):
        return None, [_too_deep(limits)]
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_number)
    except json.JSONDecodeError as exc:
        return None, [
            Diagnostic(
                dg.INVALID_DOCUMENT,
                f"the document is not valid JSON: {exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}",
                "",
                line=exc.lineno,
                column=exc.colno,
            )
        ]
    except (ValueError, RecursionError) as exc:
        return None, [Diagnostic(dg.INVALID_DOCUMENT, f"the document is not valid JSON: {exc}", "")]
    if not isinstance(value, dict):
        return None, [Diagnostic(dg.INVALID_DOCUMENT, "the document must be a JSON object", "")]
    # Parsed text is plain JSON already, within the depth limit checked above.
    return value, []


def _number(text: str) -> float:
    # A float stays a float: `1.0` in a document reaches the step as `1.0`. Where an option
    # needs a whole number, the option's check accepts a whole float (options.whole).
    return float(text)


def load(
    value: Any, *, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """Turn an already-decoded document (dict, protobuf Struct...) into plain JSON data."""
    if not isinstance(value, Mapping):
        return None, [Diagnostic(dg.INVALID_DOCUMENT, "the document must be a JSON object", "")]
    plain = to_plain(value, max_depth=limits.max_depth)
    if plain.too_deep:
        return None, [_too_deep(limits)]
    problems = [
        Diagnostic(dg.INVALID_FIELD, f"the value at '{path}' is not a JSON value", path)
        for path in plain.bad_values
    ]
    document: dict[str, Any] = plain.value
    return document, problems


@dataclass
class Header:
    """The checked document-level fields."""

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    defaults: Options = field(default_factory=Options)
    nodes: list[Any] = field(default_factory=list)
    edges: list[Any] = field(default_factory=list)


def _check_name(document: Mapping[str, Any], out: Diagnostics) -> str:
    name = document.get("name")
    if name is None:
        out.error(dg.MISSING_FIELD, "the workflow needs a 'name'", "/name")
        return ""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        out.error(
            dg.INVALID_FIELD,
            "the workflow 'name' must be 1 to 200 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            "/name",
        )
        return ""
    return name


def _check_list(
    document: Mapping[str, Any], key: str, *, required: bool, out: Diagnostics
) -> list[Any]:
    value = document.get(key)
    if value is None:
        if required:
            out.error(dg.MISSING_FIELD, f"the workflow needs a '{key}' list", pointer(key))
        return []
    if not isinstance(value, list):
        out.error(dg.INVALID_FIELD, f"'{key}' must be a list", pointer(key))
        return []
    return value


def _check_defaults(document: Mapping[str, Any], out: Diagnostics) -> Options:
    defaults = document.get("defaults")
    if defaults is None:
        return Options()
    if not isinstance(defaults, dict):
        out.error(dg.INVALID_FIELD, "'defaults' must be an object", "/defaults")
        return Options()
    for key in defaults:
        if key not in DEFAULTS_KEYS:
            out.error(
                dg.INVALID_FIELD,
                f"'defaults' has an unknown field '{key}'; allowed are timeout_s, retries, queue",
                pointer("defaults", key),
            )
    return check_options(defaults, "/defaults", node_id=None, keys=DEFAULTS_KEYS, out=out)


def check_header(document: Mapping[str, Any], out: Diagnostics) -> Header:
    """Check ``schema``, ``name``, ``description``, ``defaults``, ``nodes`` and ``edges``."""
    schema = document.get("schema")
    if schema != SCHEMA:
        shown = "missing" if schema is None else json.dumps(schema)[:80]
        out.error(
            dg.INVALID_DOCUMENT,
            f"the document's 'schema' must be \"{SCHEMA}\" (it is {shown})",
            "/schema",
        )
    header = Header(name=_check_name(document, out))
    description = document.get("description")
    if description is not None and not isinstance(description, str):
        out.error(dg.INVALID_FIELD, "'description' must be text", "/description")
    elif isinstance(description, str):
        header.description = description
    header.defaults = _check_defaults(document, out)
    header.nodes = _check_list(document, "nodes", required=True, out=out)
    header.edges = _check_list(document, "edges", required=False, out=out)
    return header
