"""Every example in examples/ runs through the CLI to the end state its description says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from tests.integration import harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLI = [sys.executable, "-m", "conveyor"]


def cli_env(token: str | None = None) -> dict[str, str]:
    """The environment of a CLI process: the token of the suite it talks to, if any, and an
    egress allow list for the tests' own HTTP servers on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_TOKEN"}
    env["CONVEYOR_EGRESS_ALLOW"] = "127.0.0.1"
    return {**env, "CONVEYOR_TOKEN": token} if token else env


def conveyor(
    *args: str, cwd: Path, timeout: float = 180, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=cli_env(token),
    )


def run_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    start = proc.stdout.index("{")
    result: dict[str, Any] = json.loads(proc.stdout[start:])
    return result


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in result["steps"]}


def test_every_example_is_covered() -> None:
    covered = {"hello", "config-backup", "deploy", "health-check"}
    assert {p.stem for p in EXAMPLES.glob("*.json")} == covered


def test_hello(tmp_path: Path) -> None:
    proc = conveyor("run", str(EXAMPLES / "hello.json"), "--embedded", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hello_watch_prints_every_change_and_output_line(tmp_path: Path) -> None:
    proc = conveyor("run", str(EXAMPLES / "hello.json"), "--embedded", "--watch", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stamped = [
        line for line in proc.stdout.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3}  ", line)
    ]
    lines = [" ".join(line.split()[1:]) for line in stamped]
    assert lines[0] == "run PENDING started by dev"
    assert "run RUNNING" in lines and lines[-1] == "run SUCCEEDED"
    steps: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith("run "):
            node, _, rest = line.partition(" ")
            steps.setdefault(node, []).append(rest)
    assert steps["greet"] == ["QUEUED", "RUNNING", "out| hello, world", "SUCCEEDED"]
    assert steps["shout"] == ["QUEUED", "RUNNING", "out| HELLO, WORLD", "SUCCEEDED"]
    assert steps["is_long"] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert steps["long_note"] == ["SKIPPED branch not taken"]
    assert steps["summary"] == ["QUEUED", "RUNNING", "out| HELLO, WORLD (2 words)", "SUCCEEDED"]


def test_config_backup_saves_every_device(tmp_path: Path) -> None:
    dest = tmp_path / "saved"
    hosts = ["sw-1", "sw-2", "rtr-9"]
    proc = conveyor(
        "run",
        str(EXAMPLES / "config-backup.json"),
        "--embedded",
        "--watch",
        "--param",
        f"dest={dest}",
        "--param",
        f"hosts={json.dumps(hosts)}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in dest.glob("*.cfg")) == sorted(f"{h}.cfg" for h in hosts)
    assert "hostname rtr-9" in (dest / "rtr-9.cfg").read_text()
    manifest = (dest / "MANIFEST.sha256").read_text().splitlines()
    assert len(manifest) == 3


class Recorder(BaseHTTPRequestHandler):
    """/ok answers 200, /down 503; POST /alerts records the JSON body."""

    alerts: list[Any] = []

    def do_GET(self) -> None:
        status = 200 if self.path == "/ok" else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"down")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.alerts.append(json.loads(self.rfile.read(length)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def web() -> Iterator[str]:
    Recorder.alerts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("healthy", [True, False])
def test_health_check(tmp_path: Path, web: str, healthy: bool) -> None:
    url = f"{web}/ok" if healthy else f"{web}/down"
    proc = conveyor(
        "run",
        str(EXAMPLES / "health-check.json"),
        "--embedded",
        "--output",
        "json",
        "--param",
        f"url={url}",
        "--param",
        f"alert_url={web}/alerts",
        cwd=tmp_path,
    )
    result = run_json(proc)
    s = steps(result)
    if healthy:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert s["healthy"]["stdout"] == f"{url} is healthy (HTTP 200)\n"
        assert s["alert"]["state"] == "SKIPPED"
        assert Recorder.alerts == []
    else:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert s["check"]["attempts"] == 3
        assert s["check"]["error_category"] == "HTTP_STATUS"
        assert s["alert"]["state"] == "SUCCEEDED"
        assert s["unhealthy"]["error_message"] == f"{url} is unhealthy"
        assert len(Recorder.alerts) == 1
        assert Recorder.alerts[0]["service"] == url
        assert Recorder.alerts[0]["status"] == 503
        assert Recorder.alerts[0]["run"] == result["run_id"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with harness.embedded(tmp_path_factory.mktemp("examples")) as addresses:
        yield addresses


def waiting_run(client: Client, job_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        reply = client.executor.ListRuns(
            executor_service_pb2.ListRunsRequest(job_id=job_id, states=[run_pb2.RUN_STATE_WAITING]),
            timeout=30,
        )
        if reply.runs:
            return str(reply.runs[0].run_id)
        time.sleep(0.2)
    raise AssertionError("the deploy never waited for approval")


@pytest.mark.parametrize(
    ("decision", "break_deploy", "code", "live"),
    [("approve", False, 0, True), ("reject", False, 1, False), ("approve", True, 1, False)],
)
def test_deploy(
    suite: dict[str, str],
    tmp_path: Path,
    decision: str,
    break_deploy: bool,
    code: int,
    live: bool,
) -> None:
    target = tmp_path / "site"
    server, token = suite["grpc"], suite["token"]
    client = Client(server, token=token)
    job_id = client.create_job((EXAMPLES / "deploy.json").read_text()).job.job_id
    runner = subprocess.Popen(
        [
            *CLI,
            "run",
            str(EXAMPLES / "deploy.json"),
            "--server",
            server,
            "--output",
            "json",
            "--param",
            f"target={target}",
            "--param",
            f"break_deploy={json.dumps(break_deploy)}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(token),
    )
    try:
        run_id = waiting_run(client, job_id)
        shown = conveyor("runs", "show", run_id, "--server", server, cwd=tmp_path, token=token)
        assert "awaiting" in shown.stdout, shown.stdout + shown.stderr
        decided = conveyor(
            "runs",
            decision,
            run_id,
            "approve",
            "--comment",
            "ticket 42",
            "--server",
            server,
            cwd=tmp_path,
            token=token,
        )
        assert decided.returncode == 0, decided.stdout + decided.stderr
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        client.close()
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == code, stdout + stderr
    s = steps(json.loads(stdout[stdout.index("{") :]))
    assert (target / "current").exists() == live
    if decision == "reject":
        assert s["approve"]["error_category"] == "REJECTED"
        assert "ticket 42" in s["approve"]["error_message"]
        assert s["rollback"]["state"] == "SKIPPED"
    elif break_deploy:
        assert s["deploy"]["state"] == "FAILED"
        assert s["rollback"]["state"] == "SUCCEEDED"
        assert "rolled back" in s["rolled_back"]["error_message"]
    else:
        assert s["verify"]["stdout"] == "1.4.2 is live\n"
        assert s["rollback"]["state"] == "SKIPPED"
