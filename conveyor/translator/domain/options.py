"""Options every node accepts (``timeout_s``, ``retries``, ``queue``, ...) and value checks.

React Flow keeps custom fields in a node's ``data``, so that is where these
options are read from. Document ``defaults`` fill ``timeout_s`` and
``retries`` of action nodes only: a default retry count must not re-run a
``logic.fail`` node, and a default timeout must not expire a person's
approval. ``defaults.retries`` is merged field by field under a node's own
``retries``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from conveyor.shared import diagnostics as dg
from conveyor.shared.categories import DEFAULT_RETRY_ON, ErrorCategory
from conveyor.shared.diagnostics import Diagnostics, pointer
from conveyor.shared.retries import RETRY_DEFAULTS as RETRY_DEFAULTS

__all__ = [
    "CATEGORIES",
    "COMMON_KEYS",
    "DEFAULT_RETRY_ON",
    "TRIGGER_RULES",
    "Options",
    "check_options",
    "is_number",
    "resolved_retries",
    "whole",
]

CATEGORIES: Final = tuple(c.value for c in ErrorCategory)
TRIGGER_RULES: Final = (
    "all_success",
    "all_done",
    "one_success",
    "one_failed",
    "none_failed",
    "none_failed_min_one_success",
)
DEFAULT_TRIGGER_RULE: Final = "none_failed_min_one_success"
DEFAULT_QUEUE: Final = "default"
COMMON_KEYS: Final = frozenset(
    {"timeout_s", "retries", "queue", "trigger_rule", "continue_on_error", "label"}
)
RETRY_KEYS: Final = frozenset({"max", "backoff_s", "factor", "max_backoff_s", "jitter", "on"})
MAX_RETRIES: Final = 100
QUEUE_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def whole(value: Any) -> int | None:
    """A whole number as an int (`3` and `3.0` alike); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def is_number(value: Any) -> bool:
    """Whether `value` is a finite JSON number (booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Options:
    """Common options as written; None means not given."""

    timeout_s: float | None = None
    retries: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    trigger_rule: str | None = None
    continue_on_error: bool | None = None
    label: str | None = None


def _where(node_id: str | None) -> str:
    return f"node '{node_id}'" if node_id is not None else "'defaults'"


def _check_retries(value: Any, path: str, node_id: str | None, out: Diagnostics) -> dict[str, Any]:
    where = _where(node_id)
    if not isinstance(value, dict):
        out.error(dg.INVALID_FIELD, f"{where}: 'retries' must be an object", path, node_id=node_id)
        return {}
    checked: dict[str, Any] = {}
    for key, item in value.items():
        at = path + pointer(key)
        if key == "max":
            count = whole(item)
            if count is not None and 0 <= count <= MAX_RETRIES:
                checked[key] = count
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'retries.max' must be a whole number from 0 to {MAX_RETRIES}",
                    at,
                    node_id=node_id,
                )
        elif key in {"backoff_s", "max_backoff_s", "factor"}:
            low = 1 if key == "factor" else 0
            if is_number(item) and item >= low:
                checked[key] = float(item)
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'retries.{key}' must be a number of at least {low}",
                    at,
                    node_id=node_id,
                )
        elif key == "jitter":
            if isinstance(item, bool):
                checked[key] = item
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'retries.jitter' must be true or false",
                    at,
                    node_id=node_id,
                )
        elif key == "on":
            checked[key] = _check_categories(item, at, where, node_id, out)
        else:
            out.error(
                dg.INVALID_FIELD,
                f"{where}: 'retries' has an unknown field '{key}'; allowed are "
                + ", ".join(sorted(RETRY_KEYS)),
                at,
                node_id=node_id,
            )
    return checked


def _check_categories(
    value: Any, path: str, where: str, node_id: str | None, out: Diagnostics
) -> list[str]:
    if not isinstance(value, list):
        out.error(
            dg.INVALID_FIELD,
            f"{where}: 'retries.on' must be a list of error categories",
            path,
            node_id=node_id,
        )
        return list(DEFAULT_RETRY_ON)
    categories: list[str] = []
    for index, item in enumerate(value):
        if item in CATEGORIES:
            if item not in categories:
                categories.append(item)
        else:
            out.error(
                dg.INVALID_FIELD,
                f"{where}: {item!r} is not an error category; use one of " + ", ".join(CATEGORIES),
                path + pointer(index),
                node_id=node_id,
            )
    return categories


def check_options(
    data: Mapping[str, Any],
    path: str,
    *,
    node_id: str | None,
    keys: Iterable[str] = COMMON_KEYS,
    out: Diagnostics,
) -> Options:
    """Check the common options present in `data` (a node's data or ``defaults``)."""
    where = _where(node_id)
    options = Options()
    wanted = frozenset(keys)
    for key, value in data.items():
        if key not in wanted or value is None:
            continue
        at = path + pointer(key)
        if key == "timeout_s":
            if is_number(value) and value > 0:
                options.timeout_s = float(value)
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'timeout_s' must be a number of seconds above 0",
                    at,
                    node_id=node_id,
                )
        elif key == "retries":
            options.retries = _check_retries(value, at, node_id, out)
        elif key == "queue":
            if isinstance(value, str) and QUEUE_PATTERN.fullmatch(value):
                options.queue = value
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'queue' must be 1 to 200 letters, digits, '_', '.', ':' or '-'",
                    at,
                    node_id=node_id,
                )
        elif key == "trigger_rule":
            if value in TRIGGER_RULES:
                options.trigger_rule = value
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'trigger_rule' {value!r} is not one of " + ", ".join(TRIGGER_RULES),
                    at,
                    node_id=node_id,
                )
        elif key == "continue_on_error":
            if isinstance(value, bool):
                options.continue_on_error = value
            else:
                out.error(
                    dg.INVALID_FIELD,
                    f"{where}: 'continue_on_error' must be true or false",
                    at,
                    node_id=node_id,
                )
        elif key == "label":
            if isinstance(value, str):
                options.label = value
            else:
                out.error(dg.INVALID_FIELD, f"{where}: 'label' must be text", at, node_id=node_id)
    return options


def resolved_retries(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The full retry policy: built-in defaults overlaid by each layer in turn."""
    policy = dict(RETRY_DEFAULTS)
    for layer in layers:
        policy.update(layer)
    policy["on"] = list(policy["on"])
    return policy
