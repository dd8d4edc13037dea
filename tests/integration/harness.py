"""Start Conveyor for integration tests: embedded in-process, or distributed as OS processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conveyor.artifacts.client import ArtifactClient
from conveyor.cli.background import BackgroundSuite
from conveyor.cli.client import gateway_channel
from conveyor.kernel.grpcserver import internal_credential, sync_channel
from conveyor.kernel.settings import Settings
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2


def read_artifact(gateway: str, uri: str, token: str | None) -> str:
    """The text of a step output's artifact (`artifact://<id>`), through the gateway."""
    client = ArtifactClient(gateway, channel=gateway_channel(gateway, token))
    try:
        return b"".join(client.download(uri.removeprefix("artifact://"))).decode()
    finally:
        client.close()


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(
    address: str, *, timeout: float = 60.0, procs: list[subprocess.Popen[bytes]] | None = None
) -> None:
    """Block until the gRPC health service at address answers SERVING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs or []:
            if p.poll() is not None:
                raise RuntimeError(f"process {p.args} exited with {p.returncode}")
        with grpc.insecure_channel(address) as ch:
            try:
                reply = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"{address} did not become healthy")


def http_headers(stack: dict[str, Any]) -> dict[str, str]:
    """Headers that authenticate an HTTP request to the stack as its admin token."""
    return {"Authorization": f"Bearer {stack['token']}"}


def http_client(stack: dict[str, Any], *, timeout: float = 30) -> httpx.Client:
    """An httpx client of the stack's HTTP API that sends its admin token."""
    return httpx.Client(base_url=stack["http"], headers=http_headers(stack), timeout=timeout)


def grpc_channel(stack: dict[str, Any]) -> grpc.Channel:
    """A blocking gRPC channel to the stack's gateway that sends its admin token."""
    return gateway_channel(stack["grpc"], stack["token"])


def create_token(stack: dict[str, Any], name: str, role: str) -> str:
    """A new token (viewer, operator or admin) made through the gateway as the admin token."""
    from conveyor.auth.tokens import role_value
    from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc

    with grpc_channel(stack) as ch:
        reply = gateway_service_pb2_grpc.GatewayServiceStub(ch).CreateToken(
            gateway_service_pb2.CreateTokenRequest(name=name, role=role_value(role)),  # type: ignore[arg-type]
            timeout=30,
        )
    return str(reply.secret)


def internal_channel(stack: dict[str, Any], address: str) -> grpc.Channel:
    """A channel straight to an internal service, with the stack's internal credential."""
    return sync_channel(address, credential=stack.get("internal_token") or internal_credential())


@contextlib.contextmanager
def embedded(tmp: Path, **overrides: Any) -> Iterator[dict[str, Any]]:
    """The embedded suite on ephemeral ports with its data in tmp; "token" is an admin token."""
    with BackgroundSuite(embedded_settings(tmp, **overrides)) as suite:
        yield {**suite.addresses, "token": suite.token, "token_name": "dev"}


def embedded_settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings of an embedded suite with every service on an ephemeral port, data in tmp."""
    return Settings(
        data_dir=tmp,
        gateway_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        translator_addr="127.0.0.1:0",
        executor_addr="127.0.0.1:0",
        monitor_addr="127.0.0.1:0",
        scheduler_addr="127.0.0.1:0",
        artifacts_addr="127.0.0.1:0",
        broker_url="memory://",
        events_url="memory://",
        database_url="",
        **{"egress_allow": "127.0.0.1", **overrides},  # the tests' own HTTP servers
    )


@contextlib.contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test session, dropped afterwards."""
    name = f"conveyor_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_database(base_url: str) -> Iterator[str]:
    """A Redis database (1-15) leased to this test session alone, emptied before and after.

    The lease is a key in database 0 that expires, so concurrent test sessions on one Redis
    never share a broker and a crashed session frees its database within the hour.
    """
    lease_db = redis.Redis.from_url(f"{base_url.rstrip('/')}/0")
    token = uuid.uuid4().hex
    for _ in range(600):
        for index in range(1, 16):
            key = f"conveyor:test-lease:{index}"
            if lease_db.set(key, token, nx=True, ex=3600):
                url = f"{base_url.rstrip('/')}/{index}"
                redis.Redis.from_url(url).flushdb()
                try:
                    yield url
                finally:
                    redis.Redis.from_url(url).flushdb()
                    if lease_db.get(key) == token.encode():
                        lease_db.delete(key)
                return
        time.sleep(1)
    raise TimeoutError("no free Redis database for the test session")


@contextlib.contextmanager
def distributed(
    tmp: Path,
    postgres_url: str,
    redis_url: str,
    *,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every service and a worker as separate OS processes on PostgreSQL and Redis.

    "token" is an admin token (made with `conveyor tokens create --database`), and
    "internal_token" the services' internal credential.
    """
    with redis_database(redis_url) as broker, postgres_database(postgres_url) as db_url:
        internal_token = uuid.uuid4().hex
        exe = [sys.executable, "-m", "conveyor"]
        logs = tmp / "logs"
        logs.mkdir(exist_ok=True)
        services = ("translator", "executor", "monitor", "scheduler", "artifacts", "gateway")
        for attempt in range(_BIND_ATTEMPTS):
            ports = {k: free_port() for k in (*services, "http")}
            metrics_ports = {k: free_port() for k in services[:4]}
            env = {
                **os.environ,
                "CONVEYOR_INTERNAL_TOKEN": internal_token,
                "CONVEYOR_DATABASE_URL": db_url,
                "CONVEYOR_BROKER_URL": broker,
                "CONVEYOR_EVENTS_URL": broker,
                "CONVEYOR_DATA_DIR": str(tmp),
                **{f"CONVEYOR_{k.upper()}_ADDR": f"127.0.0.1:{v}" for k, v in ports.items()},
                "CONVEYOR_LOG_LEVEL": "WARNING",
                "CONVEYOR_EGRESS_ALLOW": "127.0.0.1",  # the tests' own HTTP servers
                **{f"CONVEYOR_{k.upper()}_METRICS_PORT": str(v) for k, v in metrics_ports.items()},
                **(extra_env or {}),
            }
            if attempt == 0:
                subprocess.run([*exe, "migrate"], env=env, check=True, capture_output=True)
                token = subprocess.run(
                    [
                        *exe,
                        "tokens",
                        "create",
                        "--name",
                        "test-admin",
                        "--role",
                        "admin",
                        "--database",
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
            procs: list[subprocess.Popen[bytes]] = []

            def spawn(
                name: str,
                *args: str,
                env: dict[str, str] = env,
                procs: list[subprocess.Popen[bytes]] = procs,
            ) -> subprocess.Popen[bytes]:
                out = (logs / f"{name}.log").open("wb")
                p = subprocess.Popen(
                    [*exe, *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                procs.append(p)
                return p

            try:
                for svc in services:
                    spawn(svc, "serve", svc)
                for i in range(workers):
                    spawn(
                        f"worker{i}", "worker", "--concurrency", "4", "--hostname", f"worker{i}@%h"
                    )
                for svc in services:
                    wait_serving(f"127.0.0.1:{ports[svc]}", procs=procs)
            except RuntimeError:
                _stop(procs)
                taken = any(
                    "address already in use" in (logs / f"{svc}.log").read_text().lower()
                    for svc in services
                )
                if taken and attempt + 1 < _BIND_ATTEMPTS:
                    continue  # a port picked free was taken before the service bound it
                tails = {svc: (logs / f"{svc}.log").read_text()[-2000:] for svc in services}
                raise RuntimeError(f"the suite did not start: {tails}") from None
            break
        try:
            yield {
                "grpc": f"127.0.0.1:{ports['gateway']}",
                "http": f"http://127.0.0.1:{ports['http']}",
                **{svc: f"127.0.0.1:{ports[svc]}" for svc in services[:5]},
                "database_url": db_url,
                "token": token,
                "token_name": "test-admin",
                "internal_token": internal_token,
                "procs": procs,
                "logs": logs,
                "env": env,
                "spawn": spawn,
            }
        finally:
            _stop(procs)


_BIND_ATTEMPTS = 3


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after 15 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def every_second_schedule(scheduler: Any, job_id: str, start: datetime, end: datetime) -> Any:
    """Create a `* * * * * *` schedule of a job between start and end (overlap ALLOW_ALL)."""
    spec = schedule_pb2.ScheduleSpec()
    spec.cron.expression = "* * * * * *"
    spec.start_time.FromDatetime(start)
    spec.end_time.FromDatetime(end)
    return scheduler.CreateSchedule(
        scheduler_service_pb2.CreateScheduleRequest(
            schedule=schedule_pb2.Schedule(
                job_id=job_id,
                spec=spec,
                policies=schedule_pb2.SchedulePolicies(
                    overlap=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL
                ),
            )
        )
    ).schedule
