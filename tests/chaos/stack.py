"""The distributed suite as separate OS processes that a chaos test kills, restarts and cuts
off from its database or broker."""

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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine

from tests.chaos.proxy import TcpProxy
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness

SERVICES = ("translator", "executor", "monitor", "scheduler", "artifacts", "gateway")


def _with_host(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}"))


@dataclass
class Stack:
    """A running distributed suite; every process is addressable by name."""

    tmp: Path
    env: dict[str, str]
    db_url: str  # direct, for the test's own checks (never through the proxy)
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    db_proxy: TcpProxy | None = None
    redis_port: int = 0
    redis_proc: subprocess.Popen[bytes] | None = None
    workers_started: int = 0
    kills: list[tuple[str, float]] = field(default_factory=list)  # (process name, time)
    token: str = ""  # an admin token of the gateway
    _engine: Engine | None = None

    @property
    def grpc(self) -> str:
        """The gateway's gRPC address."""
        return self.env["CONVEYOR_GATEWAY_ADDR"]

    @property
    def engine(self) -> Engine:
        """A direct connection to the suite's database, for checks."""
        if self._engine is None:
            self._engine = create_engine(
                self.db_url.replace("postgresql://", "postgresql+psycopg://", 1)
            )
        return self._engine

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `python -m conveyor <args>` as process `name`."""
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_service(self, svc: str, *, wait: bool = True) -> None:
        """Start (or restart) one service and wait until it is healthy."""
        self.spawn(svc, "serve", svc)
        if wait:
            harness.wait_serving(self.env[f"CONVEYOR_{svc.upper()}_ADDR"], timeout=90)

    def start_worker(self) -> str:
        """Start one more worker; returns its process name (also its Celery node name)."""
        self.workers_started += 1
        name = f"chaos{self.workers_started}"
        self.spawn(name, "worker", "--concurrency", "4", "--hostname", f"{name}@chaos")
        return name

    def workers(self) -> list[str]:
        """Names of the worker processes alive."""
        return [n for n, p in self.procs.items() if n.startswith("chaos") and p.poll() is None]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> float:
        """Signal a process (kill -9 by default) and wait for it; returns the kill time."""
        proc = self.procs[name]
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        proc.wait(timeout=120)
        self.kills.append((name, at))
        return at

    def start_redis(self) -> None:
        """The private Redis (no persistence: a restart loses every queued message)."""
        out = (self.logs / "redis.log").open("ab")
        self.redis_proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=1),
            ):
                return
            time.sleep(0.1)
        raise TimeoutError("private redis did not start")

    def restart_redis(self, down_s: float) -> float:
        """kill -9 the private Redis, keep it down for `down_s`, start it again."""
        assert self.redis_proc is not None
        at = time.time()
        self.redis_proc.kill()
        self.redis_proc.wait()
        self.kills.append(("redis", at))
        time.sleep(down_s)
        self.start_redis()
        return at

    def stop(self) -> None:
        """SIGTERM everything, then SIGKILL what is left."""
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait()
        if self._engine is not None:
            self._engine.dispose()
        if self.db_proxy is not None:
            self.db_proxy.close()


@contextlib.contextmanager
def chaos_stack(
    tmp: Path,
    *,
    workers: int = 2,
    db_proxy: bool = False,
    private_redis: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Every service and `workers` workers, each its own process group."""
    with contextlib.ExitStack() as exits:
        db_url = exits.enter_context(harness.postgres_database(POSTGRES_URL))
        proxy = None
        service_db_url = db_url
        if db_proxy:
            parts = urlsplit(db_url)
            proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
            service_db_url = _with_host(db_url, "127.0.0.1", proxy.port)
        redis_port = 0
        if private_redis:
            redis_port = harness.free_port()
            broker = f"redis://127.0.0.1:{redis_port}/0"
        else:
            broker = exits.enter_context(harness.redis_database(REDIS_URL))
        ports = {k: harness.free_port() for k in SERVICES}
        http = harness.free_port()
        env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": service_db_url,
            "CONVEYOR_BROKER_URL": broker,
            "CONVEYOR_EVENTS_URL": broker,
            "CONVEYOR_DATA_DIR": str(tmp),
            "CONVEYOR_HTTP_ADDR": f"127.0.0.1:{http}",
            "CONVEYOR_LOG_LEVEL": "WARNING",
            "CONVEYOR_INTERNAL_TOKEN": uuid.uuid4().hex,
            **{f"CONVEYOR_{k.upper()}_ADDR": f"127.0.0.1:{v}" for k, v in ports.items()},
            **(extra_env or {}),
        }
        logs = tmp / "logs"
        logs.mkdir(exist_ok=True)
        stack = Stack(
            tmp=tmp, env=env, db_url=db_url, logs=logs, db_proxy=proxy, redis_port=redis_port
        )
        try:
            if private_redis:
                stack.start_redis()
            subprocess.run(
                [sys.executable, "-m", "conveyor", "migrate"],
                env=env,
                check=True,
                capture_output=True,
            )
            stack.token = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "conveyor",
                    "tokens",
                    "create",
                    "--name",
                    "chaos",
                    "--role",
                    "admin",
                    "--database",
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            for svc in SERVICES:
                stack.start_service(svc, wait=False)
            for _ in range(workers):
                stack.start_worker()
            for svc in SERVICES:
                harness.wait_serving(env[f"CONVEYOR_{svc.upper()}_ADDR"], timeout=90)
            yield stack
        finally:
            stack.stop()
