"""Small builders for workflow documents used across the translator tests."""

from __future__ import annotations

from typing import Any


def node(node_id: str, node_type: str = "action.command", **data: Any) -> dict[str, Any]:
    """A node; a command node gets ``argv: ["true"]`` unless data says otherwise."""
    if node_type == "action.command" and "argv" not in data and "command" not in data:
        data = {"argv": ["true"], **data}
    return {"id": node_id, "type": node_type, "data": data}


def edge(source: str, target: str, handle: str | None = None, **extra: Any) -> dict[str, Any]:
    """An edge; `handle` becomes its ``sourceHandle``."""
    return {"source": source, "target": target, "sourceHandle": handle, **extra}


def workflow(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """A conveyor/v1 document named ``test``."""
    return {"schema": "conveyor/v1", "name": "test", "nodes": nodes, "edges": edges or [], **fields}


def chain(count: int) -> dict[str, Any]:
    """A straight line of `count` command nodes, each echoing the previous one's stdout."""
    nodes = [node("n0")] + [
        node(f"n{i}", argv=["echo", f"{{{{ steps.n{i - 1}.stdout }}}}"]) for i in range(1, count)
    ]
    edges = [edge(f"n{i}", f"n{i + 1}") for i in range(count - 1)]
    return workflow(nodes, edges)
