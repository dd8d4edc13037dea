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


_ERROR_CATEGORIES: dict[str, run_pb2.ErrorCategory] = {
    value.name.removeprefix("ERROR_CATEGORY_"): cast("run_pb2.ErrorCategory", value.number)
    for value in run_pb2.ErrorCategory.DESCRIPTOR.values
    if value.number != run_pb2.ERROR_CATEGORY_UNSPECIFIED
}


def error_category(name: str | None) -> run_pb2.ErrorCategory:
    """'TIMEOUT' -> ERROR_CATEGORY_TIMEOUT; none -> unspecified. A name the contract enum
    lacks is a programming error: `conveyor.shared.categories` is held to it by a test."""
    if not name:
        return run_pb2.ERROR_CATEGORY_UNSPECIFIED
    try:
        return _ERROR_CATEGORIES[name]
    except KeyError:
        raise ValueError(f"unknown error category {name!r}") from None
