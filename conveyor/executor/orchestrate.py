"""Worker-side handling of the node types that are more than one runner call.

- ``logic.foreach`` runs its body per item (`conveyor.executor.foreach`).
- ``action.approval`` renders its message and leaves the step WAITING for ApproveStep: the
  worker slot is free again at once.
- ``action.subworkflow`` starts a run of another job through the executor's StartRun
  (trigger SUBWORKFLOW, parent run and step recorded) and, unless ``wait: false``, leaves the
  step WAITING until the child run ends.
"""

from __future__ import annotations

from dataclasses import replace

import grpc

from conveyor.executor import foreach, runs
from conveyor.executor.runners import ErrorCategory, StepContext, StepOutcome
from conveyor.executor.runners.base import Masker, Renderer, StepError, as_text
from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.kernel.protoconv import json_text
from conveyor.shared import nodetypes as nt

ORCHESTRATED = nt.names(nt.Execution.ORCHESTRATED)
START_TIMEOUT_S = 30.0

_ERROR_CATEGORY = {
    grpc.StatusCode.UNAVAILABLE: ErrorCategory.CONNECTION,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCategory.CONNECTION,
}


def run_foreach(
    claim: runs.Claim, ctx: StepContext, *, progress: foreach.Progress | None = None
) -> runs.Result:
    """A foreach step's result, with the per-body-node summary; `progress` hears item counts."""
    outcome, summary = foreach.run_foreach(claim.node, claim.body, ctx, progress=progress)
    from conveyor.executor.worker import to_result  # the worker imports this module

    masker = Masker(ctx.secrets_to_mask)
    return replace(to_result(outcome), body=masker.value(summary))


def approval_message(claim: runs.Claim, ctx: StepContext) -> str:
    """The approval's rendered, masked message; raises StepError (TEMPLATE) on a bad template."""
    r = Renderer(ctx.node_id, claim.node.get("data") or {}, ctx.scope)
    return Masker(ctx.secrets_to_mask).text(r.field_text("message") or "")


def approval_timeout(claim: runs.Claim) -> float | None:
    """How long an approval waits (None: until decided or cancelled)."""
    value = (claim.node.get("data") or {}).get("timeout_s")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def start_child(
    claim: runs.Claim, ctx: StepContext, stub: executor_service_pb2_grpc.ExecutorServiceStub
) -> run_pb2.Run:
    """Start the sub-workflow run (idempotent per attempt); raises StepError when it cannot."""
    data = claim.node.get("data") or {}
    r = Renderer(ctx.node_id, data, ctx.scope)
    job = as_text(r.native(data.get("job"), "data.job")).strip()
    params = r.native(data.get("parameters") or {}, "data.parameters")
    if not isinstance(params, dict):
        raise StepError(
            ErrorCategory.INTERNAL, f"node {ctx.node_id!r} field data.parameters: expected a map"
        )
    # A secret is not handed on as a parameter (it would be stored with the child run in
    # clear); the child reads secrets.NAME itself.
    params = Masker(ctx.secrets_to_mask).value(params)
    request = executor_service_pb2.StartRunRequest(
        job_id=job,
        parameters_json=json_text(params),
        request_id=f"sub:{ctx.run_id}:{ctx.node_id}:{ctx.attempt}",
        trigger=run_pb2.RUN_TRIGGER_SUBWORKFLOW,
        parent_run_id=ctx.run_id,
        parent_node_id=ctx.node_id,
    )
    try:
        reply = stub.StartRun(request, timeout=START_TIMEOUT_S)
    except grpc.RpcError as err:
        code = err.code()
        details = err.details()
        category = _ERROR_CATEGORY.get(code, ErrorCategory.INTERNAL)
        raise StepError(
            category, f"node {ctx.node_id!r}: cannot start sub-workflow {job!r}: {details}"
        ) from err
    child: run_pb2.Run = reply.run
    return child


def child_started(child: run_pb2.Run) -> StepOutcome:
    """The outcome of a ``wait: false`` sub-workflow step: the child has been started."""
    state = str(run_pb2.RunState.Name(child.state)).removeprefix("RUN_STATE_")
    return StepOutcome(True, {"run_id": child.run_id, "status": state, "outputs": {}})


def child_wait_timeout(claim: runs.Claim) -> float | None:
    """How long a sub-workflow step waits for its child (the node's timeout_s)."""
    value = claim.node.get("timeout_s")
    return float(value) if isinstance(value, int | float) and value > 0 else None
