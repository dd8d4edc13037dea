"""Run and step states as the monitor meets them: names in events (`RUNNING`) and the
executor's contract enums (`run_pb2.RunState`), converted one way and the other here."""

from __future__ import annotations

from typing import cast

from conveyor.executor.v1 import run_pb2


def run_state(name: str) -> run_pb2.RunState:
    """'RUNNING' -> RUN_STATE_RUNNING."""
    return cast("run_pb2.RunState", run_pb2.RunState.Value(f"RUN_STATE_{name}"))


def step_state(name: str) -> run_pb2.StepState:
    """'QUEUED' -> STEP_STATE_QUEUED."""
    return cast("run_pb2.StepState", run_pb2.StepState.Value(f"STEP_STATE_{name}"))


def step_state_name(value: int) -> str:
    """STEP_STATE_QUEUED -> 'QUEUED' (the name events carry)."""
    return str(run_pb2.StepState.Name(value)).removeprefix("STEP_STATE_")


def run_state_name(value: int) -> str:
    """RUN_STATE_FAILED -> 'FAILED' (the name events carry)."""
    return str(run_pb2.RunState.Name(value)).removeprefix("RUN_STATE_")
