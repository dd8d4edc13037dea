"""Run and step states: the vocabulary every service stores and reads, defined once.

The names are those of the executor's contract enums `RunState` and `StepState` without
their prefix (`tests/unit/test_node_types.py` holds them together); the executor's engine
decides the transitions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class StepState(StrEnum):
    """Step states, as stored and as named in the proto (without prefix)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class RunState(StrEnum):
    """Run states, as stored and as named in the proto (without prefix)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STEP: Final = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
)
TERMINAL_RUN: Final = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
#: The terminal run states as plain names (what rows and events hold).
TERMINAL_RUN_STATES: Final = frozenset(str(s.value) for s in TERMINAL_RUN)
