"""Executor rows -> protos."""

from __future__ import annotations

from typing import Any

from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.executor.v1 import executor_service_pb2 as _svc  # noqa: F401 - registers descriptors
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.ids import as_utc
from conveyor.kernel.protoconv import duration, enum_value, json_text, timestamp


def run_state(name: str) -> Any:
    """'RUNNING' -> RUN_STATE_RUNNING."""
    return int(run_pb2.RunState.Value(f"RUN_STATE_{name}"))


def step_state(name: str) -> Any:
    """'QUEUED' -> STEP_STATE_QUEUED."""
    return int(run_pb2.StepState.Value(f"STEP_STATE_{name}"))


def category(name: str | None) -> Any:
    """'TIMEOUT' -> ERROR_CATEGORY_TIMEOUT; None -> unspecified."""
    if not name:
        return run_pb2.ERROR_CATEGORY_UNSPECIFIED
    try:
        return int(run_pb2.ErrorCategory.Value(f"ERROR_CATEGORY_{name}"))
    except ValueError:
        return run_pb2.ERROR_CATEGORY_INTERNAL


def trigger_name(value: int) -> str:
    """RUN_TRIGGER_SCHEDULE -> 'SCHEDULE' (unspecified -> MANUAL)."""
    if value == run_pb2.RUN_TRIGGER_UNSPECIFIED:
        return "MANUAL"
    return str(run_pb2.RunTrigger.Name(value)).removeprefix("RUN_TRIGGER_")


def execution_pb(ex: ExecutionRow) -> run_pb2.Execution:
    """One attempt."""
    msg = run_pb2.Execution(
        attempt=ex.attempt,
        worker=ex.worker,
        queue=ex.queue,
        task_id=ex.task_id,
        start_time=timestamp(as_utc(ex.started_at)),
        end_time=timestamp(as_utc(ex.ended_at)),
        wall_time=duration(ex.wall_s),
        cpu_user_time=duration(ex.cpu_user_s),
        cpu_system_time=duration(ex.cpu_system_s),
        max_rss_kib=ex.max_rss_kb or 0,
        error_category=category(ex.error_category),
        error_message=ex.error_message,
        state=step_state(ex.state),
        rendered_inputs_json=ex.rendered_inputs or "",
    )
    if ex.exit_code is not None:
        msg.exit_code = ex.exit_code
    return msg


def step_pb(step: StepRow, node: dict[str, Any], executions: list[ExecutionRow]) -> run_pb2.Step:
    """One step with its attempts."""
    outputs: dict[str, Any] = step.outputs or {}
    msg = run_pb2.Step(
        node_id=step.node_id,
        node_type=step.node_type,
        label=str(node.get("label") or ""),
        state=step_state(step.state),
        attempts=len(executions),
        stdout=str(outputs.get("stdout") or ""),
        stderr=str(outputs.get("stderr") or ""),
        stdout_uri=str(outputs.get("stdout_uri") or ""),
        stderr_uri=str(outputs.get("stderr_uri") or ""),
        outputs_json=json_text(outputs),
        error_category=category(step.error_category),
        error_message=step.error_message,
        skip_reason=step.skip_reason,
        start_time=timestamp(as_utc(step.started_at)),
        end_time=timestamp(as_utc(step.ended_at)),
        queue=step.queue,
        failure_handled=step.failure_handled,
        executions=[execution_pb(e) for e in executions],
        child_run_id=step.child_run_id or "",
        wake_time=timestamp(as_utc(step.wake_at)),
    )
    if "output" in outputs:
        msg.output_json = json_text(outputs["output"])
    if isinstance(outputs.get("exit_code"), int):
        msg.exit_code = outputs["exit_code"]
    return msg


def run_pb(
    run: RunRow,
    steps: list[StepRow] | None = None,
    executions: dict[str, list[ExecutionRow]] | None = None,
) -> run_pb2.Run:
    """A run, with steps when given."""
    nodes = run.plan.get("nodes", {})
    return run_pb2.Run(
        run_id=run.id,
        job_id=run.job_id,
        job_name=run.job_name,
        job_version=run.job_version,
        state=run_state(run.state),
        trigger=enum_value(run_pb2.RunTrigger, f"RUN_TRIGGER_{run.trigger}"),
        parameters_json=json_text(run.parameters or {}),
        create_time=timestamp(as_utc(run.created_at)),
        start_time=timestamp(as_utc(run.started_at)),
        end_time=timestamp(as_utc(run.ended_at)),
        error_message=run.error_message,
        priority=run.priority,
        request_id=run.request_id or "",
        last_sequence=run.event_seq,
        parent_run_id=run.parent_run_id or "",
        retry_of_run_id=run.retry_of or "",
        started_by=run.started_by or "",
        parent_node_id=run.parent_node_id or "",
        steps=[
            step_pb(s, nodes.get(s.node_id, {}), (executions or {}).get(s.node_id, []))
            for s in steps or []
        ],
    )
