"""The `conveyor` command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console

from conveyor.cli import artifacts as artifacts_cli
from conveyor.cli import history as history_cli
from conveyor.cli import render
from conveyor.cli.alerts import alerts_app
from conveyor.cli.client import Client, resolve_token, set_session_token
from conveyor.cli.params import parse_pairs
from conveyor.cli.retention import retention_app
from conveyor.cli.schedules import schedules_app
from conveyor.cli.tokens import tokens_app
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.kernel.grpcserver import error_details
from conveyor.kernel.logging import configure_logging
from conveyor.kernel.protojson import to_json_dict
from conveyor.kernel.settings import Settings
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2
from conveyor.translator.domain import compile_workflow
from conveyor.translator.v1 import translator_service_pb2

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Conveyor: run visual workflows."
)
runs_app = typer.Typer(no_args_is_help=True, help="Inspect, cancel and approve runs.")
jobs_app = typer.Typer(no_args_is_help=True, help="Inspect saved jobs.")
app.add_typer(runs_app, name="runs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(schedules_app, name="schedules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(artifacts_cli.artifacts_app, name="artifacts")
app.add_typer(retention_app, name="retention")
runs_app.command("export")(history_cli.export_runs)
runs_app.command("import")(history_cli.import_runs)
app.add_typer(tokens_app, name="tokens")

out = Console()
err = Console(stderr=True)

DEFAULT_ADDR = "127.0.0.1:50051"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
MAX_PARAMS_FILE = 4 * 1024 * 1024

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", envvar="CONVEYOR_ADDR", help="Gateway address (default: local conveyor dev)."
    ),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]
# `runs watch` resumes from its last position after these errors, this many times in a row.
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
WATCH_RECONNECTS = 30


@app.callback()
def _global(
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CONVEYOR_TOKEN",
            help="API token (default: ./.conveyor/token, written by `conveyor dev`).",
        ),
    ] = None,
) -> None:
    """Conveyor: run visual workflows."""
    set_session_token(token)


def _client(server: str | None) -> Client:
    return Client(server or DEFAULT_ADDR, token=resolve_token())


def _fail_rpc(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code()  # type: ignore[attr-defined]
    err.print(f"error: {code.name}: {exc.details()}", markup=False)  # type: ignore[attr-defined]
    _reason, violations = error_details(exc)
    for field, reason, description in violations:
        err.print(f"  {reason or 'INVALID'} at {field}: {description}", markup=False)
    if code == grpc.StatusCode.UNAVAILABLE:
        err.print("  is a server running? start one with `conveyor dev`, or pass --server")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        err.print(
            "  pass --token or set CONVEYOR_TOKEN (`conveyor dev` writes its admin token to "
            ".conveyor/token)"
        )
    invalid = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    return typer.Exit(EXIT_INVALID if invalid else EXIT_FAILED)


def _print_diagnostics(diagnostics: list[Any], as_json: bool) -> None:
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "code": d.code,
                        "severity": d.severity,
                        "node_id": d.node_id,
                        "edge_id": d.edge_id,
                        "path": d.path,
                        "message": d.message,
                        "line": d.line,
                        "column": d.column,
                    }
                    for d in diagnostics
                ]
            )
        )
        return
    for d in diagnostics:
        where = (
            f"node {d.node_id!r}"
            if d.node_id
            else (f"edge {d.edge_id!r}" if d.edge_id else "document")
        )
        pos = f" (line {d.line}, column {d.column})" if d.line else ""
        err.print(
            f"{d.severity}: {d.code} at {d.path or '/'} [{where}]{pos}: {d.message}", markup=False
        )


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: cannot read {path}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Workflow JSON file.")],
    output: OutputOpt = "text",
) -> None:
    """Check a workflow; exit 0 when valid, 1 with every diagnostic when not."""
    result = compile_workflow(_read_file(file))
    shown = result.diagnostics
    if output == "json":
        _print_diagnostics(shown, True)
    elif shown:
        _print_diagnostics(shown, False)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _parse_params(pairs: list[str], params_file: Path | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_file is not None:
        if params_file.stat().st_size > MAX_PARAMS_FILE:
            err.print(f"error: {params_file} is larger than 4 MiB")
            raise typer.Exit(EXIT_INVALID)
        try:
            loaded = json.loads(_read_file(params_file))
        except json.JSONDecodeError as exc:
            err.print(f"error: {params_file} is not valid JSON: {exc}", markup=False)
            raise typer.Exit(EXIT_INVALID) from exc
        if not isinstance(loaded, dict):
            err.print(f"error: {params_file} must hold a JSON object")
            raise typer.Exit(EXIT_INVALID)
        params.update(loaded)
    return parse_pairs(pairs, err, into=params)


def _execute(
    client: Client, target: str, params: dict[str, Any], *, watch: bool, output: str
) -> int:
    path = Path(target)
    job_id = target
    if path.suffix == ".json" or path.exists():
        text = _read_file(path)
        result = compile_workflow(text)
        if not result.ok:
            _print_diagnostics(result.diagnostics, output == "json")
            return EXIT_INVALID
        job_id = client.create_job(text).job.job_id
    run = client.start_run(job_id, params)
    if output != "json":
        out.print(f"run {run.run_id} started (job {run.job_name})")
    return _follow(client, run, watch=watch, output=output)


def _follow(client: Client, run: run_pb2.Run, *, watch: bool, output: str) -> int:
    """Wait for a run to end (printing its events with watch); the exit code for its state."""
    for ev in client.watch(run.run_id):
        if watch and output != "json":
            out.print(render.event_line(ev))
    final = client.get_run(run.run_id)
    if output == "json":
        print(json.dumps(render.run_json(final), indent=2))
    else:
        render.run_table(out, final)
    return EXIT_OK if final.state == run_pb2.RUN_STATE_SUCCEEDED else EXIT_FAILED


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="Workflow JSON file, or a job id or name.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (value may be JSON).")
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option("--params-file", help="JSON object of parameters.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Show every step change live.")
    ] = False,
    output: OutputOpt = "text",
    server: ServerOpt = None,
    embedded: Annotated[
        bool,
        typer.Option("--embedded", help="Start an embedded suite in this process for the run."),
    ] = False,
) -> None:
    """Create the job (for a file), start a run, wait for it; exit 0 if it succeeded."""
    params = _parse_params(param or [], params_file)
    background = None
    if embedded:
        from conveyor.cli.background import BackgroundSuite

        configure_logging(level="WARNING", json=False)
        settings = Settings(
            gateway_addr="127.0.0.1:0",
            http_addr="127.0.0.1:0",
            translator_addr="127.0.0.1:0",
            executor_addr="127.0.0.1:0",
            monitor_addr="127.0.0.1:0",
            scheduler_addr="127.0.0.1:0",
            artifacts_addr="127.0.0.1:0",
        )
        background = BackgroundSuite(settings)
        suite = background.start()
        server = suite.addresses["grpc"]
        client = Client(server, token=suite.token)
    else:
        client = _client(server)
    try:
        code = _execute(client, target, params, watch=watch, output=output)
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
    finally:
        client.close()
        if background is not None:
            background.stop()
    raise typer.Exit(code)


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="Where SQLite and artifacts live.")] = Path(
        ".conveyor"
    ),
    grpc_addr: Annotated[str, typer.Option("--grpc", help="Public gRPC address.")] = DEFAULT_ADDR,
    http_addr: Annotated[
        str, typer.Option("--http", help="HTTP/JSON + SSE address.")
    ] = "127.0.0.1:8080",
    workers: Annotated[int, typer.Option(help="Worker threads.")] = 4,
    open_access: Annotated[
        bool,
        typer.Option("--open", help="No authentication (refused unless bound to loopback)."),
    ] = False,
) -> None:
    """Every service and a worker pool in one process (SQLite, in-process broker and bus).

    Prints an admin token and writes it to <data dir>/token (mode 0600), where the CLI finds it.
    """
    from conveyor.suite import is_loopback

    if open_access and not (is_loopback(grpc_addr) and is_loopback(http_addr)):
        err.print(
            f"error: --open serves without authentication, so it binds loopback only; "
            f"not gRPC {grpc_addr} / HTTP {http_addr}",
            markup=False,
        )
        raise typer.Exit(EXIT_INVALID)
    base = Settings()
    configure_logging(level=base.log_level, json=base.log_json)
    settings = base.model_copy(
        update={
            "data_dir": data_dir,
            "gateway_addr": grpc_addr,
            "http_addr": http_addr,
            "worker_concurrency": workers,
            "translator_addr": "127.0.0.1:0",
            "executor_addr": "127.0.0.1:0",
            "monitor_addr": "127.0.0.1:0",
            "scheduler_addr": "127.0.0.1:0",
            "artifacts_addr": "127.0.0.1:0",
            "broker_url": "memory://",
            "events_url": "memory://",
        }
    )

    async def main() -> None:
        from conveyor.suite import start_embedded

        suite = await start_embedded(settings, open_access=open_access)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(f"conveyor dev: gRPC {suite.addresses['grpc']}  HTTP {suite.addresses['http']}")
        err.print(f"  data dir {settings.data_dir.resolve()}  (Ctrl-C to stop)")
        if suite.token is None:
            err.print("  OPEN: no authentication; anyone on this machine may do anything")
        else:
            err.print(f"  admin token {suite.token}")
            err.print(f"  (saved in {(settings.data_dir / 'token').resolve()}, mode 0600)")
        await stop.wait()
        err.print("stopping...")
        await suite.stop()

    asyncio.run(main())


@app.command()
def serve(
    service: Annotated[
        str, typer.Argument(help="translator, executor, monitor, scheduler, artifacts or gateway.")
    ],
) -> None:
    """Run one service (distributed mode; configured by CONVEYOR_* variables)."""
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if service not in ("translator", "executor", "monitor", "scheduler", "artifacts", "gateway"):
        err.print(f"error: unknown service {service!r}", markup=False)
        raise typer.Exit(EXIT_INVALID)

    async def main() -> None:
        from conveyor.suite import start_service

        suite = await start_service(service, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(f"conveyor {service}: {suite.addresses}")
        await stop.wait()
        await suite.stop()

    asyncio.run(main())


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="Comma-separated queues.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Parallel steps.")] = None,
    pool: Annotated[str, typer.Option(help="threads or prefork.")] = "threads",
    hostname: Annotated[
        str | None, typer.Option(help="Celery node name, e.g. w1@%h (default celery@host).")
    ] = None,
) -> None:
    """A Celery worker executing steps (distributed mode)."""
    from conveyor.suite import run_worker

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    run_worker(
        settings,
        pool=pool,
        concurrency=concurrency or settings.worker_concurrency,
        queues=queues or settings.worker_queues,
        hostname=hostname,
    )


@app.command()
def migrate() -> None:
    """Apply database migrations (CONVEYOR_DATABASE_URL)."""
    from conveyor.kernel.migrate import current_revision, upgrade
    from conveyor.suite import open_database

    settings = Settings()
    db = open_database(settings, migrate=False)
    try:
        before = current_revision(db)
        upgrade(db)
        after = current_revision(db)
    finally:
        db.dispose()
    if before == after:
        err.print(f"database is up to date (revision {after})", markup=False)
    elif before is None:
        err.print(f"created the database schema (revision {after})", markup=False)
    else:
        err.print(f"migrated the database from revision {before} to {after}", markup=False)


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
        states = [run_pb2.RunState.Value(f"RUN_STATE_{s.upper()}") for s in state or []]
    except ValueError as exc:
        err.print(f"error: unknown state in {state}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc
    try:
        reply = client.executor.ListRuns(
            executor_service_pb2.ListRunsRequest(page_size=limit, job_id=job, states=states),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
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
        code = _follow(client, reply.run, watch=watch, output=output)
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
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
        states = [run_pb2.RunState.Value(f"RUN_STATE_{s.upper()}") for s in state or []]
        triggers = [run_pb2.RunTrigger.Value(f"RUN_TRIGGER_{s.upper()}") for s in trigger or []]
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
                    out.print(
                        f"{change.sequence:>8}  {when}  {change.event.run_id}"
                        f"  {render.run_state(change.event.run_state):<9}  {change.job_name}",
                        markup=False,
                    )
            except grpc.RpcError as exc:
                if exc.code() not in _RESUMABLE or failures >= WATCH_RECONNECTS:  # type: ignore[attr-defined]
                    raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
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
        raise _fail_rpc(exc) from None
    data = to_json_dict(reply.job, every_field=False)
    if output != "json":
        data.pop("plan", None)
    print(json.dumps(data, indent=2))


@jobs_app.command("webhook")
def jobs_webhook(job: str, server: ServerOpt = None) -> None:
    """Create or rotate the job's webhook secret; print the URL and the secret (shown once)."""
    from conveyor.cli.client import gateway_channel
    from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc

    stub = gateway_service_pb2_grpc.GatewayServiceStub(
        gateway_channel(server or DEFAULT_ADDR, resolve_token())
    )
    try:
        reply = stub.RotateWebhookSecret(
            gateway_service_pb2.RotateWebhookSecretRequest(job_id=job), timeout=30
        )
    except grpc.RpcError as exc:
        raise _fail_rpc(exc) from None
    out.print(f"POST {reply.url}", markup=False)
    out.print(f"secret {reply.secret}", markup=False)
    out.print(
        "sign: X-Conveyor-Signature: sha256=HMAC_SHA256(secret, '<timestamp>.<body>'), "
        "with X-Conveyor-Timestamp (Unix seconds) and X-Conveyor-Delivery (unique id)",
        markup=False,
    )
