"""The node types of the workflow language, in one place: name, family, who runs a node of
the type, and the outputs its steps publish (`steps.<id>.<output>`).

The translator checks each type's options against its own schema (`translator/domain/
nodetypes.py`), the executor runs each with a runner (`executor/runners`) or coordinates it
(`executor/orchestrate.py`), the executor decides the inline ones in its own transaction
(`executor/inline.py`), and docs/workflow-format.md documents them; tests hold each of those
to exactly this list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Execution(StrEnum):
    """Who carries out a step of the type."""

    #: Decided by the executor in the transaction that makes the step ready; no worker.
    INLINE = "inline"
    #: A worker runs it with the type's runner.
    WORKER = "worker"
    #: A worker coordinates it (its items, a wait for a decision or a child run).
    ORCHESTRATED = "orchestrated"


@dataclass(frozen=True)
class NodeType:
    """One node type of the language."""

    name: str
    execution: Execution
    outputs: tuple[str, ...]
    #: Waits for something outside the worker (a decision, a child run); not in a foreach body.
    waits: bool = False

    @property
    def family(self) -> str:
        """`trigger`, `action` or `logic`."""
        return self.name.split(".", 1)[0]


TRIGGER_MANUAL: Final = "trigger.manual"
TRIGGER_SCHEDULE: Final = "trigger.schedule"
TRIGGER_WEBHOOK: Final = "trigger.webhook"
COMMAND: Final = "action.command"
SCRIPT: Final = "action.script"
HTTP: Final = "action.http"
SLEEP: Final = "action.sleep"
APPROVAL: Final = "action.approval"
NOTIFY: Final = "action.notify"
SUBWORKFLOW: Final = "action.subworkflow"
CONDITION: Final = "logic.condition"
SWITCH: Final = "logic.switch"
FOREACH: Final = "logic.foreach"
FAIL: Final = "logic.fail"

_PROCESS_OUTPUTS: Final = ("exit_code", "stdout", "stderr", "output", "duration_ms")

_TYPES: Final = (
    NodeType(TRIGGER_MANUAL, Execution.INLINE, ()),
    NodeType(TRIGGER_SCHEDULE, Execution.INLINE, ()),
    NodeType(TRIGGER_WEBHOOK, Execution.INLINE, ()),
    NodeType(COMMAND, Execution.WORKER, _PROCESS_OUTPUTS),
    NodeType(SCRIPT, Execution.WORKER, _PROCESS_OUTPUTS),
    NodeType(HTTP, Execution.WORKER, ("status", "headers", "body", "output")),
    NodeType(SLEEP, Execution.WORKER, ()),
    NodeType(APPROVAL, Execution.ORCHESTRATED, ("approved", "by", "comment"), waits=True),
    NodeType(NOTIFY, Execution.WORKER, ("status",)),
    NodeType(SUBWORKFLOW, Execution.ORCHESTRATED, ("run_id", "status", "outputs"), waits=True),
    NodeType(CONDITION, Execution.INLINE, ("result",)),
    NodeType(SWITCH, Execution.INLINE, ("matched",)),
    NodeType(FOREACH, Execution.ORCHESTRATED, ("results",)),
    NodeType(FAIL, Execution.INLINE, ()),
)

#: Every node type by name, in the order the docs list them.
NODE_TYPES: Final[Mapping[str, NodeType]] = {t.name: t for t in _TYPES}


def names(execution: Execution | None = None) -> frozenset[str]:
    """The names of the node types (carried out by `execution`, when given)."""
    return frozenset(t.name for t in _TYPES if execution is None or t.execution == execution)


#: Types whose steps wait outside a worker: not allowed in a foreach body.
WAITING: Final = frozenset(t.name for t in _TYPES if t.waits)
