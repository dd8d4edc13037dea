"""The gateway's HTTP face: transcoded JSON calls, Google-style errors, SSE and /healthz."""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.contract.test_gateway_fakes import EXECUTOR, MONITOR, TRANSLATOR, Stack, run_with_stack

WORKFLOW = {"schema": "conveyor/v1", "name": "w", "nodes": [{"id": "a", "type": "action.sleep"}]}


def _client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.http_url, timeout=30, headers=stack.headers())


def _parse_sse(text: str) -> list[dict[str, str]]:
    """Events as dicts of their fields; comment lines are kept under ":"."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name or ":"] = value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events


def _violations(body: dict[str, Any]) -> list[dict[str, str]]:
    return [
        v
        for d in body["error"]["details"]
        if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for v in d["fieldViolations"]
    ]


def test_post_with_json_body_round_trips_and_forwards_headers() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            resp = await http.post(
                "/v1/workflows:validate",
                json={"workflow": WORKFLOW},
                headers={
                    "X-Request-Id": "req-9",
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                },
            )
            assert resp.status_code == 200
            assert resp.json() == {"valid": True, "diagnostics": []}
            # The bearer token stays at the edge; the backend learns who called from the actor.
            assert "authorization" not in stack.seen.metadata
            assert stack.seen.metadata["x-conveyor-actor"] == "admin"
            assert stack.seen.metadata["x-request-id"] == "req-9"
            assert stack.seen.metadata["traceparent"].startswith("00-0af76519")

            empty = {**WORKFLOW, "nodes": []}
            resp = await http.post("/v1/workflows:validate", json={"workflow": empty})
            body = resp.json()
            assert body["valid"] is False
            assert body["diagnostics"][0]["code"] == "NO_NODES"

    run_with_stack(scenario)


def test_backend_errors_become_google_style_json() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            resp = await http.get("/v1/jobs/missing")
            assert resp.status_code == 404
            error = resp.json()["error"]
            assert error["code"] == 404
            assert error["status"] == "NOT_FOUND"
            assert error["message"] == "job 'missing' does not exist"
            assert {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "JOB_NOT_FOUND",
                "domain": "conveyor.dev",
                "metadata": {"job_id": "missing"},
            } in error["details"]

            resp = await http.post("/v1/workflows:validate", json={})
            assert resp.status_code == 400
            assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
            assert _violations(resp.json()) == [
                {"field": "workflow", "description": "a workflow is required", "reason": "REQUIRED"}
            ]

    run_with_stack(scenario)


def test_path_variables_query_parameters_and_custom_verbs() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            resp = await http.get("/v1/jobs/backup-1", params={"version": "3"})
            assert resp.status_code == 200
            assert resp.json()["job"]["job_id"] == "backup-1"
            assert resp.json()["job"]["version"] == 3

            resp = await http.post(
                "/v1/jobs/backup-1:run",
                json={
                    "parameters": {"host": "r1"},
                    "requestId": "once",
                    "trigger": "RUN_TRIGGER_WEBHOOK",
                },
            )
            assert resp.status_code == 200
            run = resp.json()["run"]
            assert run["run_id"] == "run-of-backup-1"
            assert run["parameters"] == {"host": "r1"}
            assert run["trigger"] == "RUN_TRIGGER_WEBHOOK"
            sent = stack.seen.start_run
            assert sent is not None
            assert (sent.job_id, sent.request_id) == ("backup-1", "once")

            # Without the verb's POST, the same path is a plain GetJob of an odd id.
            plain = await http.get("/v1/jobs/backup-1:run")
            assert plain.json()["job"]["job_id"] == "backup-1:run"
            assert (await http.put("/v1/jobs/backup-1:run")).status_code == 405
            missing = await http.get("/v1/nothing/here")
            assert missing.status_code == 404
            assert missing.json()["error"]["status"] == "NOT_FOUND"

    run_with_stack(scenario)


def test_malformed_requests_are_rejected_without_calling_the_backend() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            bad = [
                http.post(
                    "/v1/workflows:validate",
                    content=b"{not json",
                    headers={"content-type": "application/json"},
                ),
                http.post("/v1/workflows:validate", json=["a", "list"]),
                http.post("/v1/workflows:validate", json={"workflow": WORKFLOW, "colour": "red"}),
                http.get("/v1/jobs/j1", params={"version": "three"}),
                http.get("/v1/jobs/j1", params={"flavour": "x"}),
                http.get("/v1/runs/r1/events", headers={"Last-Event-ID": "yesterday"}),
            ]
            for request in bad:
                resp = await request
                assert resp.status_code == 400, resp.text
                error = resp.json()["error"]
                assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
                assert error["message"]
                assert _violations(resp.json())
            assert _violations(resp.json())[0]["field"] == "Last-Event-ID"
            assert stack.seen.metadata == {}
            assert stack.seen.watch_requests == []

    run_with_stack(scenario)


def test_local_server_info() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            info = (await http.get("/v1/info")).json()
        assert info["mode"] == "embedded"
        assert {b["service"] for b in info["backends"]} == {TRANSLATOR, EXECUTOR, MONITOR}

    run_with_stack(scenario)


def test_event_stream_is_served_as_sse_and_resumes_from_last_event_id() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            resp = await http.get("/v1/runs/r1/events")
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = _parse_sse(resp.text)
            # The backend sends two events to a message; each is its own server-sent event.
            assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
            assert events[0]["event"] == "run_state_changed"
            assert events[1]["event"] == "step_state_changed"
            data = json.loads(events[2]["data"])
            assert data["event"]["run_id"] == "r1"
            assert data["event"]["step_state_changed"]["message"] == "e3"
            assert [list(json.loads(e["data"])) for e in events] == [["event"]] * 5
            assert [json.loads(e["data"])["event"]["sequence"] for e in events] == [
                str(seq) for seq in range(1, 6)
            ]

            resumed = await http.get("/v1/runs/r1/events", headers={"Last-Event-ID": "3"})
            assert [e["id"] for e in _parse_sse(resumed.text)] == ["4", "5"]
            query = await http.get("/v1/runs/r1/events", params={"after_sequence": "4"})
            assert [e["id"] for e in _parse_sse(query.text)] == ["5"]

            missing = await http.get("/v1/runs/nope/events")
            assert missing.status_code == 404
            assert missing.json()["error"]["details"][0]["reason"] == "RUN_NOT_FOUND"

    run_with_stack(scenario)


def test_idle_stream_sends_keepalives_until_the_next_event() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http, http.stream("GET", "/v1/runs/live/events") as resp:
            seen: list[str] = []
            async for line in resp.aiter_lines():
                seen.append(line)
                if line == ": keepalive" and not stack.seen.release_live.is_set():
                    stack.seen.release_live.set()
        # The stream ended by itself after the backend's last event.
        events = [e for e in _parse_sse("\n".join(seen)) if "id" in e]
        assert [e["id"] for e in events] == ["1", "2"]
        assert seen.index(": keepalive") < seen.index("id: 2")

    run_with_stack(scenario, keepalive_s=0.05)


def test_client_disconnect_closes_the_backend_stream() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http, http.stream("GET", "/v1/runs/live/events") as resp:
            lines = resp.aiter_lines()
            assert await anext(lines) == "id: 1"
        # Leaving the block dropped the connection mid-stream.
        await stack.seen.live_closed.wait()
        assert not stack.seen.release_live.is_set()

    run_with_stack(scenario)


def test_healthz_reports_each_backend() -> None:
    async def scenario(stack: Stack) -> None:
        async with _client(stack) as http:
            resp = await http.get("/healthz")
            assert resp.status_code == 200
            body = resp.json()
            assert body["status"] == "SERVING"
            assert {name: s["status"] for name, s in body["services"].items()} == {
                TRANSLATOR: "SERVING",
                EXECUTOR: "SERVING",
                MONITOR: "SERVING",
            }

            await stack.backend.stop(grace=None)
            resp = await http.get("/healthz")
            assert resp.status_code == 503
            body = resp.json()
            assert body["status"] == "NOT_SERVING"
            assert body["services"][MONITOR]["status"] == "UNAVAILABLE"

    run_with_stack(scenario)


def test_websocket_frames_are_one_per_event_of_a_batched_stream() -> None:
    async def scenario(stack: Stack) -> None:
        url = stack.http_url.replace("http://", "ws://") + "/v1/runs/r1/events"
        async with connect(url, additional_headers=stack.headers()) as ws:
            frames = [json.loads(frame) async for frame in ws]
        assert [(f["id"], f["event"]) for f in frames] == [
            (1, "run_state_changed"),
            (2, "step_state_changed"),
            (3, "step_state_changed"),
            (4, "step_state_changed"),
            (5, "run_state_changed"),
        ]
        assert [list(f["data"]) for f in frames] == [["event"]] * 5
        assert frames[2]["data"]["event"]["step_state_changed"]["message"] == "e3"
        async with connect(f"{url}?after_sequence=2", additional_headers=stack.headers()) as ws:
            assert [json.loads(frame)["id"] async for frame in ws] == [3, 4, 5]

    run_with_stack(scenario)
