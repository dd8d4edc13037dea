"""compile_workflow: a document in, every diagnostic and (when error-free) an execution plan out.

The plan is plain JSON data: ``{"schema", "name", "description", "parameters",
"nodes": {id: node, ...} (topological order), "entry": [ids]}`` where each node is
``{"id", "type", "label", "data", "timeout_s", "retries", "queue", "trigger_rule",
"continue_on_error", "parents", "children", "group", "body", "position"}``. It crosses gRPC
as the typed `conveyor.translator.v1.Plan` (`conveyor/translator/wire.py`), which is the
contract with the executor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.shared import diagnostics as dg
from conveyor.shared import nodetypes as nt
from conveyor.shared.diagnostics import ERROR, Diagnostic, Diagnostics
from conveyor.shared.limits import DEFAULT_LIMITS, Limits
from conveyor.shared.parameters import (
    check_parameters_schema,
    declared_parameters,
)
from conveyor.translator.domain.document import SCHEMA, Header, check_header, load, parse_document
from conveyor.translator.domain.graph import Graph, build_graph
from conveyor.translator.domain.nodes import Node, check_nodes
from conveyor.translator.domain.nodetypes import is_action
from conveyor.translator.domain.options import (
    DEFAULT_QUEUE,
    DEFAULT_TRIGGER_RULE,
    resolved_retries,
)
from conveyor.translator.domain.templates import check_templates

__all__ = ["CompileResult", "compile_workflow", "validate_workflow"]


@dataclass(frozen=True)
class CompileResult:
    """All diagnostics of a document, and its plan when none of them is an error."""

    diagnostics: list[Diagnostic]
    plan: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        """Whether the document compiled (warnings allowed)."""
        return self.plan is not None and not any(d.severity == ERROR for d in self.diagnostics)


def _load(
    document: str | bytes | Mapping[str, Any], limits: Limits
) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    if isinstance(document, str | bytes | bytearray):
        return parse_document(document, limits=limits)
    return load(document, limits=limits)


def _check_counts(header: Header, limits: Limits, out: Diagnostics) -> bool:
    fits = True
    if len(header.nodes) > limits.max_nodes:
        out.error(
            dg.LIMIT_EXCEEDED,
            f"the workflow has {len(header.nodes)} nodes, more than the limit of "
            f"{limits.max_nodes}",
            "/nodes",
        )
        fits = False
    if len(header.edges) > limits.max_edges:
        out.error(
            dg.LIMIT_EXCEEDED,
            f"the workflow has {len(header.edges)} edges, more than the limit of "
            f"{limits.max_edges}",
            "/edges",
        )
        fits = False
    return fits


def _plan_node(
    node: Node, graph: Graph, header: Header, bodies: dict[str, list[str]]
) -> dict[str, Any]:
    assert node.type is not None
    options, defaults = node.options, header.defaults
    action = is_action(node.type)
    data = dict(node.data)
    timeout_s = options.timeout_s
    if node.type == nt.APPROVAL:
        if timeout_s is not None:
            data["timeout_s"] = timeout_s
    elif timeout_s is None and action:
        timeout_s = defaults.timeout_s
    retries = (
        resolved_retries(defaults.retries, options.retries)
        if action
        else resolved_retries(options.retries)
    )
    return {
        "id": node.id,
        "type": node.type,
        "label": options.label,
        "data": data,
        "timeout_s": timeout_s,
        "retries": retries,
        "queue": options.queue or defaults.queue or DEFAULT_QUEUE,
        "trigger_rule": options.trigger_rule or DEFAULT_TRIGGER_RULE,
        "continue_on_error": bool(options.continue_on_error),
        "parents": [{"node": p, "handle": h} for p, h in graph.parents[node.id]],
        "children": [{"node": c, "handle": h} for c, h in graph.children[node.id]],
        "group": graph.group[node.id],
        "body": bodies.get(node.id, []) if node.type == nt.FOREACH else None,
        "position": _position(header.nodes[node.index]),
    }


def _position(raw: Any) -> dict[str, float] | None:
    """The editor's position of a node when it is a pair of finite numbers, else None."""
    position = raw.get("position") if isinstance(raw, dict) else None
    if not isinstance(position, dict):
        return None
    x: Any = position.get("x")
    y: Any = position.get("y")
    if not (_coordinate(x) and _coordinate(y)):
        return None
    return {"x": float(x), "y": float(y)}


def _coordinate(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plan(header: Header, parameters: dict[str, Any], graph: Graph) -> dict[str, Any]:
    bodies = graph.bodies()
    return {
        "schema": SCHEMA,
        "name": header.name,
        "description": header.description,
        "parameters": parameters,
        "nodes": {n: _plan_node(graph.nodes[n], graph, header, bodies) for n in graph.order},
        "entry": graph.entries(),
    }


def _compile(document: str | bytes | Mapping[str, Any], limits: Limits) -> CompileResult:
    out = Diagnostics()
    loaded, problems = _load(document, limits)
    out.extend(problems)
    if loaded is None:
        return CompileResult(out.items, None)
    header = check_header(loaded, out)
    parameters = check_parameters_schema(loaded, out)
    if not _check_counts(header, limits, out):
        return CompileResult(out.items, None)
    nodes = check_nodes(header.nodes, out)
    graph = build_graph(nodes, header.edges, out)
    check_templates(nodes, graph, declared_parameters(parameters), limits, out)
    if out.has_errors:
        return CompileResult(out.items, None)
    return CompileResult(out.items, _plan(header, parameters, graph))


def compile_workflow(
    document: str | bytes | Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS
) -> CompileResult:
    """Check a workflow document and compile it to an execution plan; never raises."""
    try:
        return _compile(document, limits)
    except RecursionError:
        message = "the document is nested too deeply to check"
    except Exception as exc:  # a defect here must not take the service down
        message = f"the document could not be checked: {type(exc).__name__}: {exc}"
    return CompileResult([Diagnostic(dg.INVALID_DOCUMENT, message, "")], None)


def validate_workflow(
    document: str | bytes | Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS
) -> list[Diagnostic]:
    """Every diagnostic of a document (errors and warnings), without the plan."""
    return compile_workflow(document, limits=limits).diagnostics
