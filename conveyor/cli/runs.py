"""`conveyor runs` and `conveyor jobs`: inspect, cancel, retry and approve runs; saved jobs."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated

import grpc
import typer

from conveyor.cli import artifacts as artifacts_cli
from conveyor.cli import history as history_cli
from conveyor.cli import render
from conveyor.cli.client import Client, gateway_channel, resolve_token
from conveyor.cli.common import DEFAULT_ADDR, EXIT_INVALID, OutputOpt, ServerOpt, err, out
from conveyor.cli.rpc import client_for, fail_rpc, follow
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.kernel.protoconv import enum_value
from conveyor.kernel.protojson import to_json_dict
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2
from conveyor.translator.v1 import translator_service_pb2

runs_app = typer.Typer(no_args_is_help=True, help="Inspect, cancel and approve runs.")
jobs_app = typer.Typer(no_args_is_help=True, help="Inspect saved jobs.")
runs_app.command("export")(history_cli.export_runs)
runs_app.command("import")(history_cli.import_runs)

# `runs watch` resumes from its last position after these errors, this many times in a row.
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
WATCH_RECONNECTS = 30


def _client(server: str | None) -> Client:
    return client_for(server)


@runs_app.command("list")
def runs_list(
    job: Annotated[str, typer.Option(help="Only runs of this job id.")] = "",
    state: Annotated[list[str] | None, typer.Option(help="Only runs in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 20,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """List recent runs."""
    client = _client(server)
    try:
        states = [enum_value(run_pb2.RunState, f"RUN_STATE_{s.upper()}") for s in state or []]
    except ValueError as exc:
        err.print(f"error: unknown state in {state}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc
    try:
        reply = client.executor.ListRuns(
            executor_service_pb2.ListRunsRequest(page_size=limit, job_id=job, states=states),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    if output == "json":
        print(json.dumps([render.run_json(r) for r in reply.runs], indent=2))
        return
    if not reply.runs:
        err.print("no runs", markup=False)
        return
    out.print(f"{'RUN':<32}  {'CREATED':<19}  {'STATE':<9}  JOB", markup=False)
    for r in reply.runs:
        when = r.create_time.ToDatetime().isoformat(timespec="seconds")
        out.print(f"{r.run_id}  {when}  {render.run_state(r.state):<9}  {r.job_name}", markup=False)


@runs_app.command("show")
def runs_show(run_id: str, output: OutputOpt = "text", server: ServerOpt = None) -> None:
    """Show a run with its steps."""
    client = _client(server)
    try:
        found = client.get_run(run_id)
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    if output == "json":
        print(json.dumps(render.run_json(found), indent=2))
    else:
        render.run_table(out, found)


@runs_app.command("cancel")
def runs_cancel(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Recorded on the run.")] = "",
    server: ServerOpt = None,
) -> None:
    """Cancel a run; running steps are killed."""
    client = _client(server)
    try:
        reply = client.executor.CancelRun(
            executor_service_pb2.CancelRunRequest(run_id=run_id, reason=reason), timeout=30
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    out.print(f"run {run_id}: {render.run_state(reply.run.state)}")


def _decide(
    run_id: str, node_id: str, comment: str, approver: str, server: str | None, *, approve: bool
) -> None:
    client = _client(server)
    decision = (
        executor_service_pb2.APPROVAL_DECISION_APPROVE
        if approve
        else executor_service_pb2.APPROVAL_DECISION_REJECT
    )
    try:
        reply = client.executor.ApproveStep(
            executor_service_pb2.ApproveStepRequest(
                run_id=run_id,
                node_id=node_id,
                decision=decision,
                comment=comment,
                approver=approver or os.environ.get("USER", ""),
            ),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    out.print(f"run {run_id}: {render.run_state(reply.run.state)}")


CommentOpt = Annotated[str, typer.Option(help="Why; shown on the step.")]
ApproverOpt = Annotated[str, typer.Option(help="Who decides (default: $USER).")]


@runs_app.command("retry")
def runs_retry(
    run_id: str,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Show live progress.")] = False,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """Resume a failed or cancelled run: succeeded steps are reused, the rest run again."""
    client = _client(server)
    try:
        reply = client.executor.RetryRun(
            executor_service_pb2.RetryRunRequest(run_id=run_id), timeout=60
        )
        if output != "json":
            out.print(f"run {reply.run.run_id} started (retry of {run_id})")
        code = follow(client, reply.run, watch=watch, output=output)
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    finally:
        client.close()
    raise typer.Exit(code)


@runs_app.command("approve")
def runs_approve(
    run_id: str,
    node_id: str,
    comment: CommentOpt = "",
    approver: ApproverOpt = "",
    server: ServerOpt = None,
) -> None:
    """Approve a step that waits for approval; the run goes on."""
    _decide(run_id, node_id, comment, approver, server, approve=True)


@runs_app.command("reject")
def runs_reject(
    run_id: str,
    node_id: str,
    comment: CommentOpt = "",
    approver: ApproverOpt = "",
    server: ServerOpt = None,
) -> None:
    """Reject a step that waits for approval; it fails with category REJECTED."""
    _decide(run_id, node_id, comment, approver, server, approve=False)


@runs_app.command("logs")
def runs_logs(
    run_id: str,
    node: Annotated[str | None, typer.Argument(help="Only this step's output.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Print the steps' output (stdout to stdout, stderr to stderr), live with --follow.

    With NODE, output past the live-log cap is printed too, from the step's artifacts.
    """
    client = _client(server)
    cut: dict[tuple[int, int], int] = {}
    try:
        if node:
            found = client.get_run(run_id)
            nodes = [step.node_id for step in found.steps]
            if node not in nodes:
                err.print(
                    f"error: run {run_id} has no node {node!r} (nodes: {', '.join(nodes)})",
                    markup=False,
                )
                raise typer.Exit(EXIT_INVALID)
        events = client.watch(
            run_id,
            types=[event_pb2.EVENT_TYPE_STEP_LOG],
            node_id=node or "",
            history_only=not follow,
        )
        if node:
            events = artifacts_cli.past_live_cap(events, cut)
        render.print_logs(events, prefix=node is None)
        if node:
            artifacts_cli.print_rest(server, run_id, node, cut)
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    finally:
        client.close()


@runs_app.command("watch")
def runs_watch(
    job: Annotated[list[str] | None, typer.Option(help="Only runs of this job id.")] = None,
    state: Annotated[list[str] | None, typer.Option(help="Only changes into this state.")] = None,
    trigger: Annotated[list[str] | None, typer.Option(help="Only runs started so.")] = None,
    after: Annotated[int, typer.Option(help="Resume after this feed position.")] = 0,
    server: ServerOpt = None,
) -> None:
    """Print every run's state changes as they happen (Ctrl-C to stop)."""
    try:
        states = [enum_value(run_pb2.RunState, f"RUN_STATE_{s.upper()}") for s in state or []]
        triggers = [
            enum_value(run_pb2.RunTrigger, f"RUN_TRIGGER_{s.upper()}") for s in trigger or []
        ]
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc
    client = _client(server)
    position, from_now, failures = after, after == 0, 0
    try:
        while True:
            request = monitor_service_pb2.WatchRunsRequest(
                after_sequence=position,
                job_ids=job or [],
                states=states,
                triggers=triggers,
                from_now=from_now,
            )
            try:
                for change in client.monitor.WatchRuns(request):
                    failures = 0
                    position, from_now = change.sequence, False
                    when = change.event.event_time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
                    run_state = render.run_state(change.event.run_state_changed.state)
                    out.print(
                        f"{change.sequence:>8}  {when}  {change.event.run_id}"
                        f"  {run_state:<9}  {change.job_name}",
                        markup=False,
                    )
            except grpc.RpcError as exc:
                if exc.code() not in _RESUMABLE or failures >= WATCH_RECONNECTS:  # type: ignore[attr-defined]
                    raise fail_rpc(exc) from None
                failures += 1
                where = f"after {position}" if not from_now else "from now"
                err.print(f"connection lost; resuming {where}", markup=False)
                time.sleep(min(0.5 * 2**failures, 10.0))
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


@jobs_app.command("list")
def jobs_list(output: OutputOpt = "text", server: ServerOpt = None) -> None:
    """List saved jobs."""
    client = _client(server)
    try:
        reply = client.translator.ListJobs(
            translator_service_pb2.ListJobsRequest(page_size=500), timeout=30
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    if output == "json":
        jobs = [to_json_dict(j, every_field=False) for j in reply.jobs]
        print(json.dumps(jobs, indent=2))
        return
    for j in reply.jobs:
        out.print(f"{j.job_id}  v{j.version:<3} {j.node_count:>5} nodes  {j.name}", markup=False)


@jobs_app.command("show")
def jobs_show(job: str, output: OutputOpt = "json", server: ServerOpt = None) -> None:
    """Show a job's latest definition (and, with --output json, its plan)."""
    client = _client(server)
    try:
        reply = client.translator.GetJob(
            translator_service_pb2.GetJobRequest(job_id=job), timeout=30
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    data = to_json_dict(reply.job, every_field=False)
    if output != "json":
        data.pop("plan", None)
    print(json.dumps(data, indent=2))


@jobs_app.command("webhook")
def jobs_webhook(job: str, server: ServerOpt = None) -> None:
    """Create or rotate the job's webhook secret; print the URL and the secret (shown once)."""
    stub = gateway_service_pb2_grpc.GatewayServiceStub(
        gateway_channel(server or DEFAULT_ADDR, resolve_token())
    )
    try:
        reply = stub.RotateWebhookSecret(
            gateway_service_pb2.RotateWebhookSecretRequest(job_id=job), timeout=30
        )
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
    out.print(f"POST {reply.url}", markup=False)
    out.print(f"secret {reply.secret}", markup=False)
    out.print(
        "sign: X-Conveyor-Signature: sha256=HMAC_SHA256(secret, '<timestamp>.<body>'), "
        "with X-Conveyor-Timestamp (Unix seconds) and X-Conveyor-Delivery (unique id)",
        markup=False,
    )
