"""The node types of conveyor/v1 and the checks of their type-specific ``data`` fields.

Decisions where the format leaves room:

- An unknown key in an action or logic node's ``data`` is a warning (code
  INVALID_FIELD, severity warning) and is left out of the plan, so a typo such as
  ``arg`` for ``argv`` is visible without breaking editors that keep extra state.
  Trigger nodes carry their ``data`` through unchecked (a schedule may keep its
  own settings there).
- ``action.http`` needs ``method`` (GET, HEAD, POST, PUT, PATCH, DELETE or
  OPTIONS, any case) and ``url``; ``json`` and ``body`` exclude each other.
- ``action.approval`` keeps its own ``timeout_s`` (how long to wait for a
  person); document defaults never set it.
- A bare expression (condition ``expression``, switch ``value``, foreach
  ``items``) may be written wrapped in ``{{ }}``; the plan holds it unwrapped.
- Switch ``cases`` are distinct non-empty strings other than ``default``.
- The plan fills the defaults the format states: ``shell: false`` and
  ``success_codes: [0]`` for commands and scripts, ``wait: true`` for
  subworkflows, ``concurrency: 1`` for foreach.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from conveyor.kernel.templating import is_templated
from conveyor.shared import diagnostics as dg
from conveyor.shared import nodetypes as nt
from conveyor.shared.artifact_names import MAX_PATTERNS as MAX_ARTIFACT_PATTERNS
from conveyor.shared.artifact_names import name_problem
from conveyor.shared.diagnostics import Diagnostics, pointer
from conveyor.translator.domain.options import COMMON_KEYS, is_number, whole

__all__ = [
    "EXPRESSION_FIELDS",
    "NODE_TYPES",
    "UNTEMPLATED_FIELDS",
    "check_data",
    "is_action",
    "is_trigger",
    "unwrap_expression",
]

Check = Callable[[Any], str | None]


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be text"


def _nonempty_text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be non-empty text"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        """A problem unless `value` is one of the choices."""
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def _string_map(value: Any) -> str | None:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return None
    return "must be an object whose values are text"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _argv(value: Any) -> str | None:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    return "must be a non-empty list of text arguments"


def _exit_codes(value: Any) -> str | None:
    if (
        isinstance(value, list)
        and value
        and all((code := whole(v)) is not None and 0 <= code <= 255 for v in value)
    ):
        return None
    return "must be a non-empty list of exit codes from 0 to 255"


_STATUS_RANGE = re.compile(r"[1-5][0-9][0-9](-[1-5][0-9][0-9])?")


def _status(value: Any) -> bool:
    code = whole(value)
    if code is not None:
        return 100 <= code <= 599
    return isinstance(value, str) and _STATUS_RANGE.fullmatch(value) is not None


def _expect_status(value: Any) -> str | None:
    if _status(value) or (isinstance(value, list) and value and all(map(_status, value))):
        return None
    return 'must be an HTTP status, a range like "200-299", or a list of them'


def _url(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty URL"
    if is_templated(value) or value.startswith(("http://", "https://")):
        return None
    return "must start with http:// or https://"


def _seconds(value: Any) -> str | None:
    if is_number(value) and value >= 0:
        return None
    if isinstance(value, str) and is_templated(value):
        return None
    return "must be a number of seconds (0 or more) or a template"


def _items(value: Any) -> str | None:
    if isinstance(value, list) or (isinstance(value, str) and value.strip()):
        return None
    return "must be an expression giving a list, or a list"


def _concurrency(value: Any) -> str | None:
    count = whole(value)
    if count is not None and count >= 1:
        return None
    return "must be a whole number of at least 1"


def _cases(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return "must be a list of non-empty strings"
    if "default" in value:
        return "must not contain 'default', which names the fallback branch"
    if len(set(value)) != len(value):
        return "must not repeat a case"
    return None


def _anything(_value: Any) -> str | None:
    return None


def _artifact_patterns(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of glob patterns (text)"
    if len(value) > MAX_ARTIFACT_PATTERNS:
        return f"must hold at most {MAX_ARTIFACT_PATTERNS} patterns"
    for pattern in value:
        problem = name_problem(pattern)
        if problem is not None:
            return (
                f"pattern {pattern[:80]!r} {problem} (patterns stay inside the working directory)"
            )
    return None


@dataclass(frozen=True)
class Field:
    """One type-specific data field: its check, whether it is required, its default."""

    check: Check
    required: bool = False
    default: Any = None


_PROCESS: Final = {
    "env": Field(_string_map),
    "cwd": Field(_text),
    "stdin": Field(_text),
    "success_codes": Field(_exit_codes, default=[0]),
    "output": Field(_one_of("text", "json", "lines")),
    "artifacts": Field(_artifact_patterns),
}
_HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

NODE_TYPES: Final[Mapping[str, Mapping[str, Field]]] = {
    nt.TRIGGER_MANUAL: {},
    nt.TRIGGER_SCHEDULE: {},
    nt.TRIGGER_WEBHOOK: {},
    nt.COMMAND: {
        "argv": Field(_argv),
        "command": Field(_nonempty_text),
        "shell": Field(_boolean, default=False),
        **_PROCESS,
    },
    nt.SCRIPT: {
        "interpreter": Field(_one_of("bash", "sh", "python3"), required=True),
        "script": Field(_text, required=True),
        **_PROCESS,
    },
    nt.HTTP: {
        "method": Field(_one_of(*_HTTP_METHODS), required=True),
        "url": Field(_url, required=True),
        "headers": Field(_string_map),
        "query": Field(_object),
        "json": Field(_anything),
        "body": Field(_text),
        "expect_status": Field(_expect_status),
        "output": Field(_one_of("json", "text")),
    },
    nt.SLEEP: {"seconds": Field(_seconds, required=True)},
    nt.APPROVAL: {"message": Field(_text)},
    nt.NOTIFY: {
        "url": Field(_url, required=True),
        "json": Field(_anything),
        "body": Field(_text),
        "headers": Field(_string_map),
    },
    nt.SUBWORKFLOW: {
        "job": Field(_nonempty_text, required=True),
        "parameters": Field(_object),
        "wait": Field(_boolean, default=True),
    },
    nt.CONDITION: {"expression": Field(_nonempty_text, required=True)},
    nt.SWITCH: {
        "value": Field(_nonempty_text, required=True),
        "cases": Field(_cases, required=True),
    },
    nt.FOREACH: {
        "items": Field(_items, required=True),
        "concurrency": Field(_concurrency, default=1),
    },
    nt.FAIL: {"message": Field(_text, required=True)},
}

#: Fields holding a bare Jinja expression rather than a template.
EXPRESSION_FIELDS: Final = frozenset(
    {(nt.CONDITION, "expression"), (nt.SWITCH, "value"), (nt.FOREACH, "items")}
)
#: Fields never rendered: script text gets its values through the environment.
UNTEMPLATED_FIELDS: Final = frozenset({(nt.SCRIPT, "script")})


def is_action(node_type: str) -> bool:
    """Whether the type is an action (may carry an ``error`` edge and take defaults)."""
    known = nt.NODE_TYPES.get(node_type)
    return known is not None and known.family == "action"


def is_trigger(node_type: str) -> bool:
    """Whether the type is a trigger, an entry marker."""
    known = nt.NODE_TYPES.get(node_type)
    return known is not None and known.family == "trigger"


_LONE = re.compile(r"\s*\{\{-?(?P<expr>.*?)-?\}\}\s*", re.DOTALL)


def unwrap_expression(value: str) -> str:
    """``{{ a == 1 }}`` -> ``a == 1``; a bare expression is returned stripped."""
    match = _LONE.fullmatch(value)
    if match is not None and not any(m in match.group("expr") for m in ("{{", "}}", "{%")):
        return match.group("expr").strip()
    return value.strip()


def _cross_checks(node_type: str, data: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """Checks across fields: (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    if node_type == nt.COMMAND:
        has_argv, has_command = data.get("argv") is not None, data.get("command") is not None
        if has_argv == has_command:
            problems.append(("", f"{where} needs exactly one of 'argv' or 'command'"))
        if data.get("shell") is True and not has_command:
            problems.append(("shell", f"{where}: 'shell: true' needs 'command', not 'argv'"))
        command = data.get("command")
        if isinstance(command, str) and not data.get("shell") and not is_templated(command):
            try:
                shlex.split(command)
            except ValueError as exc:
                problems.append(("command", f"{where}: 'command' cannot be split: {exc}"))
    if (
        node_type in {nt.HTTP, nt.NOTIFY}
        and data.get("json") is not None
        and data.get("body") is not None
    ):
        problems.append(("body", f"{where}: give either 'json' or 'body', not both"))
    return problems


def check_data(
    node_type: str, data: Mapping[str, Any], path: str, node_id: str, out: Diagnostics
) -> dict[str, Any]:
    """Check a node's type-specific data; returns those fields with stated defaults filled."""
    fields = NODE_TYPES[node_type]
    where = f"node '{node_id}' ({node_type})"
    if is_trigger(node_type):
        return {k: v for k, v in data.items() if k not in COMMON_KEYS}
    checked: dict[str, Any] = {}
    for key, value in data.items():
        # Editors write null for a cleared field: it means "not given".
        if key in COMMON_KEYS or value is None:
            continue
        spec = fields.get(key)
        if spec is None:
            out.warning(
                dg.INVALID_FIELD,
                f"{where}: unknown field '{key}' is ignored",
                path + pointer(key),
                node_id=node_id,
            )
            continue
        if node_type == nt.HTTP and key == "method" and isinstance(value, str):
            value = value.upper()
        problem = spec.check(value)
        if problem is not None:
            out.error(
                dg.INVALID_FIELD,
                f"{where}: '{key}' {problem}",
                path + pointer(key),
                node_id=node_id,
            )
            continue
        if (node_type, key) in EXPRESSION_FIELDS and isinstance(value, str):
            value = unwrap_expression(value)
        checked[key] = value
    for key, spec in fields.items():
        if data.get(key) is not None:
            continue
        if spec.required:
            out.error(
                dg.MISSING_FIELD, f"{where} needs '{key}'", path + pointer(key), node_id=node_id
            )
        elif spec.default is not None:
            checked[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
    for key, message in _cross_checks(node_type, data, where):
        out.error(dg.INVALID_FIELD, message, path + (pointer(key) if key else ""), node_id=node_id)
    return checked
