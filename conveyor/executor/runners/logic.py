"""Nodes that run no process: triggers, branches, ``logic.fail`` and ``action.sleep``.

- ``trigger.*`` succeeds at once with no outputs; it only marks where a run enters.
- ``logic.condition`` evaluates ``expression``; the outcome's handle is
  ``"true"`` or ``"false"`` and ``outputs.result`` the boolean.
- ``logic.switch`` turns ``value`` into text (booleans as ``true``/``false``,
  null as ``null``) and picks the first of ``cases`` equal to it, else
  ``"default"``; that is both ``outputs.matched`` and the handle.
- ``logic.fail`` renders ``message`` and fails with category ``INTERNAL``;
  the error message is exactly the rendered text.
- ``action.sleep`` waits ``seconds``, checking for cancellation a few times a
  second; it ends with ``TIMEOUT`` when the node's timeout comes first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from conveyor.executor.runners.base import (
    ErrorCategory,
    Masker,
    Renderer,
    StepContext,
    StepError,
    StepOutcome,
    invalid_field,
)
from conveyor.executor.runners.command import node_timeout

SLEEP_SLICE_S = 0.2


def run_trigger(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:  # noqa: ARG001
    """A trigger node has nothing to do."""
    return StepOutcome(succeeded=True, outputs={})


def _renderer(node: Mapping[str, Any], ctx: StepContext) -> Renderer:
    return Renderer(ctx.node_id, node.get("data") or {}, ctx.scope)


def run_condition(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:  # noqa: ARG001
    """Evaluate the condition; the branch taken is the handle."""
    r = _renderer(node, ctx)
    result = bool(r.expression(r.data.get("expression"), "data.expression"))
    return StepOutcome(
        succeeded=True, outputs={"result": result}, handle="true" if result else "false"
    )


def switch_text(value: Any) -> str:
    """The text a switch value is compared as."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_switch(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:  # noqa: ARG001
    """Pick the first case equal to the value, else ``default``."""
    r = _renderer(node, ctx)
    cases = r.data.get("cases") or []
    if not isinstance(cases, list):
        raise invalid_field(ctx.node_id, "data.cases", "expected a list of strings")
    value = switch_text(r.expression(r.data.get("value"), "data.value"))
    matched = next((switch_text(c) for c in cases if switch_text(c) == value), "default")
    return StepOutcome(succeeded=True, outputs={"matched": matched}, handle=matched)


def run_fail(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:  # noqa: ARG001
    """End the step as failed with the rendered message."""
    r = _renderer(node, ctx)
    message = r.field_text("message") or f"failed by node {ctx.node_id!r}"
    raise StepError(ErrorCategory.INTERNAL, message)


def run_sleep(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:  # noqa: ARG001
    """Wait, in short slices so cancellation and the timeout are noticed."""
    r = _renderer(node, ctx)
    raw = r.native(r.data.get("seconds"), "data.seconds")
    try:
        seconds = float(raw)
    except (TypeError, ValueError) as exc:
        raise invalid_field(ctx.node_id, "data.seconds", "expected a number of seconds") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise invalid_field(ctx.node_id, "data.seconds", "expected a number of seconds >= 0")
    timeout_s = node_timeout(node, ctx)
    start = time.monotonic()
    end = start + seconds
    deadline = None if timeout_s is None else start + timeout_s
    while True:
        if ctx.is_cancelled():
            raise StepError(ErrorCategory.CANCELLED, "cancelled while sleeping")
        now = time.monotonic()
        if deadline is not None and deadline < end and now >= deadline:
            raise StepError(ErrorCategory.TIMEOUT, f"timed out after {timeout_s:g} s")
        if now >= end:
            return StepOutcome(succeeded=True, outputs={})
        limit = end if deadline is None else min(end, deadline)
        time.sleep(min(SLEEP_SLICE_S, max(0.0, limit - now)))
