"""Steps that need no worker, executed inside the executor transaction that makes them ready.

`trigger.*`, `logic.condition`, `logic.switch` and `logic.fail` run no process: a trigger
succeeds at once, a branch evaluates one expression, `logic.fail` renders one message. Sending
them through the broker to a worker cost two broker hops each and let a worker's death fail a
run at its trigger. Instead, the transaction that queues such a step (StartRun for the entry
steps, the end of a parent for its successors, a retry's wake-up) also claims it, evaluates it
with the same runner a worker would use, and records its end: the step still goes QUEUED ->
RUNNING -> SUCCEEDED/FAILED with the same events, outputs (`result`, `matched`), handle and
one attempt row (worker ``executor``), and skip propagation follows in the same transaction.

Template rendering happens under the run's lock, so it is bounded by the renderer's budget;
secret values are masked in outputs and messages as on a worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.executor.effects import Result
from conveyor.executor.runners import StepContext, execute
from conveyor.executor.runners.base import ArtifactWriter
from conveyor.kernel.settings import Settings
from conveyor.shared import nodetypes as nt

#: Node types the executor evaluates itself.
INLINE_TYPES = nt.names(nt.Execution.INLINE)
#: The `worker` recorded on an attempt the executor evaluated.
INLINE_WORKER = "executor"
SECRET_PREFIX = "CONVEYOR_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret

_secrets: dict[str, str] | None = None


@dataclass(frozen=True)
class Budget:
    """The template budget inline steps render under: the configured one, as on a worker."""

    max_s: float | None = None
    max_output: int | None = None
    max_steps: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> Budget:
        """The budget `CONVEYOR_TEMPLATE_MAX_*` configure."""
        return cls(
            settings.template_max_s, settings.template_max_output, settings.template_max_steps
        )

    def context_options(self) -> dict[str, Any]:
        """The StepContext fields this budget sets (unset ones keep the context's default)."""
        values = {
            "template_max_s": self.max_s,
            "template_max_output": self.max_output,
            "template_max_steps": self.max_steps,
        }
        return {k: v for k, v in values.items() if v is not None}


_budget = Budget()


def configure(secrets: Mapping[str, str], *, budget: Budget | None = None) -> None:
    """Install the secrets templates of inline steps see (and that are masked), and the
    template budget they render under."""
    global _secrets, _budget
    _secrets = dict(secrets)
    if budget is not None:
        _budget = budget


def _current_secrets() -> dict[str, str]:
    if _secrets is None:  # a process that never configured: the environment's secrets only
        return {
            k.removeprefix(SECRET_PREFIX): v
            for k, v in os.environ.items()
            if k.startswith(SECRET_PREFIX)
        }
    return _secrets


def is_inline(node: Mapping[str, Any]) -> bool:
    """True for a node the executor evaluates without a worker (not inside a foreach body)."""
    return node.get("type") in INLINE_TYPES and node.get("group") is None


class _NoArtifacts:
    """Inline steps store no artifacts (they produce no output stream)."""

    def save(self, run_id: str, node_id: str, attempt: int, name: str, data_iter: Any) -> str:
        """Never called by the inline runners."""
        raise RuntimeError("inline steps store no artifacts")

    def open(
        self, run_id: str, node_id: str, attempt: int, name: str, *, kind: str = ""
    ) -> ArtifactWriter:
        """Never called by the inline runners."""
        raise RuntimeError("inline steps store no artifacts")


def evaluate(
    node: Mapping[str, Any], *, run_id: str, node_id: str, attempt: int, scope: Mapping[str, Any]
) -> Result:
    """Run an inline node once with the worker's runner; never raises."""
    secrets = _current_secrets()
    ctx = StepContext(
        run_id=run_id,
        node_id=node_id,
        attempt=attempt,
        scope={**scope, "secrets": secrets},
        artifacts=_NoArtifacts(),
        secrets_to_mask=[v for v in secrets.values() if v],
        **_budget.context_options(),
    )
    outcome = execute(node, ctx)
    category = outcome.error_category
    return Result(
        succeeded=outcome.succeeded,
        outputs=outcome.outputs,
        error_category=str(category.value) if category is not None else None,
        error_message=outcome.error_message,
        handle=outcome.handle,
        wall_s=None,
        rendered_inputs=outcome.rendered_inputs,
    )
