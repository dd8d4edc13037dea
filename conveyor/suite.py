"""Wiring: the embedded suite in one process, and each service on its own for distributed mode."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from celery import Celery
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)

from conveyor.artifacts import api as artifacts_api
from conveyor.artifacts.client import ArtifactClient, ServiceArtifactSink
from conveyor.artifacts.main import serve_artifacts
from conveyor.auth.authn import Authenticator
from conveyor.auth.tokens import ensure_dev_token
from conveyor.executor import api as executor_api
from conveyor.executor import history as run_history
from conveyor.executor import stats_api as run_stats
from conveyor.executor.celeryapp import make_celery, set_step_handler
from conveyor.executor.worker import WorkerRuntime
from conveyor.kernel import tracing
from conveyor.kernel.aio import cancel_task
from conveyor.kernel.bus import EventBus, make_bus
from conveyor.kernel.db import Database
from conveyor.kernel.grpcserver import (
    TlsFiles,
    replace_port,
    set_internal_credential,
    set_not_serving,
    set_tls,
    start_server,
)
from conveyor.kernel.metrics import serve_metrics
from conveyor.kernel.migrate import upgrade
from conveyor.kernel.settings import Settings
from conveyor.monitor import alert_api, insight_api
from conveyor.monitor import api as monitor_api
from conveyor.monitor import history as event_history
from conveyor.monitor.hub import Hub
from conveyor.monitor.ops import build_ops
from conveyor.scheduler import api as scheduler_api
from conveyor.scheduler.main import serve_scheduler
from conveyor.translator import api as translator_api

log = structlog.get_logger(__name__)
RESTART_DELAY_S = 1.0


def open_database(settings: Settings, *, migrate: bool) -> Database:
    """Connect (creating the embedded data dir) and optionally apply migrations."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    if migrate:
        upgrade(db)
    return db


def install_worker_runtime(
    settings: Settings, app: Celery, db: Database, bus: EventBus
) -> WorkerRuntime:
    """Make this process's Celery tasks execute with the given database and bus."""
    runtime = WorkerRuntime(
        settings=settings,
        db=db,
        bus=bus,
        app=app,
        artifacts=ServiceArtifactSink(ArtifactClient(settings.artifacts_addr)),
    )
    set_step_handler(runtime.handle)
    return runtime


class EmbeddedWorker:
    """A Celery worker (thread pool) running in a background thread of this process."""

    def __init__(self, app: Celery, settings: Settings, runtime: WorkerRuntime) -> None:
        self._runtime = runtime
        self._grace_s = settings.shutdown_grace_s
        self._controller = app.WorkController(
            hostname=f"embedded@{socket.gethostname()}",
            pool_cls="threads",
            concurrency=settings.worker_concurrency,
            queues=[q.strip() for q in settings.worker_queues.split(",") if q.strip()],
            heartbeat_interval=settings.worker_heartbeat_s,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        runtime.set_hostname(str(getattr(self._controller, "hostname", "")))
        self._thread = threading.Thread(
            target=self._controller.start, name="conveyor-embedded-worker", daemon=True
        )

    def start(self) -> None:
        """Start consuming."""
        self._thread.start()

    def stop(self) -> None:
        """Stop consuming; running steps get `CONVEYOR_SHUTDOWN_GRACE_S` to finish, then are
        handed back as new attempts (nothing stays RUNNING)."""
        timer = self._runtime.begin_shutdown(self._grace_s)
        self._controller.stop(in_sighandler=False)
        self._thread.join(timeout=self._grace_s + 15)
        if timer is not None:
            timer.cancel()
        if self._thread.is_alive():  # a step that ignored cancellation: hand it back now
            self._runtime.hand_back_running()


@dataclass
class Suite:
    """A running set of services; `stop()` shuts everything down."""

    settings: Settings
    addresses: dict[str, str] = field(default_factory=dict)
    #: The admin token of an embedded suite (also in <data dir>/token); None with open access.
    token: str | None = None
    _servers: list[Any] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)
    _async_closers: list[Any] = field(default_factory=list)
    _health_servers: list[Any] = field(default_factory=list)

    async def stop(self) -> None:
        """Stop servers, background tasks, the worker and connections, newest first.

        Health turns NOT_SERVING first, so balancers and the gateway's /healthz stop sending
        work while in-flight calls finish.
        """
        for server in [*self._health_servers, *self._servers]:
            await set_not_serving(server)
        for closer in reversed(self._async_closers):
            await closer()
        for task in self._tasks:
            await cancel_task(task)
        for server in reversed(self._servers):
            await server.stop(grace=2)
        for closer in reversed(self._closers):
            await asyncio.to_thread(closer)


def is_loopback(address: str) -> bool:
    """Whether a `host:port` listens on loopback only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_tls(settings: Settings) -> None:
    """Serve and call over TLS when CONVEYOR_TLS_CERT_FILE and _KEY_FILE are set."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        set_tls(None)
        return
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise RuntimeError("CONVEYOR_TLS_CERT_FILE and CONVEYOR_TLS_KEY_FILE go together")
    set_tls(
        TlsFiles.load(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_ca_file,
            settings.tls_server_name,
        )
    )


def configure_internal_credential(settings: Settings) -> None:
    """Use CONVEYOR_INTERNAL_TOKEN (required unless every service shares this process), and
    the TLS settings."""
    configure_tls(settings)
    if settings.internal_token:
        set_internal_credential(settings.internal_token)
    elif not settings.embedded:
        raise RuntimeError(
            "CONVEYOR_INTERNAL_TOKEN must be set (the same secret of at least 16 characters "
            "for every service and worker) in distributed mode"
        )


async def start_embedded(
    settings: Settings, *, worker: bool = True, open_access: bool = False
) -> Suite:
    """Every service and a Celery worker pool in this process (SQLite, memory broker and bus).

    The internal services listen on loopback only. Unless `open_access`, the gateway requires
    tokens and the suite's admin token is written to `<data dir>/token` (mode 0600).
    """
    internal = {
        "translator": settings.translator_addr,
        "executor": settings.executor_addr,
        "monitor": settings.monitor_addr,
        "scheduler": settings.scheduler_addr,
    }
    exposed = [f"{name} {addr}" for name, addr in internal.items() if not is_loopback(addr)]
    if exposed:
        raise ValueError(f"embedded internal services bind loopback only, not {exposed}")
    configure_internal_credential(settings)
    suite = Suite(settings=settings)
    if settings.tls_cert_file is not None:
        # TLS is per process: a later suite or server in this process starts from plaintext.
        suite._closers.insert(0, lambda: set_tls(None))
    tracing.setup("embedded", exporter=settings.trace_exporter)
    db = await asyncio.to_thread(open_database, settings, migrate=True)
    authenticator = Authenticator(None if open_access else db, open_access=open_access)
    if not open_access:
        suite.token = await asyncio.to_thread(ensure_dev_token, db, settings.data_dir / "token")
    bus = make_bus(settings.events_url)
    hub = Hub()
    bus.listen(hub.deliver)
    app = make_celery(settings)
    suite._closers += [db.dispose, bus.close]

    server, port = await start_server([translator_api.registration(db)], settings.translator_addr)
    settings.translator_addr = replace_port(settings.translator_addr, port)
    suite._servers.append(server)

    executor = executor_api.ExecutorServicer(settings=settings, db=db, bus=bus, app=app)
    server, port = await start_server(
        [
            executor_api.registration(executor),
            run_history.registration(db),
            run_stats.registration(db),
        ],
        settings.executor_addr,
    )
    settings.executor_addr = replace_port(settings.executor_addr, port)
    suite._servers.append(server)
    suite._tasks.append(asyncio.create_task(executor.sweep_forever()))
    suite._tasks.append(asyncio.create_task(executor.wake_forever()))
    suite._tasks.append(asyncio.create_task(executor.reap_forever()))

    monitor = monitor_api.MonitorServicer(db=db, hub=hub)
    ops = build_ops(settings=settings, db=db, bus=bus, app=app)
    server, port = await start_server(
        [monitor_api.registration(monitor), *ops.registrations, event_history.registration(db)],
        settings.monitor_addr,
    )
    settings.monitor_addr = replace_port(settings.monitor_addr, port)
    suite._servers.append(server)
    ops.start()
    suite._async_closers.insert(0, ops.stop)

    await _start_scheduler(suite, db)
    await _start_artifacts(suite, db)

    if worker:
        runtime = install_worker_runtime(settings, app, db, bus)
        embedded_worker = EmbeddedWorker(app, settings, runtime)
        embedded_worker.start()
        suite._closers.append(embedded_worker.stop)

    await _start_gateway(suite, mode="embedded", authenticator=authenticator)
    return suite


def routes(settings: Settings) -> dict[str, str]:
    """Which backend address serves each public service."""
    return {
        translator_api.SERVICE_NAME: settings.translator_addr,
        executor_api.SERVICE_NAME: settings.executor_addr,
        monitor_api.SERVICE_NAME: settings.monitor_addr,
        scheduler_api.SERVICE_NAME: settings.scheduler_addr,
        insight_api.SERVICE_NAME: settings.monitor_addr,
        alert_api.SERVICE_NAME: settings.monitor_addr,
        artifacts_api.SERVICE_NAME: settings.artifacts_addr,
        run_history.SERVICE_NAME: settings.executor_addr,
        event_history.SERVICE_NAME: settings.monitor_addr,
    }


def metrics_targets(settings: Settings) -> dict[str, str]:
    """The /metrics URLs of the services whose metrics port is set (for the gateway)."""
    ports = {
        "translator": (settings.translator_addr, settings.translator_metrics_port),
        "executor": (settings.executor_addr, settings.executor_metrics_port),
        "monitor": (settings.monitor_addr, settings.monitor_metrics_port),
        "scheduler": (settings.scheduler_addr, settings.scheduler_metrics_port),
        "artifacts": (settings.artifacts_addr, settings.artifacts_metrics_port),
    }
    return {
        name: f"http://{addr.rsplit(':', 1)[0]}:{port}/metrics"
        for name, (addr, port) in ports.items()
        if port
    }


async def _start_scheduler(suite: Suite, db: Database) -> None:
    """The scheduler service and its firing loops (after the executor has its address)."""
    handle = await serve_scheduler(suite.settings, db)
    suite.settings.scheduler_addr = replace_port(suite.settings.scheduler_addr, handle.port)
    suite._servers.append(handle.server)
    suite._async_closers.append(handle.stop_firing)


async def _start_artifacts(suite: Suite, db: Database) -> None:
    """The artifact service (before the worker, which streams output to it)."""
    handle = await serve_artifacts(suite.settings, db)
    suite.settings.artifacts_addr = replace_port(suite.settings.artifacts_addr, handle.port)
    suite._servers.append(handle.server)
    suite._async_closers.append(handle.stop_loops)


async def _start_gateway(suite: Suite, *, mode: str, authenticator: Authenticator) -> None:
    from conveyor.gateway.main import serve_gateway

    settings = suite.settings
    handle = await serve_gateway(
        authenticator=authenticator,
        cors_origins=settings.cors_origins.split(","),
        max_body_bytes=settings.http_max_body_bytes,
        routes=routes(settings),
        grpc_address=settings.gateway_addr,
        http_address=settings.http_addr,
        mode=mode,
        metrics_targets=metrics_targets(settings) if mode == "distributed" else None,
    )
    settings.gateway_addr = replace_port(settings.gateway_addr, handle.grpc_port)
    settings.http_addr = replace_port(settings.http_addr, handle.http_port)
    suite._async_closers.append(handle.stop)
    suite._health_servers.append(handle._server)
    suite.addresses = {
        "grpc": settings.gateway_addr,
        "http": f"http://{settings.http_addr}",
        "translator": settings.translator_addr,
        "executor": settings.executor_addr,
        "monitor": settings.monitor_addr,
        "scheduler": settings.scheduler_addr,
        "artifacts": settings.artifacts_addr,
    }


async def start_service(name: str, settings: Settings) -> Suite:
    """One service of the distributed mode (translator, executor, monitor, scheduler, artifacts
    or gateway)."""
    configure_internal_credential(settings)
    suite = Suite(settings=settings)
    tracing.setup(name, exporter=settings.trace_exporter)
    if name == "gateway":
        # The gateway owns api_tokens, so it connects to the database too.
        gateway_db = await asyncio.to_thread(open_database, settings, migrate=False)
        suite._closers.append(gateway_db.dispose)
        await _start_gateway(suite, mode="distributed", authenticator=Authenticator(gateway_db))
        return suite
    # /metrics first: a taken port stops the process before any gRPC server exists.
    metrics_server = serve_metrics(
        settings.metrics_host, getattr(settings, f"{name}_metrics_port", 0)
    )
    if metrics_server is not None:
        suite._closers.append(metrics_server[0].shutdown)
    db = await asyncio.to_thread(open_database, settings, migrate=False)
    suite._closers.append(db.dispose)
    if name == "scheduler":
        await _start_scheduler(suite, db)
        suite.addresses = {name: settings.scheduler_addr}
        return suite
    if name == "artifacts":
        await _start_artifacts(suite, db)
        suite.addresses = {name: settings.artifacts_addr}
        return suite
    if name == "translator":
        regs = [translator_api.registration(db)]
        address = settings.translator_addr
    elif name == "executor":
        bus = make_bus(settings.events_url)
        suite._closers.append(bus.close)
        executor = executor_api.ExecutorServicer(
            settings=settings, db=db, bus=bus, app=make_celery(settings)
        )
        regs = [
            executor_api.registration(executor),
            run_history.registration(db),
            run_stats.registration(db),
        ]
        address = settings.executor_addr
        suite._tasks.append(asyncio.create_task(executor.sweep_forever()))
        suite._tasks.append(asyncio.create_task(executor.wake_forever()))
        suite._tasks.append(asyncio.create_task(executor.reap_forever()))
    elif name == "monitor":
        bus = make_bus(settings.events_url)
        suite._closers.append(bus.close)
        hub = Hub()
        bus.listen(hub.deliver)
        ops = build_ops(settings=settings, db=db, bus=bus, app=make_celery(settings))
        regs = [
            monitor_api.registration(monitor_api.MonitorServicer(db=db, hub=hub)),
            *ops.registrations,
            event_history.registration(db),
        ]
        address = settings.monitor_addr
    else:
        raise ValueError(f"unknown service {name!r}")
    server, port = await start_server(regs, address)
    suite._servers.append(server)
    if name == "monitor":
        ops.start()
        suite._async_closers.append(ops.stop)
    suite.addresses = {name: replace_port(address, port)}
    return suite


def run_worker(
    settings: Settings, *, pool: str, concurrency: int, queues: str, hostname: str | None = None
) -> None:
    """A Celery worker process for distributed mode (blocks until stopped)."""
    configure_internal_credential(settings)
    tracing.setup("worker", exporter=settings.trace_exporter)
    app = make_celery(settings)
    db = open_database(settings, migrate=False)
    bus = make_bus(settings.events_url)
    runtime = install_worker_runtime(settings, app, db, bus)

    controllers: list[Any] = []

    @worker_init.connect  # type: ignore[untyped-decorator]
    def _on_init(sender: Any = None, **_: Any) -> None:
        controllers.append(sender)  # its exitcode says how the worker stopped
        runtime.set_hostname(str(getattr(sender, "hostname", "") or ""))

    ready: list[bool] = []  # a worker that never got going is not restarted (no crash loop)

    @worker_ready.connect  # type: ignore[untyped-decorator]
    def _on_ready(**_: Any) -> None:
        ready.append(True)

    @worker_shutting_down.connect  # type: ignore[untyped-decorator]
    def _on_shutdown(**_: Any) -> None:
        # SIGTERM: Celery stops consuming and waits for running steps; ours get the grace
        # period, then are handed back as new attempts so the wait ends.
        runtime.begin_shutdown(settings.shutdown_grace_s)

    @worker_process_init.connect  # type: ignore[untyped-decorator]
    def _after_fork(**_: Any) -> None:
        # A forked pool child must not reuse the parent's database connections.
        db.engine.dispose(close=False)

    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={queues}",
        # Task events only on request: worker events (heartbeats) are sent without them.
        *(["--events"] if settings.celery_task_events else []),
        f"--heartbeat-interval={settings.worker_heartbeat_s}",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        *([f"--hostname={hostname}"] if hostname else []),
    ]
    try:
        app.worker_main(argv)
        code = getattr(controllers[0], "exitcode", None) if controllers else None
        if code not in (0, None) and ready and not runtime.stopping:
            # Celery gave up on an unrecoverable error (kombu can fail this way when the
            # broker restarts under it). Not asked to stop: start afresh in this process's
            # place, so a broker restart never leaves a worker dead; steps it had not finished
            # are re-attempted.
            log.error("worker stopped on an unrecoverable error; restarting", code=code)
            bus.close()
            db.dispose()
            time.sleep(RESTART_DELAY_S)
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606
        if code not in (0, None):
            raise SystemExit(code)
    finally:
        bus.close()
        db.dispose()
