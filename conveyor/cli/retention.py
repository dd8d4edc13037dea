"""`conveyor retention …`: set, list and delete retention policies; sweep now (or dry run)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console

from conveyor.artifacts.client import ArtifactClient
from conveyor.artifacts.v1 import artifacts_service_pb2
from conveyor.cli.artifacts import DEFAULT_ADDR, ServerOpt
from conveyor.cli.artifacts import _fail as fail
from conveyor.cli.client import gateway_channel, resolve_token

retention_app = typer.Typer(no_args_is_help=True, help="Retention policies of runs and artifacts.")
out = Console()

JobOpt = Annotated[str, typer.Option("--job", help="Job id (default: the default policy).")]


def _gateway_artifacts(server: str | None) -> ArtifactClient:
    """The artifact service through the gateway, as the CLI's token."""
    address = server or DEFAULT_ADDR
    return ArtifactClient(address, channel=gateway_channel(address, resolve_token()))


def _call(server: str | None, fn: Any) -> Any:
    client = _gateway_artifacts(server)
    try:
        return fn(client.stub)
    except grpc.RpcError as exc:
        raise fail(exc) from None
    finally:
        client.close()


@retention_app.command("set")
def set_policy(
    job: JobOpt = "",
    runs_days: Annotated[
        float | None, typer.Option(help="Delete runs that ended more than N days ago.")
    ] = None,
    keep_last: Annotated[int, typer.Option(help="Keep only the newest N runs per job.")] = 0,
    artifacts_days: Annotated[
        float | None, typer.Option(help="Delete artifacts older than N days (default policy).")
    ] = None,
    archive: Annotated[
        bool, typer.Option(help="Archive each run (JSON Lines) before deleting it.")
    ] = False,
    server: ServerOpt = None,
) -> None:
    """Set a job's retention policy (or the default one)."""
    policy = artifacts_service_pb2.RetentionPolicy(
        job_id=job, keep_last_runs=keep_last, archive=archive
    )
    if runs_days is not None:
        policy.keep_runs_for.FromTimedelta(timedelta(days=runs_days))
    if artifacts_days is not None:
        policy.keep_artifacts_for.FromTimedelta(timedelta(days=artifacts_days))
    reply = _call(
        server,
        lambda stub: stub.SetRetentionPolicy(
            artifacts_service_pb2.SetRetentionPolicyRequest(policy=policy), timeout=30
        ),
    )
    print(json.dumps(json_format.MessageToDict(reply.policy, preserving_proto_field_name=True)))


@retention_app.command("list")
def list_policies(server: ServerOpt = None) -> None:
    """Every retention policy as JSON."""
    reply = _call(
        server,
        lambda stub: stub.ListRetentionPolicies(
            artifacts_service_pb2.ListRetentionPoliciesRequest(), timeout=30
        ),
    )
    print(
        json.dumps(
            [
                json_format.MessageToDict(p, preserving_proto_field_name=True)
                for p in reply.policies
            ],
            indent=2,
        )
    )


@retention_app.command("delete")
def delete_policy(job: JobOpt = "", server: ServerOpt = None) -> None:
    """Remove a policy."""
    _call(
        server,
        lambda stub: stub.DeleteRetentionPolicy(
            artifacts_service_pb2.DeleteRetentionPolicyRequest(job_id=job), timeout=30
        ),
    )
    out.print(f"retention policy {'of ' + job if job else '(default)'} removed", markup=False)


@retention_app.command("sweep")
def sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 100,
    server: ServerOpt = None,
) -> None:
    """Apply the policies now; prints the runs deleted (or, with --dry-run, that would be)."""
    reply = _call(
        server,
        lambda stub: stub.SweepRetention(
            artifacts_service_pb2.SweepRetentionRequest(dry_run=dry_run, limit=limit),
            timeout=600,
        ),
    )
    print(
        json.dumps(
            {
                "dry_run": reply.dry_run,
                "run_ids": list(reply.run_ids),
                "artifacts": reply.artifacts,
                "archived": reply.archived,
            },
            indent=2,
        )
    )
