"""The compiled plan on the wire: the typed `conveyor.translator.v1.Plan` and back.

The translator compiles a document to a plan of plain data (`domain/compile.py`) and sends
it as a `Plan` message; the executor turns the message back into the same plain data, which
it stores with the run and which the engine and the runners read. Nodes travel as a repeated
field in topological order, so the order survives by construction; a node's data travels as
JSON text, so its values come back exactly. `plan_from_pb(plan_to_pb(plan)) == plan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.executor.v1 import run_pb2
from conveyor.kernel.protoconv import duration, enum_value, json_text, parse_json_object, seconds
from conveyor.shared import nodetypes as nt
from conveyor.translator.v1 import translator_pb2

__all__ = ["plan_from_pb", "plan_to_pb"]

_RULE_PREFIX = "TRIGGER_RULE_"
_CATEGORY_PREFIX = "ERROR_CATEGORY_"


def _edges(links: list[Mapping[str, Any]]) -> list[translator_pb2.PlanEdge]:
    out = []
    for link in links:
        edge = translator_pb2.PlanEdge(node_id=link["node"])
        if link.get("handle") is not None:
            edge.handle = link["handle"]
        out.append(edge)
    return out


def _links(edges: Any) -> list[dict[str, Any]]:
    return [
        {"node": e.node_id, "handle": e.handle if e.HasField("handle") else None} for e in edges
    ]


def _retry_pb(retries: Mapping[str, Any]) -> translator_pb2.RetryPolicy:
    return translator_pb2.RetryPolicy(
        max_retries=int(retries["max"]),
        initial_backoff=duration(retries["backoff_s"]),
        backoff_factor=float(retries["factor"]),
        max_backoff=duration(retries["max_backoff_s"]),
        jitter=bool(retries["jitter"]),
        retry_on=[enum_value(run_pb2.ErrorCategory, _CATEGORY_PREFIX + c) for c in retries["on"]],
    )


def _retries(policy: translator_pb2.RetryPolicy) -> dict[str, Any]:
    return {
        "max": policy.max_retries,
        "backoff_s": float(seconds(policy.initial_backoff)),
        "factor": policy.backoff_factor,
        "max_backoff_s": float(seconds(policy.max_backoff)),
        "jitter": policy.jitter,
        "on": [
            str(run_pb2.ErrorCategory.Name(c)).removeprefix(_CATEGORY_PREFIX)
            for c in policy.retry_on
        ],
    }


def _node_pb(node: Mapping[str, Any]) -> translator_pb2.PlanNode:
    msg = translator_pb2.PlanNode(
        id=node["id"],
        type=node["type"],
        data_json=json_text(node.get("data") or {}),
        timeout=duration(node.get("timeout_s")),
        retry_policy=_retry_pb(node["retries"]),
        queue=node["queue"],
        trigger_rule=enum_value(
            translator_pb2.TriggerRule, _RULE_PREFIX + node["trigger_rule"].upper()
        ),
        continue_on_error=bool(node.get("continue_on_error")),
        upstream=_edges(node.get("parents") or []),
        downstream=_edges(node.get("children") or []),
        group=node.get("group") or "",
        body=node.get("body") or [],
    )
    if node.get("label") is not None:
        msg.label = node["label"]
    position = node.get("position")
    if position is not None:
        msg.position.x, msg.position.y = position["x"], position["y"]
    return msg


def _node(msg: translator_pb2.PlanNode) -> dict[str, Any]:
    rule = str(translator_pb2.TriggerRule.Name(msg.trigger_rule))
    return {
        "id": msg.id,
        "type": msg.type,
        "label": msg.label if msg.HasField("label") else None,
        "data": parse_json_object(msg.data_json, field=f"plan.nodes[{msg.id}].data"),
        "timeout_s": seconds(msg.timeout) if msg.HasField("timeout") else None,
        "retries": _retries(msg.retry_policy),
        "queue": msg.queue,
        "trigger_rule": rule.removeprefix(_RULE_PREFIX).lower(),
        "continue_on_error": msg.continue_on_error,
        "parents": _links(msg.upstream),
        "children": _links(msg.downstream),
        "group": msg.group or None,
        "body": list(msg.body) if msg.type == nt.FOREACH else None,
        "position": (
            {"x": msg.position.x, "y": msg.position.y} if msg.HasField("position") else None
        ),
    }


def plan_to_pb(plan: Mapping[str, Any]) -> translator_pb2.Plan:
    """A compiled plan (plain data) as the typed message."""
    return translator_pb2.Plan(
        schema=plan["schema"],
        name=plan["name"],
        description=plan.get("description") or "",
        parameters_schema_json=json_text(plan.get("parameters") or {}),
        nodes=[_node_pb(n) for n in plan["nodes"].values()],
        entry_node_ids=plan["entry"],
    )


def plan_from_pb(msg: translator_pb2.Plan) -> dict[str, Any]:
    """The typed message as the plain data the executor stores: nodes keyed by id, in order."""
    return {
        "schema": msg.schema,
        "name": msg.name,
        "description": msg.description,
        "parameters": parse_json_object(msg.parameters_schema_json, field="plan.parameters"),
        "nodes": {n.id: _node(n) for n in msg.nodes},
        "entry": list(msg.entry_node_ids),
    }
