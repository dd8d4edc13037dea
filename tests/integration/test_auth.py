"""Access control on a real stack (embedded and distributed): tokens and roles at the edge,
internal services closed to callers without the internal credential, revocation ending open
streams, and streams resumed at or past a finished run's end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from conveyor.auth import webhooks
from conveyor.cli.client import Client, gateway_channel
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.gateway.forward import service_descriptor
from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.kernel.settings import Settings
from conveyor.monitor.v1 import monitor_service_pb2, monitor_service_pb2_grpc
from conveyor.suite import routes
from tests.integration import harness
from tests.integration import workflows as wf

QUICK = wf.doc("auth-quick", [wf.cmd("a", ["true"])], [])


def gated(name: str, gate: Path) -> str:
    """A one-step run that waits until `gate` exists (so a stream stays open meanwhile)."""
    script = f"while [ ! -e '{gate}' ]; do sleep 0.05; done"
    return wf.doc(name, [wf.cmd("wait", ["sh", "-c", script])], [])


def make_token(stack: dict[str, Any], name: str, role: str) -> str:
    """A new token made through the gateway with the stack's admin token."""
    with gateway_channel(stack["grpc"], stack["token"]) as ch:
        stub = gateway_service_pb2_grpc.GatewayServiceStub(ch)
        roles = {"viewer": 1, "operator": 2, "admin": 3}
        reply = stub.CreateToken(
            gateway_service_pb2.CreateTokenRequest(name=name, role=roles[role]), timeout=30
        )
    return str(reply.secret)


def revoke(stack: dict[str, Any], name: str) -> None:
    with gateway_channel(stack["grpc"], stack["token"]) as ch:
        gateway_service_pb2_grpc.GatewayServiceStub(ch).RevokeToken(
            gateway_service_pb2.RevokeTokenRequest(name=name), timeout=30
        )


def test_http_without_token_is_401_and_roles_are_enforced(
    stack: dict[str, Any], client: Client
) -> None:
    job = client.create_job(QUICK).job
    http = stack["http"]
    anonymous = httpx.post(f"{http}/v1/jobs/{job.job_id}:run", json={}, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"

    viewer = make_token(stack, f"viewer-{stack['mode']}", "viewer")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(f"{http}/v1/runs", headers=as_viewer, timeout=30).status_code == 200
    refused = httpx.post(f"{http}/v1/jobs/{job.job_id}:run", json={}, headers=as_viewer, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
    assert httpx.get(f"{http}/metrics", timeout=30).status_code == 401
    assert httpx.get(f"{http}/healthz", timeout=30).status_code == 200

    operator_token = make_token(stack, f"operator-{stack['mode']}", "operator")
    operator = {"Authorization": f"Bearer {operator_token}"}
    started = httpx.post(f"{http}/v1/jobs/{job.job_id}:run", json={}, headers=operator, timeout=30)
    assert started.status_code == 200, started.text
    deleting = httpx.delete(f"{http}/v1/jobs/{job.job_id}", headers=operator, timeout=30)
    assert deleting.status_code == 403


def test_internal_services_refuse_calls_without_the_credential(stack: dict[str, Any]) -> None:
    by_address: dict[str, list[str]] = {}
    for service, address in routes(internal_addresses(stack)).items():
        by_address.setdefault(address, []).append(service)
    # translator, executor (+ run history), monitor (+ insight, alerts, event history),
    # scheduler, artifacts
    assert len(by_address) == 5
    for address, services in by_address.items():
        with grpc.insecure_channel(address) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            for service in services:
                for method in service_descriptor(service).methods:
                    path = f"/{service}/{method.name}"
                    # Even the public token is no credential for an internal service.
                    metadata = (("authorization", f"Bearer {stack['token']}"),)
                    if method.server_streaming:
                        call = ch.unary_stream(path)(b"", metadata=metadata, timeout=10)
                        with pytest.raises(grpc.RpcError) as err:
                            next(iter(call))
                    else:
                        with pytest.raises(grpc.RpcError) as err:
                            ch.unary_unary(path)(b"", metadata=metadata, timeout=10)
                    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, path
        with harness.internal_channel(stack, address) as ch:
            # With the credential the same calls get through (and fail on their empty input).
            service = services[0]
            method = service_descriptor(service).methods[0]
            path = f"/{service}/{method.name}"
            try:
                if method.server_streaming:
                    next(iter(ch.unary_stream(path)(b"", timeout=10)))
                else:
                    ch.unary_unary(path)(b"", timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() != grpc.StatusCode.UNAUTHENTICATED, path


def internal_addresses(stack: dict[str, Any]) -> Settings:
    return Settings(
        translator_addr=stack["translator"],
        executor_addr=stack["executor"],
        monitor_addr=stack["monitor"],
        scheduler_addr=stack["scheduler"],
        artifacts_addr=stack["artifacts"],
    )


def test_streams_at_or_past_the_end_of_a_finished_run_end_at_once(
    stack: dict[str, Any], client: Client
) -> None:
    job = client.create_job(QUICK).job
    run = client.start_run(job.job_id, {})
    events = list(client.watch(run.run_id))
    last = events[-1].sequence
    stub = monitor_service_pb2_grpc.MonitorServiceStub(client.channel)
    for after in (last, last + 5):
        request = monitor_service_pb2.WatchRunRequest(run_id=run.run_id, after_sequence=after)
        assert list(stub.WatchRun(request, timeout=20)) == []
        sse = httpx.get(
            f"{stack['http']}/v1/runs/{run.run_id}/events",
            headers={"Last-Event-ID": str(after), **harness.http_headers(stack)},
            timeout=20,
        )
        assert sse.status_code == 204, sse.text
    # One before the end still gets the last event.
    again = httpx.get(
        f"{stack['http']}/v1/runs/{run.run_id}/events",
        headers={"Last-Event-ID": str(last - 1), **harness.http_headers(stack)},
        timeout=20,
    )
    assert again.status_code == 200
    assert f"id: {last}" in again.text


def ws_url(stack: dict[str, Any], path: str) -> str:
    return "ws" + stack["http"].removeprefix("http") + path


def ws_frames(url: str, token: str | None) -> list[dict[str, Any]]:
    """Every frame until the server closes normally (a browser's way: token as subprotocol)."""
    protocols = ["conveyor.v1", *([f"bearer.{token}"] if token else [])]
    with connect(url, subprotocols=protocols, open_timeout=30) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "conveyor.v1"
        return [json.loads(frame) for frame in ws]


def test_websocket_carries_the_sse_events_with_the_same_resume_rule(
    stack: dict[str, Any], client: Client
) -> None:
    job = client.create_job(QUICK).job
    run = client.start_run(job.job_id, {})
    sequences = [e.sequence for e in client.watch(run.run_id)]
    url = ws_url(stack, f"/v1/runs/{run.run_id}/events")
    frames = ws_frames(url, stack["token"])
    assert [f["id"] for f in frames] == sequences
    assert frames[-1]["event"] == "run_state_changed"
    assert frames[-1]["data"]["event"]["run_state_changed"]["state"] == "RUN_STATE_SUCCEEDED"
    resumed = ws_frames(f"{url}?after_sequence={sequences[1]}", stack["token"])
    assert [f["id"] for f in resumed] == sequences[2:]
    assert ws_frames(f"{url}?after_sequence={sequences[-1]}", stack["token"]) == []
    with pytest.raises(ConnectionClosedError) as closed:
        ws_frames(url, None)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with pytest.raises(ConnectionClosedError) as missing:
        ws_frames(ws_url(stack, "/v1/runs/nope/events"), stack["token"])
    assert missing.value.rcvd is not None and missing.value.rcvd.code == 4404


def test_revoking_a_token_ends_its_open_streams(
    stack: dict[str, Any], client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job = client.create_job(gated(f"auth-revoke-{stack['mode']}", gate)).job
    run = client.start_run(job.job_id, {})
    name = f"watcher-{stack['mode']}"
    secret = make_token(stack, name, "viewer")

    sse_lines: list[str] = []
    grpc_outcome: list[Any] = []
    ws_outcome: list[Any] = []
    sse_open, grpc_open, ws_open = threading.Event(), threading.Event(), threading.Event()

    def follow_sse() -> None:
        with httpx.stream(
            "GET",
            f"{stack['http']}/v1/runs/{run.run_id}/events",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=60,
        ) as resp:
            for line in resp.iter_lines():
                sse_lines.append(line)
                sse_open.set()

    def follow_grpc() -> None:
        with Client(stack["grpc"], token=secret) as watcher:
            try:
                for event in watcher.watch(run.run_id):
                    grpc_outcome.append(event.sequence)
                    grpc_open.set()
            except grpc.RpcError as exc:
                grpc_outcome.append(exc.code())

    def follow_ws() -> None:
        url = ws_url(stack, f"/v1/runs/{run.run_id}/events")
        with connect(url, subprotocols=["conveyor.v1", f"bearer.{secret}"]) as ws:  # type: ignore[list-item]
            try:
                for frame in ws:
                    ws_outcome.append(json.loads(frame)["event"])
                    ws_open.set()
            except ConnectionClosedError as exc:
                ws_outcome.append(exc.rcvd.code if exc.rcvd else None)

    threads = [
        threading.Thread(target=follow_sse),
        threading.Thread(target=follow_grpc),
        threading.Thread(target=follow_ws),
    ]
    for t in threads:
        t.start()
    assert sse_open.wait(30) and grpc_open.wait(30) and ws_open.wait(30)
    revoke(stack, name)
    gate.touch()  # the step ends: the streams' next event
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a revoked token's stream went on"
    assert "event: error" in sse_lines
    assert any("UNAUTHENTICATED" in line for line in sse_lines)
    assert grpc_outcome[-1] == grpc.StatusCode.UNAUTHENTICATED
    assert ws_outcome[-2:] == ["error", 4401]
    # The run itself went on to its end; only the revoked watcher was cut off.
    final = client.get_run(run.run_id)
    deadline = time.monotonic() + 60
    while final.state != run_pb2.RUN_STATE_SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
        final = client.get_run(run.run_id)
    assert final.state == run_pb2.RUN_STATE_SUCCEEDED
    with Client(stack["grpc"], token=secret) as revoked:
        with pytest.raises(grpc.RpcError) as err:
            revoked.get_run(run.run_id)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_cli_through_the_gateway(stack: dict[str, Any], tmp_path: Path) -> None:
    def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor", "--token", token or stack["token"], *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )

    server = ["--server", stack["grpc"]]
    name = f"ci-bot-{stack['mode']}"
    made = cli(
        "tokens", "create", "--name", name, "--role", "operator", "--expires", "30d", *server
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("cvy_") and len(secret) >= 43
    listed = cli("tokens", "list", *server)
    assert name in listed.stdout and "operator" in listed.stdout and secret not in listed.stdout
    as_bot = cli("runs", "list", *server, token=secret)
    assert as_bot.returncode == 0, as_bot.stderr
    not_admin = cli("tokens", "list", *server, token=secret)
    assert not_admin.returncode == 1 and "PERMISSION_DENIED" in not_admin.stderr
    again = cli("tokens", "create", "--name", name, "--role", "viewer", *server)
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    assert cli("tokens", "revoke", name, *server).returncode == 0
    refused = cli("runs", "list", *server, token=secret)
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr


def test_who_started_cancelled_and_retried_a_run_is_recorded(
    stack: dict[str, Any], client: Client, tmp_path: Path
) -> None:
    name = f"ops-oncall-{stack['mode']}"
    secret = harness.create_token(stack, name, "operator")
    job = client.create_job(gated(f"auth-actor-{stack['mode']}", tmp_path / "never")).job
    with Client(stack["grpc"], token=secret) as operator:
        run = operator.start_run(job.job_id, {})
        assert run.started_by == name
        cancelled = operator.executor.CancelRun(
            executor_service_pb2.CancelRunRequest(run_id=run.run_id, reason="wrong branch"),
            timeout=30,
        ).run
        assert cancelled.error_message == f"cancelled by {name}: wrong branch"
        events = list(operator.watch(run.run_id))
        assert events[0].run_state_changed.message == f"started by {name}"
        assert events[-1].run_state_changed.message == f"cancelled by {name}: wrong branch"
        retried = operator.executor.RetryRun(
            executor_service_pb2.RetryRunRequest(run_id=run.run_id), timeout=30
        ).run
        assert retried.started_by == name
        shown = subprocess.run(
            [sys.executable, "-m", "conveyor", "--token", secret, "runs", "show", run.run_id,
             "--server", stack["grpc"]],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert f"cancelled by {name}" in shown.stdout and f"started by {name}" in shown.stdout
        operator.executor.CancelRun(
            executor_service_pb2.CancelRunRequest(run_id=retried.run_id), timeout=30
        )


def test_signed_webhook_starts_one_run_per_delivery(
    stack: dict[str, Any], client: Client, tmp_path: Path
) -> None:
    doc = wf.doc(
        f"auth-hook-{stack['mode']}",
        [
            {"id": "hook", "type": "trigger.webhook", "data": {}},
            wf.cmd("echo", ["echo", "{{ params.ref }}"]),
        ],
        [("hook", "echo")],
        parameters={
            "type": "object",
            "properties": {"ref": {"type": "string"}},
            "required": ["ref"],
        },
    )
    job = client.create_job(doc).job
    made = subprocess.run(
        [sys.executable, "-m", "conveyor", "--token", stack["token"], "jobs", "webhook",
         job.name, "--server", stack["grpc"]],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    url = made.stdout.split("POST ", 1)[1].split()[0]
    secret = made.stdout.split("secret ", 1)[1].split()[0]
    assert url.endswith(f"/v1/hooks/{job.job_id}")

    def deliver(body: bytes, delivery: str, *, key: str = secret, age: int = 0) -> httpx.Response:
        stamp = str(int(time.time()) - age)
        return httpx.post(
            url,
            content=body,
            headers={
                "X-Conveyor-Timestamp": stamp,
                "X-Conveyor-Signature": webhooks.sign(key, stamp, body),
                "X-Conveyor-Delivery": delivery,
                "Content-Type": "application/json",
            },
            timeout=30,
        )

    before = len(
        client.executor.ListRuns(executor_service_pb2.ListRunsRequest(job_id=job.job_id)).runs
    )
    body = b'{"ref": "main"}'
    first = deliver(body, "d-1")
    assert first.status_code == 200, first.text
    run = first.json()["run"]
    assert run["trigger"] == "RUN_TRIGGER_WEBHOOK" and run["parameters"] == {"ref": "main"}
    again = deliver(body, "d-1")  # a redelivery
    assert again.json()["run"]["run_id"] == run["run_id"]
    assert deliver(body, "d-2", key="whsec_wrong").status_code == 401
    assert deliver(body, "d-3", age=301).status_code == 401
    assert httpx.post(url, content=body, timeout=30).status_code == 401
    assert deliver(b'{"nope": 1}', "d-4").status_code == 400  # the schema wants ref
    runs = client.executor.ListRuns(executor_service_pb2.ListRunsRequest(job_id=job.job_id)).runs
    assert len(runs) == before + 1
    events = list(client.watch(run["run_id"]))
    assert events[-1].run_state_changed.state == run_pb2.RUN_STATE_SUCCEEDED


def test_who_changed_a_schedule_or_an_alert_rule_is_recorded(
    stack: dict[str, Any], client: Client
) -> None:
    name = f"planner-{stack['mode']}"
    admin = {"Authorization": f"Bearer {harness.create_token(stack, name, 'admin')}"}
    job = client.create_job(QUICK).job
    http = stack["http"]
    spec = {"cron": {"expression": "0 3 * * *"}}
    made = httpx.post(
        f"{http}/v1/schedules",
        json={"schedule": {"job_id": job.job_id, "spec": spec}},
        headers=admin,
        timeout=30,
    )
    assert made.status_code == 200, made.text
    schedule = made.json()["schedule"]
    assert schedule["updated_by"] == name
    paused = httpx.post(
        f"{http}/v1/schedules/{schedule['schedule_id']}:pause",
        json={"note": "freeze"},
        headers=harness.http_headers(stack),
        timeout=30,
    )
    assert paused.json()["schedule"]["updated_by"] == stack["token_name"]
    rule = httpx.post(
        f"{http}/v1/alertRules",
        json={"display_name": f"who-{stack['mode']}", "kind": "ALERT_KIND_RUN_FAILED"},
        headers=admin,
        timeout=30,
    )
    assert rule.status_code == 200, rule.text
    assert rule.json()["rule"]["updated_by"] == name
    httpx.delete(f"{http}/v1/schedules/{schedule['schedule_id']}", headers=admin, timeout=30)
