"""Checking the ``nodes`` list: ids, types, ``parentId``, options and data of each node."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.shared import diagnostics as dg
from conveyor.shared.diagnostics import Diagnostics
from conveyor.translator.domain.nodetypes import NODE_TYPES, check_data
from conveyor.translator.domain.options import Options, check_options

__all__ = ["ID_PATTERN", "Node", "check_nodes"]

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class Node:
    """A node with a valid, unique id; `type` is None when missing or unknown."""

    index: int
    id: str
    type: str | None
    raw_data: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    options: Options = field(default_factory=Options)
    parent_id: str | None = None

    @property
    def path(self) -> str:
        """The JSON pointer of this node in the document."""
        return f"/nodes/{self.index}"


def _check_id(raw: dict[str, Any], index: int, out: Diagnostics) -> str | None:
    node_id = raw.get("id")
    at = f"/nodes/{index}/id"
    if node_id is None:
        out.error(dg.MISSING_FIELD, f"node {index} needs an 'id'", at)
        return None
    if not isinstance(node_id, str) or ID_PATTERN.fullmatch(node_id) is None:
        out.error(
            dg.INVALID_FIELD,
            f"node {index} has id {str(node_id)[:80]!r}; ids are 1 to 64 letters, digits, "
            "'_' or '-'",
            at,
        )
        return None
    return node_id


def _check_type(raw: dict[str, Any], node_id: str, index: int, out: Diagnostics) -> str | None:
    node_type = raw.get("type")
    at = f"/nodes/{index}/type"
    if node_type is None:
        out.error(dg.MISSING_FIELD, f"node '{node_id}' needs a 'type'", at, node_id=node_id)
        return None
    if not isinstance(node_type, str) or node_type not in NODE_TYPES:
        out.error(
            dg.UNKNOWN_NODE_TYPE,
            f"node '{node_id}' has unknown type {str(node_type)[:80]!r}; known types are "
            + ", ".join(NODE_TYPES),
            at,
            node_id=node_id,
        )
        return None
    return node_type


def _check_parent(raw: dict[str, Any], node_id: str, index: int, out: Diagnostics) -> str | None:
    parent = raw.get("parentId")
    if parent is None:
        return None
    if not isinstance(parent, str) or not parent:
        out.error(
            dg.INVALID_FIELD,
            f"node '{node_id}': 'parentId' must be the id of a logic.foreach node",
            f"/nodes/{index}/parentId",
            node_id=node_id,
        )
        return None
    return parent


def check_nodes(raw_nodes: list[Any], out: Diagnostics) -> list[Node]:
    """Check every node independently; returns those with a valid, unique id."""
    nodes: list[Node] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            out.error(dg.INVALID_FIELD, f"node {index} must be an object", f"/nodes/{index}")
            continue
        node_id = _check_id(raw, index, out)
        duplicate = node_id is not None and node_id in first_index
        if node_id is not None and duplicate:
            out.error(
                dg.DUPLICATE_NODE_ID,
                f"node id '{node_id}' is used by nodes {first_index[node_id]} and {index}",
                f"/nodes/{index}/id",
                node_id=node_id,
            )
        # A node without a usable id is named "#<index>" in messages but carries no node_id.
        label = node_id if node_id is not None else f"#{index}"
        local = out if node_id is not None else Diagnostics()
        node_type = _check_type(raw, label, index, local)
        raw_data = raw.get("data")
        data_path = f"/nodes/{index}/data"
        if raw_data is None:
            raw_data = {}
        elif not isinstance(raw_data, dict):
            local.error(
                dg.INVALID_FIELD,
                f"node '{label}': 'data' must be an object",
                data_path,
                node_id=label,
            )
            raw_data = {}
        options = check_options(raw_data, data_path, node_id=label, out=local)
        data = check_data(node_type, raw_data, data_path, label, local) if node_type else {}
        parent = _check_parent(raw, label, index, local)
        if local is not out:
            out.extend([replace(d, node_id=None) for d in local.items])
        if node_id is None or duplicate:
            continue
        first_index[node_id] = index
        nodes.append(Node(index, node_id, node_type, raw_data, data, options, parent))
    return nodes
