"""The graph checks: edges and handles, foreach groups, cycles, entries, reachability.

Decisions where the format leaves room:

- ``sourceHandle`` is ``"true"``/``"false"`` out of a condition, a case or
  ``"default"`` out of a switch, null/absent or ``"error"`` out of an action,
  and null/absent out of anything else. ``targetHandle`` is ignored.
- A node's ``parentId`` names the ``logic.foreach`` whose body it is in; bodies
  may nest. An edge joins two nodes of the same body (or two top-level
  nodes): it never crosses a foreach boundary.
- A trigger node takes no incoming edges and sits at the top level. Approvals and
  sub-workflows sit at the top level too: they wait outside a worker, while a foreach
  body runs inside the foreach's worker slot.
- Identical edges (same source, target and handle) count once.

Every walk is iterative and linear in nodes plus edges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.shared import diagnostics as dg
from conveyor.shared import nodetypes as nt
from conveyor.shared.diagnostics import Diagnostics
from conveyor.translator.domain.nodes import Node
from conveyor.translator.domain.nodetypes import is_action, is_trigger

__all__ = ["Graph", "build_graph"]

Link = tuple[str, str | None]
_WAIT_OUTSIDE_WORKER = nt.WAITING


@dataclass
class Graph:
    """Nodes by id with their groups, links, a topological order and what is left over."""

    nodes: dict[str, Node]
    group: dict[str, str | None] = field(default_factory=dict)
    parents: dict[str, list[Link]] = field(default_factory=dict)
    children: dict[str, list[Link]] = field(default_factory=dict)
    edge_index: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    cyclic: set[str] = field(default_factory=set)

    def bodies(self) -> dict[str, list[str]]:
        """The direct body of each foreach with one, in topological order."""
        found: dict[str, list[str]] = {}
        for node_id in self.order:
            group = self.group[node_id]
            if group is not None:
                found.setdefault(group, []).append(node_id)
        return found

    def entries(self) -> list[str]:
        """Top-level nodes without parents, in topological order."""
        return [n for n in self.order if self.group[n] is None and not self.parents[n]]

    def upstream(self) -> dict[str, int]:
        """For each ordered node, a bit set (bit = document index) of the nodes upstream of it.

        A body node's upstream includes its foreach's upstream, not the foreach itself.
        Python ints make each union one fast operation, so this stays linear in edges
        for all practical purposes.
        """
        masks: dict[str, int] = {}
        for node_id in self.order:
            group = self.group[node_id]
            mask = masks.get(group, 0) if group is not None else 0
            for parent, _handle in self.parents[node_id]:
                mask |= masks.get(parent, 0) | (1 << self.nodes[parent].index)
            masks[node_id] = mask
        return masks


def _assign_groups(graph: Graph, out: Diagnostics) -> None:
    nodes = graph.nodes
    for node in nodes.values():
        parent = node.parent_id
        graph.group[node.id] = None
        if parent is None:
            continue
        at = node.path + "/parentId"
        target = nodes.get(parent)
        if target is None or target.type != nt.FOREACH:
            what = "does not exist" if target is None else f"is of type {target.type or 'unknown'}"
            out.error(
                dg.INVALID_FIELD,
                f"node '{node.id}': parentId '{parent}' must name a logic.foreach node, but it "
                f"{what}",
                at,
                node_id=node.id,
            )
        elif node.type is not None and is_trigger(node.type):
            out.error(
                dg.INVALID_FIELD,
                f"trigger node '{node.id}' cannot sit inside foreach '{parent}'",
                at,
                node_id=node.id,
            )
        elif node.type in _WAIT_OUTSIDE_WORKER:
            # A foreach body runs inside the foreach's worker slot; these wait outside one.
            out.error(
                dg.INVALID_FIELD,
                f"{node.type} node '{node.id}' cannot sit inside foreach '{parent}'",
                at,
                node_id=node.id,
            )
        else:
            graph.group[node.id] = parent
    _break_group_loops(graph, out)


def _break_group_loops(graph: Graph, out: Diagnostics) -> None:
    state: dict[str, int] = {}  # 1: on the current chain, 2: settled
    for start in graph.nodes:
        chain: list[str] = []
        current: str | None = start
        while current is not None and current not in state:
            state[current] = 1
            chain.append(current)
            current = graph.group[current]
        if current is not None and state[current] == 1:
            loop = chain[chain.index(current) :]
            for node_id in loop:
                graph.group[node_id] = None
            out.error(
                dg.INVALID_FIELD,
                "foreach nodes contain each other: " + " -> ".join([*loop, loop[0]]),
                graph.nodes[loop[0]].path + "/parentId",
                node_id=loop[0],
            )
        for node_id in chain:
            state[node_id] = 2


def _handle_problem(source: Node, handle: Any, edge_label: str) -> str | None:
    """A problem with the edge's sourceHandle, or None."""
    if source.type is None:
        return None
    shown = "no handle" if handle is None else f"handle {handle!r}"
    if source.type == nt.CONDITION:
        if handle in ("true", "false"):
            return None
        return (
            f"edge {edge_label} leaves condition '{source.id}' with {shown}; "
            'it must be "true" or "false"'
        )
    if source.type == nt.SWITCH:
        cases = source.data.get("cases")
        if not isinstance(cases, list) or handle == "default" or handle in cases:
            return None
        return (
            f"edge {edge_label} leaves switch '{source.id}' with {shown}; it must be one of its "
            'cases or "default"'
        )
    if handle is None or (handle == "error" and is_action(source.type)):
        return None
    allowed = 'no handle or "error"' if is_action(source.type) else "no handle"
    return f"edge {edge_label} leaves {source.type} node '{source.id}' with {shown}; use {allowed}"


def _endpoint(
    raw: dict[str, Any], key: str, index: int, edge_id: str | None, graph: Graph, out: Diagnostics
) -> Node | None:
    value = raw.get(key)
    node = graph.nodes.get(value) if isinstance(value, str) else None
    if node is not None:
        return node
    at = f"/edges/{index}/{key}"
    label = _label(index, edge_id)
    if value is None:
        out.error(dg.MISSING_FIELD, f"edge {label} needs a '{key}'", at, edge_id=edge_id)
    else:
        out.error(
            dg.DANGLING_EDGE,
            f"edge {label} has {key} {str(value)[:80]!r}, which is not a node",
            at,
            edge_id=edge_id,
        )
    return None


def _label(index: int, edge_id: str | None) -> str:
    return f"'{edge_id}'" if edge_id is not None else str(index)


def _edge_id(raw: dict[str, Any], index: int, seen: set[str], out: Diagnostics) -> str | None:
    edge_id = raw.get("id")
    if edge_id is None:
        return None
    if not isinstance(edge_id, str):
        out.error(dg.INVALID_FIELD, f"edge {index}: 'id' must be text", f"/edges/{index}/id")
        return None
    if edge_id in seen:
        out.error(
            dg.INVALID_FIELD,
            f"edge id '{edge_id}' is used twice",
            f"/edges/{index}/id",
            edge_id=edge_id,
        )
    seen.add(edge_id)
    return edge_id


def _check_link(
    graph: Graph, source: Node, target: Node, index: int, edge_id: str | None, out: Diagnostics
) -> bool:
    """Report what is wrong with an edge between existing nodes; False if it cannot be used."""
    label = _label(index, edge_id)
    if target.type is not None and is_trigger(target.type):
        out.error(
            dg.INVALID_FIELD,
            f"edge {label} enters trigger node '{target.id}'; triggers have no parents",
            f"/edges/{index}/target",
            node_id=target.id,
            edge_id=edge_id,
        )
    if graph.group[source.id] != graph.group[target.id]:
        out.error(
            dg.INVALID_FIELD,
            f"edge {label} from '{source.id}' to '{target.id}' crosses a foreach boundary; "
            "edges join nodes of the same foreach body",
            f"/edges/{index}",
            edge_id=edge_id,
        )
        return False
    return True


_NEEDS_HANDLE = frozenset({nt.CONDITION, nt.SWITCH})
_TRIGGERS = frozenset(n for n, t in nt.NODE_TYPES.items() if t.family == "trigger")


def _add_edges(graph: Graph, raw_edges: list[Any], out: Diagnostics) -> None:
    seen_ids: set[str] = set()
    seen_links: set[tuple[str, str, str | None]] = set()
    nodes, group = graph.nodes, graph.group
    for index, raw in enumerate(raw_edges):
        if not isinstance(raw, dict):
            out.error(dg.INVALID_FIELD, f"edge {index} must be an object", f"/edges/{index}")
            continue
        edge_id = None if raw.get("id") is None else _edge_id(raw, index, seen_ids, out)
        # The usual case, an edge between existing nodes, costs two lookups.
        source_id, target_id = raw.get("source"), raw.get("target")
        source = nodes.get(source_id) if type(source_id) is str else None
        target = nodes.get(target_id) if type(target_id) is str else None
        if source is None:
            source = _endpoint(raw, "source", index, edge_id, graph, out)
        if target is None:
            target = _endpoint(raw, "target", index, edge_id, graph, out)
        handle = raw.get("sourceHandle")
        # Most edges carry no handle and leave a node that needs none: nothing to check.
        if source is not None and (handle is not None or source.type in _NEEDS_HANDLE):
            problem = _handle_problem(source, handle, _label(index, edge_id))
            if problem is not None:
                out.error(
                    dg.INVALID_HANDLE,
                    problem,
                    f"/edges/{index}/sourceHandle",
                    node_id=source.id,
                    edge_id=edge_id,
                )
        if source is None or target is None:
            continue
        if (group[source.id] != group[target.id] or target.type in _TRIGGERS) and not _check_link(
            graph, source, target, index, edge_id, out
        ):
            continue
        link_handle = handle if isinstance(handle, str) else None
        link = (source.id, target.id, link_handle)
        if link in seen_links:
            continue
        seen_links.add(link)
        graph.edge_index.setdefault((source.id, target.id), (index, edge_id))
        graph.children[source.id].append((target.id, link_handle))
        graph.parents[target.id].append((source.id, link_handle))


def _sort(graph: Graph) -> None:
    """Kahn's algorithm; a foreach comes before its body (an ordering-only dependency)."""
    indegree = {n: len(graph.parents[n]) for n in graph.nodes}
    members: dict[str, list[str]] = {}
    for node_id, group in graph.group.items():
        if group is not None:
            members.setdefault(group, []).append(node_id)
            indegree[node_id] += 1
    # Two links from one parent (say "true" and "false") count, and are released, twice.
    ready = deque(n for n in graph.nodes if indegree[n] == 0)
    while ready:
        node_id = ready.popleft()
        graph.order.append(node_id)
        for child in _successors(graph, node_id, members):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    graph.cyclic = set(graph.nodes) - set(graph.order)


def _successors(graph: Graph, node_id: str, members: dict[str, list[str]]) -> Iterator[str]:
    for child, _handle in graph.children[node_id]:
        yield child
    yield from members.get(node_id, ())


def _report_cycles(graph: Graph, out: Diagnostics) -> None:
    visited: set[str] = set()
    for start in sorted(graph.cyclic, key=lambda n: graph.nodes[n].index):
        walk: list[str] = []
        position: dict[str, int] = {}
        current: str | None = start
        # Every node left by Kahn's algorithm has a parent that was left too; walking
        # parents must therefore come back to a node already on the walk.
        while current is not None and current not in visited:
            visited.add(current)
            position[current] = len(walk)
            walk.append(current)
            current = next((p for p, _ in graph.parents[current] if p in graph.cyclic), None)
        if current is None or current not in position:
            continue
        loop = list(reversed(walk[position[current] :]))
        first = min(range(len(loop)), key=lambda i: graph.nodes[loop[i]].index)
        loop = loop[first:] + loop[:first]
        edge_index, edge_id = graph.edge_index[(loop[0], loop[1 % len(loop)])]
        out.error(
            dg.CYCLE,
            "cycle: " + " -> ".join([*loop, loop[0]]),
            f"/edges/{edge_index}",
            node_id=loop[0],
            edge_id=edge_id,
        )


def _report_unreachable(graph: Graph, out: Diagnostics) -> None:
    triggers = [
        n
        for n, node in graph.nodes.items()
        if node.type is not None and is_trigger(node.type) and graph.group[n] is None
    ]
    if not triggers:
        return
    reached = set(triggers)
    queue = deque(triggers)
    while queue:
        for child, _handle in graph.children[queue.popleft()]:
            if child not in reached:
                reached.add(child)
                queue.append(child)
    # A body runs when its foreach runs; the topological order lists a foreach first.
    for node_id in graph.order:
        group = graph.group[node_id]
        if group is not None and group in reached:
            reached.add(node_id)
    for node_id, node in graph.nodes.items():
        if node_id not in reached:
            out.warning(
                dg.UNREACHABLE_NODE,
                f"node '{node_id}' cannot be reached from any trigger node and will not run",
                node.path,
                node_id=node_id,
            )


def build_graph(nodes: list[Node], raw_edges: list[Any], out: Diagnostics) -> Graph:
    """Check edges and groups, order the nodes, and report cycles, entries and reachability."""
    graph = Graph({n.id: n for n in nodes})
    for node_id in graph.nodes:
        graph.parents[node_id] = []
        graph.children[node_id] = []
    _assign_groups(graph, out)
    _add_edges(graph, raw_edges, out)
    _sort(graph)
    _report_cycles(graph, out)
    top_level = [n for n in graph.nodes if graph.group[n] is None]
    if not any(not graph.parents[n] for n in top_level):
        message = (
            "the workflow has no nodes"
            if not graph.nodes
            else "the workflow has no entry node: every top-level node has an incoming edge"
        )
        out.error(dg.NO_ENTRY_NODE, message, "/nodes")
    _report_unreachable(graph, out)
    return graph
