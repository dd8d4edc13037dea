"""logic.foreach: run the body once per item inside the foreach's own step.

The body (the nodes whose ``parentId`` is the foreach) is a small DAG; for each item it is
walked in the plan's topological order with the same trigger rules, error edges,
``continue_on_error`` and retries as top-level steps, with ``item`` and ``index`` in the
template scope and the item's earlier body outputs under ``steps``. Up to ``concurrency``
items run at once, on threads of the worker that claimed the foreach. Results are collected
in item order. An item fails when a body node failed and nothing in the body handled it; a
failed item fails the foreach (after every item has run).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.executor import engine
from conveyor.executor.engine import StepState, StepView
from conveyor.executor.runners import ErrorCategory, StepContext, StepOutcome, execute
from conveyor.executor.runners.base import Renderer, StepError, invalid_field
from conveyor.shared import nodetypes as nt
from conveyor.shared.limits import DEFAULT_LIMITS

#: Threads one foreach may use, whatever its ``concurrency`` says.
MAX_THREADS = 32
#: Budget (JSON characters) for `results`; items beyond it are recorded as null.
MAX_RESULTS_CHARS = 8 * 1024 * 1024
#: Node types that wait outside a worker and so cannot run inside a body.
NOT_IN_BODY = nt.WAITING

Runner = Callable[[Mapping[str, Any], StepContext], StepOutcome]
#: Told (items done, items failed, items total) once the items are known and after each item.
Progress = Callable[[int, int, int], None]


@dataclass
class ItemRun:
    """How one item's body ended."""

    index: int
    failed: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)
    states: dict[str, tuple[StepState, str, str | None]] = field(default_factory=dict)
    nested: list[dict[str, dict[str, Any]]] = field(default_factory=list)


def resolve_items(node: Mapping[str, Any], ctx: StepContext, *, max_items: int) -> list[Any]:
    """The foreach's items: its expression evaluated, or its literal list; bounded."""
    data = node.get("data") or {}
    r = Renderer(ctx.node_id, data, ctx.scope)
    raw = data.get("items")
    value = (
        r.native(raw, "data.items") if isinstance(raw, list) else r.expression(raw, "data.items")
    )
    if not isinstance(value, list | tuple):
        kind = "null" if value is None else type(value).__name__
        raise invalid_field(ctx.node_id, "data.items", f"expected a list, got {kind}")
    if len(value) > max_items:
        raise invalid_field(
            ctx.node_id,
            "data.items",
            f"{len(value)} items exceed the foreach limit of {max_items}",
        )
    return list(value)


def run_foreach(
    node: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    ctx: StepContext,
    *,
    max_items: int = DEFAULT_LIMITS.max_foreach_items,
    runner: Runner = execute,
    progress: Progress | None = None,
) -> tuple[StepOutcome, dict[str, dict[str, Any]]]:
    """Run a foreach; returns its outcome and how each body node ended over all items.

    `progress`, when given, hears the item counts as items end (from the items' threads).
    """
    try:
        items = resolve_items(node, ctx, max_items=max_items)
    except StepError as failure:
        return failure.outcome(), {}
    body = [n for n in node.get("body") or [] if n in nodes]
    concurrency = int((node.get("data") or {}).get("concurrency") or 1)
    workers = max(1, min(concurrency, MAX_THREADS, len(items) or 1))
    counts = [0, 0]  # done, failed
    counts_lock = threading.Lock()
    if progress is not None:
        progress(0, 0, len(items))

    def one(index: int) -> ItemRun:
        item = _run_item(index, items[index], body, nodes, ctx, runner, max_items)
        if progress is not None:
            with counts_lock:
                counts[0] += 1
                counts[1] += int(item.failed)
                done, failed = counts
            progress(done, failed, len(items))
        return item

    if workers == 1:
        runs = [one(i) for i in range(len(items))]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="foreach") as pool:
            runs = list(pool.map(one, range(len(items))))
    failed = [r.index for r in runs if r.failed]
    results, truncated = _bounded_results(runs)
    outputs = {
        "results": results,
        "count": len(items),
        "failed_items": failed,
        "results_truncated": truncated,
    }
    summary = _summarise(body, runs)
    for r in runs:
        for nested in r.nested:
            _merge(summary, nested)
    if ctx.is_cancelled():
        return StepOutcome(False, outputs, ErrorCategory.CANCELLED, "cancelled"), summary
    if failed:
        first = runs[failed[0]]
        why = next(
            (f"{n}: {m}" for n, (s, m, _c) in first.states.items() if s == StepState.FAILED),
            "",
        )
        category = next(
            (c for s, _m, c in first.states.values() if s == StepState.FAILED and c),
            ErrorCategory.INTERNAL,
        )
        message = f"{len(failed)} of {len(items)} items failed; item {failed[0]}: {why}"
        return StepOutcome(False, outputs, ErrorCategory(category), message), summary
    return StepOutcome(True, outputs), summary


def _run_item(
    index: int,
    item: Any,
    body: list[str],
    nodes: Mapping[str, Mapping[str, Any]],
    ctx: StepContext,
    runner: Runner,
    max_items: int,
) -> ItemRun:
    result = ItemRun(index)
    views: dict[str, StepView] = {}
    base_steps = dict(ctx.scope.get("steps") or {})
    for node_id in body:
        node = nodes[node_id]
        edges = [
            engine.edge_status(nodes[p["node"]], views[p["node"]], p.get("handle"))
            for p in node.get("parents", [])
            if p["node"] in views
        ]
        verdict, reason = engine.evaluate_rule(
            node.get("trigger_rule") or "none_failed_min_one_success", edges
        )
        if not verdict or ctx.is_cancelled():
            views[node_id] = StepView(StepState.SKIPPED, skip_reason=reason or "cancelled")
            result.states[node_id] = (StepState.SKIPPED, reason or "cancelled", None)
            continue
        scope = {
            **ctx.scope,
            "steps": {**base_steps, **result.outputs},
            "item": item,
            "index": index,
        }
        sub = replace(ctx, node_id=f"{node_id}[{index}]", scope=scope)
        outcome, nested = _run_node(node, nodes, sub, runner, max_items)
        if nested:
            result.nested.append(nested)
        state = StepState.SUCCEEDED if outcome.succeeded else StepState.FAILED
        handled = not outcome.succeeded and engine.failure_is_handled(node)
        views[node_id] = StepView(state, outcome.handle, handled)
        result.outputs[node_id] = outcome.outputs
        category = str(outcome.error_category) if outcome.error_category else None
        result.states[node_id] = (state, outcome.error_message or "", category)
    outcome_state = engine.run_outcome((v.state, v.failure_handled) for v in views.values())
    result.failed = outcome_state == engine.RunState.FAILED
    return result


def _run_node(
    node: Mapping[str, Any],
    nodes: Mapping[str, Mapping[str, Any]],
    ctx: StepContext,
    runner: Runner,
    max_items: int,
) -> tuple[StepOutcome, dict[str, dict[str, Any]]]:
    """One body node with its retries (the backoff waits on this thread: the foreach's slot).

    Also returns, for a nested foreach, how its own body nodes ended.
    """
    if node["type"] in NOT_IN_BODY:
        failure = StepError(ErrorCategory.INTERNAL, f"{node['type']} cannot run inside a body")
        return failure.outcome(), {}
    policy = engine.RetryPolicy.from_node(node)
    attempt = 1
    while True:
        nested: dict[str, dict[str, Any]] = {}
        if node["type"] == nt.FOREACH:
            outcome, nested = run_foreach(node, nodes, ctx, max_items=max_items, runner=runner)
        else:
            outcome = runner(node, replace(ctx, attempt=attempt))
        category = str(outcome.error_category) if outcome.error_category else None
        if outcome.succeeded or not policy.should_retry(attempt, category):
            return outcome, nested
        deadline = time.monotonic() + policy.delay(attempt, rand=_no_jitter)
        while time.monotonic() < deadline:
            if ctx.is_cancelled():
                return outcome, nested
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        attempt += 1


def _bounded_results(runs: list[ItemRun]) -> tuple[list[Any], bool]:
    """Per-item outputs in item order, null past the size budget (the step row stays bounded)."""
    budget = MAX_RESULTS_CHARS
    results: list[Any] = []
    for r in runs:
        size = len(json.dumps(r.outputs, default=str))
        if size > budget:
            results.append(None)
            budget = 0
        else:
            results.append(r.outputs)
            budget -= size
    return results, budget == 0 and any(x is None for x in results)


_RANK = {StepState.FAILED.value: 2, StepState.SUCCEEDED.value: 1}


def _merge(into: dict[str, dict[str, Any]], summary: dict[str, dict[str, Any]]) -> None:
    """Fold a nested foreach's summary in: a failure anywhere wins, then a success."""
    for node_id, info in summary.items():
        known = into.get(node_id)
        if known is None or _RANK.get(info["state"], 0) > _RANK.get(known["state"], 0):
            into[node_id] = info


def _no_jitter() -> float:
    return 1.0


def _summarise(body: list[str], runs: list[ItemRun]) -> dict[str, dict[str, Any]]:
    """Per body node: FAILED if it failed for any item, else SUCCEEDED if it ran, else SKIPPED."""
    summary: dict[str, dict[str, Any]] = {}
    for node_id in body:
        seen = [(r.index, r.states[node_id]) for r in runs if node_id in r.states]
        failed = [(i, s) for i, s in seen if s[0] == StepState.FAILED]
        if failed:
            index, (_state, message, category) = failed[0]
            summary[node_id] = {
                "state": StepState.FAILED.value,
                "message": f"failed for {len(failed)} of {len(runs)} items; item {index}: "
                f"{message}",
                "category": category,
            }
        elif any(s[0] == StepState.SUCCEEDED for _i, s in seen):
            ran = sum(s[0] == StepState.SUCCEEDED for _i, s in seen)
            summary[node_id] = {
                "state": StepState.SUCCEEDED.value,
                "message": f"succeeded for {ran} of {len(runs)} items",
            }
        else:
            reason = seen[0][1][1] if seen else "foreach ran no item"
            summary[node_id] = {"state": StepState.SKIPPED.value, "message": reason}
    return summary
