"""The `conveyor` command line.

Starting it is kept cheap: this module imports only typer, rich and the standard library.
A command imports what it needs when it runs, and the command groups (`runs`, `schedules`,
`alerts`, ...) are loaded only when one of them is invoked, so `conveyor --help` or
`conveyor validate` never load grpc, Celery or SQLAlchemy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.common import (
    DEFAULT_ADDR,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    OutputOpt,
    ServerOpt,
    err,
    out,
    print_diagnostics,
    read_file,
)
from conveyor.cli.credentials import set_session_token
from conveyor.cli.lazy import LazyGroup, add_lazy_group

if TYPE_CHECKING:
    from conveyor.cli.client import Client

app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Conveyor: run visual workflows.",
)
# name, module, attribute, help (the group's own help; a unit test keeps them equal).
GROUPS = [
    ("runs", "conveyor.cli.runs", "runs_app", "Inspect, cancel and approve runs."),
    ("jobs", "conveyor.cli.runs", "jobs_app", "Inspect saved jobs."),
    (
        "schedules",
        "conveyor.cli.schedules",
        "schedules_app",
        "Run jobs once, on an interval or by cron.",
    ),
    ("alerts", "conveyor.cli.alerts", "alerts_app", "Alert rules and fired alerts."),
    ("artifacts", "conveyor.cli.artifacts", "artifacts_app", "List and download run artifacts."),
    (
        "retention",
        "conveyor.cli.retention",
        "retention_app",
        "Retention policies of runs and artifacts.",
    ),
    ("tokens", "conveyor.cli.tokens", "tokens_app", "Create, list and revoke API tokens."),
]
for _name, _module, _attr, _help in GROUPS:
    add_lazy_group(app, _name, _module, _attr, _help)

MAX_PARAMS_FILE = 4 * 1024 * 1024


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


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Workflow JSON file.")],
    output: OutputOpt = "text",
) -> None:
    """Check a workflow; exit 0 when valid, 1 with every diagnostic when not."""
    from conveyor.translator.domain import compile_workflow

    result = compile_workflow(read_file(file))
    shown = result.diagnostics
    if output == "json":
        print_diagnostics(shown, True)
    elif shown:
        print_diagnostics(shown, False)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def _parse_params(pairs: list[str], params_file: Path | None) -> dict[str, Any]:
    from conveyor.cli.params import parse_pairs

    params: dict[str, Any] = {}
    if params_file is not None:
        if params_file.stat().st_size > MAX_PARAMS_FILE:
            err.print(f"error: {params_file} is larger than 4 MiB")
            raise typer.Exit(EXIT_INVALID)
        try:
            loaded = json.loads(read_file(params_file))
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
    from conveyor.cli.rpc import follow
    from conveyor.translator.domain import compile_workflow

    path = Path(target)
    job_id = target
    if path.suffix == ".json" or path.exists():
        text = read_file(path)
        result = compile_workflow(text)
        if not result.ok:
            print_diagnostics(result.diagnostics, output == "json")
            return EXIT_INVALID
        job_id = client.create_job(text).job.job_id
    run = client.start_run(job_id, params)
    if output != "json":
        out.print(f"run {run.run_id} started (job {run.job_name})")
    return follow(client, run, watch=watch, output=output)


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
    import grpc

    from conveyor.cli.client import Client
    from conveyor.cli.rpc import client_for, fail_rpc
    from conveyor.kernel.logging import configure_logging
    from conveyor.kernel.settings import Settings

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
        client = client_for(server)
    try:
        code = _execute(client, target, params, watch=watch, output=output)
    except grpc.RpcError as exc:
        raise fail_rpc(exc) from None
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
    from conveyor.kernel.logging import configure_logging
    from conveyor.kernel.settings import Settings
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

    import asyncio
    import signal

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
    from conveyor.kernel.logging import configure_logging
    from conveyor.kernel.settings import Settings

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if service not in ("translator", "executor", "monitor", "scheduler", "artifacts", "gateway"):
        err.print(f"error: unknown service {service!r}", markup=False)
        raise typer.Exit(EXIT_INVALID)

    import asyncio
    import signal

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
    from conveyor.kernel.logging import configure_logging
    from conveyor.kernel.settings import Settings
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
    from conveyor.kernel.settings import Settings
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
