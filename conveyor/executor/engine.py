"""Run-time DAG logic: which steps become ready or skipped, and when a run is over.

Pure functions over the compiled plan and a view of step states; no I/O. The worker calls
`advance` inside the transaction that records a step's end, with the run row locked, so two
parents finishing at once cannot both (or neither) start their join.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.kernel.states import TERMINAL_RUN as TERMINAL_RUN
from conveyor.kernel.states import TERMINAL_STEP as TERMINAL_STEP
from conveyor.kernel.states import RunState as RunState
from conveyor.kernel.states import StepState as StepState
from conveyor.shared import nodetypes as nt
from conveyor.shared import retries
from conveyor.shared.categories import DEFAULT_RETRY_ON

BRANCHING_TYPES = frozenset({nt.CONDITION, nt.SWITCH})

SKIP_UPSTREAM_FAILED = "upstream failed"
SKIP_BRANCH_NOT_TAKEN = "branch not taken"
SKIP_NO_UPSTREAM_FAILURE = "no upstream failure"
SKIP_UPSTREAM_SKIPPED = "upstream skipped"


class Edge(StrEnum):
    """What an incoming edge says once its source has ended.

    UNTAKEN is an edge on a path the run did not take: a condition's or switch's other
    handles, the error edge of a node that did not fail, the normal edges of a node whose
    error edge was taken, and every edge out of a node skipped as ``branch not taken``.
    SKIPPED is an edge from a node skipped for another reason (its own rule did not hold).
    """

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"  # from a node skipped because of an upstream failure
    UNTAKEN = "untaken"


@dataclass(frozen=True)
class StepView:
    """What the engine needs to know about a step."""

    state: StepState
    handle: str | None = None  # branch chosen by a condition/switch
    failure_handled: bool = False
    skip_reason: str = ""


@dataclass(frozen=True)
class Decision:
    """A step to queue, or to skip with a reason."""

    node_id: str
    state: StepState
    reason: str = ""


def failure_is_handled(node: Mapping[str, Any]) -> bool:
    """A failure is handled by an outgoing error edge or continue_on_error."""
    if node.get("continue_on_error"):
        return True
    return any(child.get("handle") == "error" for child in node.get("children", []))


def edge_status(parent: Mapping[str, Any], view: StepView, handle: str | None) -> Edge:
    """Status of the edge parent -(handle)-> child given the parent's state."""
    state = view.state
    if state not in TERMINAL_STEP:
        return Edge.PENDING
    if state == StepState.SKIPPED:
        if view.skip_reason == SKIP_BRANCH_NOT_TAKEN:
            return Edge.UNTAKEN
        if view.skip_reason == SKIP_UPSTREAM_FAILED:
            return Edge.UPSTREAM_FAILED
        return Edge.SKIPPED
    if state == StepState.SUCCEEDED:
        if handle == "error":
            return Edge.UNTAKEN
        if parent.get("type") in BRANCHING_TYPES:
            return Edge.SUCCESS if handle == view.handle else Edge.UNTAKEN
        return Edge.SUCCESS
    if state == StepState.CANCELLED:
        return Edge.FAILED
    # FAILED
    has_error_edge = any(c.get("handle") == "error" for c in parent.get("children", []))
    if has_error_edge:
        return Edge.SUCCESS if handle == "error" else Edge.UNTAKEN
    if parent.get("continue_on_error"):
        return Edge.SUCCESS
    return Edge.FAILED


def state_only_edge(parent: Mapping[str, Any], handle: str | None) -> bool:
    """Whether the edge parent -(handle)-> child follows from the parent's state and skip
    reason alone: no branch handle, no error edge, no continue_on_error. The edges of a wide
    join of such parents can then be counted by state instead of read one by one."""
    return (
        handle != "error"
        and parent.get("type") not in BRANCHING_TYPES
        and not parent.get("continue_on_error")
        and not any(c.get("handle") == "error" for c in parent.get("children", []))
    )


def evaluate_rule(rule: str, edges: Iterable[Edge] | Mapping[Edge, int]) -> tuple[bool | None, str]:
    """Apply a trigger rule: (True, "") run; (False, reason) skip; (None, "") wait.

    `edges`: the incoming edges' statuses, or how many edges have each status (a wide
    join's, counted by state: `conveyor.executor.runs.StepCache.counted_edges`).

    A node reached only through untaken edges is skipped as ``branch not taken`` whatever
    its rule; otherwise untaken edges are left out and the rule decides among the others.
    A SKIPPED edge counts as done, neither succeeded nor failed; an UPSTREAM_FAILED edge counts
    as failed (the failure propagates through joins, as Airflow's ``upstream_failed`` does).
    """
    counts = edges if isinstance(edges, Mapping) else Counter(edges)
    total = sum(n for n in counts.values() if n > 0)
    if not total:
        return True, ""

    def count(status: Edge) -> int:
        return max(counts.get(status, 0), 0)

    taken = total - count(Edge.UNTAKEN)
    if not taken:
        return False, SKIP_BRANCH_NOT_TAKEN
    pending = count(Edge.PENDING)
    done = not pending
    success = count(Edge.SUCCESS)
    # As in Airflow, a parent skipped because of an upstream failure counts as failed.
    failed = count(Edge.FAILED) + count(Edge.UPSTREAM_FAILED)
    skip_reason = SKIP_UPSTREAM_FAILED if failed else SKIP_UPSTREAM_SKIPPED
    if rule == "all_success":
        if done and success == taken:
            return True, ""
        if taken - success - pending:  # an edge neither succeeded nor pending
            return False, skip_reason
        return None, ""
    if rule == "all_done":
        return (True, "") if done else (None, "")
    if rule == "one_success":
        if success:
            return True, ""
        return (False, skip_reason) if done else (None, "")
    if rule == "one_failed":
        if failed:
            return True, ""
        return (False, SKIP_NO_UPSTREAM_FAILURE) if done else (None, "")
    if rule == "none_failed":
        if failed:
            return False, SKIP_UPSTREAM_FAILED
        return (True, "") if done else (None, "")
    # none_failed_min_one_success (default)
    if failed:
        return False, SKIP_UPSTREAM_FAILED
    if not done:
        return None, ""
    return (True, "") if success else (False, skip_reason)


def advance(
    plan: Mapping[str, Any],
    changed: Iterable[str],
    view: Callable[[str], StepView],
    counted_edges: Callable[[str], Mapping[Edge, int] | None] | None = None,
) -> list[Decision]:
    """Decide the fate of the PENDING children of the changed steps, propagating skips.

    `view(node_id)` returns a step's current state; decisions made here are visible to later
    checks in the same call (a skip cascades down the graph). `counted_edges(node_id)`, when
    given, may return how many of a node's incoming edges have each status, computed without
    `view` (None: read them from the parents' views); it is not asked for a node with a
    parent decided in this call.
    """
    nodes = plan["nodes"]
    decided: dict[str, Decision] = {}

    def current(node_id: str) -> StepView:
        d = decided.get(node_id)
        return StepView(d.state, skip_reason=d.reason) if d else view(node_id)

    work = [c["node"] for n in changed for c in nodes[n].get("children", [])]
    seen_pending: set[str] = set()
    while work:
        node_id = work.pop()
        if node_id in decided or current(node_id).state != StepState.PENDING:
            continue
        node = nodes[node_id]
        parents = node.get("parents", [])
        edges: Iterable[Edge] | Mapping[Edge, int] | None = None
        if counted_edges is not None and not any(p["node"] in decided for p in parents):
            edges = counted_edges(node_id)
        if edges is None:
            edges = [
                edge_status(nodes[p["node"]], current(p["node"]), p.get("handle")) for p in parents
            ]
        verdict, reason = evaluate_rule(
            node.get("trigger_rule") or "none_failed_min_one_success", edges
        )
        if verdict is None:
            seen_pending.add(node_id)
            continue
        state = StepState.QUEUED if verdict else StepState.SKIPPED
        decided[node_id] = Decision(node_id, state, reason)
        if state == StepState.SKIPPED:
            work.extend(c["node"] for c in node.get("children", []))
    return list(decided.values())


def entry_decisions(plan: Mapping[str, Any]) -> list[Decision]:
    """The steps queued when a run starts."""
    return [Decision(n, StepState.QUEUED) for n in plan["entry"]]


def run_outcome(
    states: Iterable[tuple[StepState, bool]],
) -> RunState | None:
    """Given (state, failure_handled) of every step: the final run state, or None if not over."""
    failed = False
    for state, handled in states:
        if state not in TERMINAL_STEP:
            return None
        if state == StepState.FAILED and not handled:
            failed = True
    return RunState.FAILED if failed else RunState.SUCCEEDED


@dataclass(frozen=True)
class RetryPolicy:
    """A node's retry settings, with the format's defaults."""

    max: int = retries.MAX
    backoff_s: float = retries.BACKOFF_S
    factor: float = retries.FACTOR
    max_backoff_s: float = retries.MAX_BACKOFF_S
    jitter: bool = retries.JITTER
    on: frozenset[str] = frozenset(DEFAULT_RETRY_ON)

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> RetryPolicy:
        """Read `retries` from a plan node."""
        raw = node.get("retries") or {}
        base = cls()
        return cls(
            max=int(raw.get("max", base.max)),
            backoff_s=float(raw.get("backoff_s", base.backoff_s)),
            factor=float(raw.get("factor", base.factor)),
            max_backoff_s=float(raw.get("max_backoff_s", base.max_backoff_s)),
            jitter=bool(raw.get("jitter", base.jitter)),
            on=frozenset(raw["on"]) if "on" in raw else base.on,
        )

    def should_retry(self, attempt: int, category: str | None) -> bool:
        """True when attempt (1-based, just failed) may be followed by another."""
        return attempt <= self.max and (category or "INTERNAL") in self.on

    def delay(self, attempt: int, *, rand: Callable[[], float]) -> float:
        """Seconds to wait before attempt+1; with jitter, uniformly within [0, delay]."""
        delay = min(self.backoff_s * self.factor ** max(attempt - 1, 0), self.max_backoff_s)
        return delay * rand() if self.jitter else delay


def _ancestors(plan: Mapping[str, Any], node_id: str) -> Iterator[str]:
    """The nodes a path of edges leads from to `node_id`, each once, nearest first-ish;
    inside a foreach body (a node with a ``group``), the foreach and its ancestors too."""
    nodes = plan.get("nodes") or {}
    seen: set[str] = {node_id}
    stack = [node_id]
    while stack:
        node = nodes.get(stack.pop()) or {}
        group = node.get("group")
        parents = [p.get("node") for p in node.get("parents") or []]
        for parent in [*parents, group]:
            if isinstance(parent, str) and parent not in seen:
                seen.add(parent)
                stack.append(parent)
                yield parent


def upstream_nodes(plan: Mapping[str, Any], node_id: str) -> set[str]:
    """Every node a path of edges leads from to `node_id` (its ancestors).

    Inside a foreach body (a node with a ``group``), the ancestors of the foreach count too.
    """
    return set(_ancestors(plan, node_id))


def upstream_among(plan: Mapping[str, Any], node_id: str, names: Iterable[str]) -> set[str]:
    """Those of `names` that are upstream of `node_id` (see `upstream_nodes`).

    The walk up the graph stops once every name is found, and does not start for none: a
    step's templates name few steps, if any, and the ancestors of a late step in a long
    chain are many.
    """
    wanted = set(names)
    wanted.discard(node_id)
    found: set[str] = set()
    if wanted:
        for ancestor in _ancestors(plan, node_id):
            if ancestor in wanted:
                found.add(ancestor)
                if len(found) == len(wanted):
                    break
    return found
    nodes = plan.get("nodes") or {}
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        node = nodes.get(stack.pop()) or {}
        group = node.get("group")
        parents = [p.get("node") for p in node.get("parents") or []]
        for parent in [*parents, group]:
            if isinstance(parent, str) and parent not in seen:
                seen.add(parent)
                stack.append(parent)
                if parent in wanted:
                    found.add(parent)
                    if len(found) == len(wanted):
                        return found
    return found
