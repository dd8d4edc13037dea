"""Step runners: how a worker executes one node of a workflow.

`execute` dispatches on the node's ``type`` and never raises: every failure,
including a bug, comes back as a failed `StepOutcome` with an `ErrorCategory`.
Secret values (``StepContext.secrets_to_mask``) are replaced by ``***`` in
every output, error message and live-log chunk before they leave this package.

Approval, sub-workflow and foreach nodes are orchestrated by the worker
itself; `execute` reports them as not executable here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog

from conveyor.executor.runners.base import (
    ArtifactSink,
    ErrorCategory,
    Masker,
    ResourceUsage,
    StepContext,
    StepError,
    StepOutcome,
)
from conveyor.executor.runners.command import node_timeout, run_command
from conveyor.executor.runners.http import run_http, run_notify
from conveyor.executor.runners.logic import (
    run_condition,
    run_fail,
    run_sleep,
    run_switch,
    run_trigger,
)
from conveyor.executor.runners.rendered import recording, rendered_inputs
from conveyor.executor.runners.script import run_script
from conveyor.kernel.templating import Budget, RenderCancelled, budget_scope
from conveyor.shared import nodetypes as nt

__all__ = [
    "RUNNABLE_TYPES",
    "ArtifactSink",
    "ErrorCategory",
    "ResourceUsage",
    "StepContext",
    "StepOutcome",
    "execute",
]

log = structlog.get_logger(__name__)

Runner = Callable[[Mapping[str, Any], StepContext, Masker], StepOutcome]

_RUNNERS: dict[str, Runner] = {
    nt.TRIGGER_MANUAL: run_trigger,
    nt.TRIGGER_SCHEDULE: run_trigger,
    nt.TRIGGER_WEBHOOK: run_trigger,
    nt.COMMAND: run_command,
    nt.SCRIPT: run_script,
    nt.SLEEP: run_sleep,
    nt.HTTP: run_http,
    nt.NOTIFY: run_notify,
    nt.CONDITION: run_condition,
    nt.SWITCH: run_switch,
    nt.FAIL: run_fail,
}

#: Node types `execute` runs; the worker handles every other type itself.
RUNNABLE_TYPES: frozenset[str] = frozenset(_RUNNERS)


def execute(node: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    """Execute one compiled plan node once; never raises.

    The outcome carries what the runner rendered (`StepOutcome.rendered_inputs`), also when
    rendering or the step failed.
    """
    masker = Masker(())
    node_type: Any = None
    with recording() as notes:
        try:
            masker = Masker(ctx.secrets_to_mask)
            node_type = node.get("type")
            runner = _RUNNERS.get(node_type) if isinstance(node_type, str) else None
            if runner is None:
                outcome = StepError(
                    ErrorCategory.INTERNAL, f"node type {node_type} is not executed by a runner"
                ).outcome()
            else:
                with budget_scope(_budget(node, ctx)):
                    outcome = runner(node, ctx, masker)
        except StepError as failure:
            outcome = failure.outcome()
        except RenderCancelled as exc:
            outcome = StepError(ErrorCategory.CANCELLED, str(exc)).outcome()
        except Exception as exc:  # the contract is "never raises": a bug becomes a failed step
            log.exception(
                "runner crashed", run_id=ctx.run_id, step_id=ctx.node_id, node_type=node_type
            )
            outcome = StepError(ErrorCategory.INTERNAL, f"{type(exc).__name__}: {exc}").outcome()
    outcome = _masked(outcome, masker)
    try:
        outcome.rendered_inputs = rendered_inputs(node.get("data"), notes, masker.value)
    except Exception:  # a record that cannot be made must not fail the step
        log.warning("rendered inputs not recorded", run_id=ctx.run_id, exc_info=True)
    return outcome


def _budget(node: Mapping[str, Any], ctx: StepContext) -> Budget:
    """The template budget of one attempt; its time counts in the node's timeout."""
    ctx.started = time.monotonic()
    timeout = node_timeout(node, ctx)
    max_s = ctx.template_max_s if timeout is None else min(ctx.template_max_s, timeout)
    return Budget(
        max_s=max_s,
        max_output=ctx.template_max_output,
        max_steps=ctx.template_max_steps,
        is_cancelled=ctx.is_cancelled,
    )


def _masked(outcome: StepOutcome, masker: Masker) -> StepOutcome:
    if not masker.active:
        return outcome
    return replace(
        outcome,
        outputs=masker.value(outcome.outputs),
        error_message=(
            None if outcome.error_message is None else masker.text(outcome.error_message)
        ),
    )
