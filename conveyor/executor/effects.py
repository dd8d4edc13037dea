"""What the run functions hand back: messages to send, events to publish, results to record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conveyor.kernel.outbox import Event


@dataclass(frozen=True)
class Dispatch:
    """A Celery message to send: run step node_id of run_id, attempt N."""

    run_id: str
    node_id: str
    attempt: int
    queue: str
    priority: int = 0


@dataclass
class Effects:
    """What to do after commit."""

    events: list[Event] = field(default_factory=list)
    dispatch: list[Dispatch] = field(default_factory=list)
    # Sub-workflow runs to cancel, each in its own transaction (a child locks after its parent
    # only when it ends, so cancelling it under the parent's lock could deadlock).
    cancel_runs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobPlan:
    """The job version a run executes (from the translator)."""

    job_id: str
    name: str
    version: int
    plan: dict[str, Any]
    # The same plan as the translator's typed message, serialized (GetJob's reply has it);
    # None makes the executor encode `plan`.
    plan_pb: bytes | None = None


@dataclass(frozen=True)
class Claim:
    """A step a worker may now execute, with what it needs to do so."""

    node: dict[str, Any]
    scope: dict[str, Any]
    attempt: int
    # A foreach's body nodes (nested bodies included), by id.
    body: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """How an attempt ended, as recorded by the worker."""

    succeeded: bool
    outputs: dict[str, Any]
    error_category: str | None = None
    error_message: str | None = None
    handle: str | None = None
    exit_code: int | None = None
    wall_s: float | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None
    # For a foreach: how each body node ended over all items, {node_id: {state, message,
    # category}}; recorded on the body's step rows.
    body: dict[str, dict[str, Any]] | None = None
    # Re-attempt at once whatever the retry policy (an attempt lost with its worker).
    reattempt: bool = False
    # The node's data as the attempt rendered it (JSON text, masked, bounded).
    rendered_inputs: str | None = None
