"""Live step output and the all-runs stream, in the embedded and the distributed mode."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.grpcserver import error_details
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2
from tests.integration import harness
from tests.integration import workflows as wf
from tests.integration.harness import read_artifact

LINES = 10_000
HALF = LINES // 2
# Prints the first half, waits for the test to create `gate` (so the step cannot end before
# the watcher proved it saw the first half live), then prints the second half.
PRINTER = (
    "import os, sys, time\n"
    "gate, lines = sys.argv[1], int(sys.argv[2])\n"
    "for i in range(lines // 2): print(f'line {i:05d}')\n"
    "sys.stdout.flush()\n"
    "print('half way', file=sys.stderr, flush=True)\n"
    "deadline = time.time() + 60\n"
    "while not os.path.exists(gate) and time.time() < deadline: time.sleep(0.01)\n"
    "for i in range(lines // 2, lines): print(f'line {i:05d}')\n"
)
EXPECTED = [f"line {i:05d}" for i in range(LINES)]


def printer_doc(name: str) -> str:
    return wf.doc(
        name,
        [wf.cmd("p", ["python3", "-c", PRINTER, "{{ params.gate }}", "{{ params.lines }}"])],
        [],
        parameters={
            "type": "object",
            "properties": {"gate": {"type": "string"}, "lines": {"type": "integer"}},
        },
    )


def stdout_text(events: list[event_pb2.RunEvent]) -> str:
    return "".join(
        e.step_log.text
        for e in events
        if e.HasField("step_log") and e.step_log.stream == event_pb2.LOG_STREAM_STDOUT
    )


def watch_until_half(
    client: Client, run_id: str, gate: Path, *, disconnect: bool
) -> list[event_pb2.RunEvent]:
    """Watch a printer run; open the gate once line HALF-1 arrived (and maybe hang up)."""
    events: list[event_pb2.RunEvent] = []
    call = client.monitor.WatchRun(monitor_service_pb2.WatchRunRequest(run_id=run_id))
    try:
        for reply in call:
            events.extend(reply.events)
            if not gate.exists() and f"line {HALF - 1:05d}\n" in stdout_text(events):
                gate.touch()
                if disconnect:
                    break
    finally:
        call.cancel()
    return events


def assert_exactly_once(events: list[event_pb2.RunEvent]) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].HasField("run_state_changed")
    assert events[-1].run_state_changed.state == run_pb2.RUN_STATE_SUCCEEDED
    assert stdout_text(events).splitlines() == EXPECTED
    for stream in (event_pb2.LOG_STREAM_STDOUT, event_pb2.LOG_STREAM_STDERR):
        chunks = [e.step_log for e in events if e.step_log.stream == stream]
        assert [c.chunk for c in chunks] == list(range(1, len(chunks) + 1))
        offsets = [sum(len(c.text) for c in chunks[:i]) for i in range(len(chunks))]
        assert [c.offset for c in chunks] == offsets


def start_printer(client: Client, tmp_path: Path, name: str) -> tuple[str, Path]:
    gate = tmp_path / "gate"
    job = client.create_job(printer_doc(name)).job
    run = client.start_run(job.job_id, {"gate": str(gate), "lines": LINES})
    return run.run_id, gate


def test_ten_thousand_lines_arrive_live_once_and_in_order(client: Client, tmp_path: Path) -> None:
    run_id, gate = start_printer(client, tmp_path, "it-live-10k")
    events = watch_until_half(client, run_id, gate, disconnect=False)

    assert gate.exists(), "the first half arrived while the step was still running"
    assert_exactly_once(events)
    logs = [e for e in events if e.HasField("step_log")]
    step_end = next(
        e.sequence
        for e in events
        if e.HasField("step_state_changed")
        and e.step_state_changed.state == run_pb2.STEP_STATE_SUCCEEDED
    )
    assert all(e.sequence < step_end for e in logs)
    assert any(e.step_log.text == "half way\n" for e in logs)
    # After the step, the full text is in the step's artifact (and the inline head).
    step = client.get_run(run_id).steps[0]
    full = read_artifact(client.address, step.stdout_uri, client.token)
    assert full == stdout_text(events)
    assert full.startswith(step.stdout.split("\n[… output truncated")[0])


def test_a_watcher_that_reconnects_misses_and_repeats_nothing(
    client: Client, tmp_path: Path
) -> None:
    run_id, gate = start_printer(client, tmp_path, "it-live-resume")
    first = watch_until_half(client, run_id, gate, disconnect=True)
    assert first[-1].HasField("step_log")  # hung up in the middle
    rest = list(client.watch(run_id, after=first[-1].sequence))
    assert_exactly_once(first + rest)

    only_logs = list(client.watch(run_id, types=[event_pb2.EVENT_TYPE_STEP_LOG], node_id="p"))
    assert stdout_text(only_logs).splitlines() == EXPECTED
    assert all(e.HasField("step_log") for e in only_logs)


def parse_sse(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            if name:
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(fields)
    return events


def test_logs_over_sse_resume_with_last_event_id(
    client: Client, stack: dict[str, Any], tmp_path: Path
) -> None:
    run_id, gate = start_printer(client, tmp_path, "it-live-sse")
    gate.touch()
    url = f"{stack['http']}/v1/runs/{run_id}/events"
    with httpx.Client(timeout=60, headers=harness.http_headers(stack)) as http:
        whole = parse_sse(http.get(url, params={"types": "EVENT_TYPE_STEP_LOG"}).text)
        logs = [json.loads(e["data"])["event"] for e in whole if e["event"] == "step_log"]
        assert (
            "".join(
                e["step_log"]["text"]
                for e in logs
                if e["step_log"]["stream"] == "LOG_STREAM_STDOUT"
            ).splitlines()
            == EXPECTED
        )
        resumed = parse_sse(
            http.get(
                url,
                params={"types": "EVENT_TYPE_STEP_LOG"},
                headers={"Last-Event-ID": whole[1]["id"]},
            ).text
        )
    assert [e["id"] for e in resumed] == [e["id"] for e in whole[2:]]


def cli(*args: str, stack: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "--token", stack["token"], *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_a_steps_logs(client: Client, stack: dict[str, Any], tmp_path: Path) -> None:
    run_id, gate = start_printer(client, tmp_path, "it-live-cli")
    gate.touch()
    follow = cli("runs", "logs", run_id, "p", "--follow", "--server", stack["grpc"], stack=stack)
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == EXPECTED
    assert follow.stderr == "half way\n"
    again = cli("runs", "logs", run_id, "--server", stack["grpc"], stack=stack)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"[p] {line}" for line in EXPECTED]
    assert again.stderr == "[p] half way\n"
    missing = cli("runs", "logs", "nope", "--server", stack["grpc"], stack=stack)
    assert missing.returncode == 2
    assert "NOT_FOUND" in missing.stderr


def changes_until(call: Any, count: int) -> list[monitor_service_pb2.WatchRunsResponse]:
    got = []
    try:
        for reply in call:
            got.append(reply)
            if len(got) == count:
                break
    finally:
        call.cancel()
    return got


def test_watch_runs_filters_and_resumes(client: Client, stack: dict[str, Any]) -> None:
    ok_job = client.create_job(wf.doc("it-feed-ok", [wf.cmd("a", ["true"])], [])).job
    bad_job = client.create_job(wf.doc("it-feed-bad", [wf.cmd("a", ["false"])], [])).job
    watch = client.monitor.WatchRuns
    every = watch(monitor_service_pb2.WatchRunsRequest(from_now=True))
    failed = watch(monitor_service_pb2.WatchRunsRequest(states=[run_pb2.RUN_STATE_FAILED]))
    of_ok = watch(
        monitor_service_pb2.WatchRunsRequest(
            job_ids=[ok_job.job_id], triggers=[run_pb2.RUN_TRIGGER_MANUAL]
        )
    )
    results: dict[str, list[Any]] = {}
    threads = [
        threading.Thread(target=lambda k=k, c=c, n=n: results.__setitem__(k, changes_until(c, n)))
        for k, c, n in (("every", every, 6), ("failed", failed, 1), ("ok", of_ok, 3))
    ]
    for t in threads:
        t.start()
    ok_run = client.start_run(ok_job.job_id, {})
    list(client.watch(ok_run.run_id))
    bad_run = client.start_run(bad_job.job_id, {})
    list(client.watch(bad_run.run_id))
    for t in threads:
        t.join(60)

    states = run_pb2.RunState.Name
    assert [
        (r.event.run_id, states(r.event.run_state_changed.state)) for r in results["every"]
    ] == [
        (ok_run.run_id, "RUN_STATE_PENDING"),
        (ok_run.run_id, "RUN_STATE_RUNNING"),
        (ok_run.run_id, "RUN_STATE_SUCCEEDED"),
        (bad_run.run_id, "RUN_STATE_PENDING"),
        (bad_run.run_id, "RUN_STATE_RUNNING"),
        (bad_run.run_id, "RUN_STATE_FAILED"),
    ]
    positions = [r.sequence for r in results["every"]]
    assert positions == list(range(positions[0], positions[0] + 6))
    assert [r.event.run_id for r in results["failed"]] == [bad_run.run_id]
    assert results["failed"][0].job_name == "it-feed-bad"
    assert [r.event.run_id for r in results["ok"]] == [ok_run.run_id] * 3
    assert all(r.trigger == run_pb2.RUN_TRIGGER_MANUAL for r in results["ok"])

    # Resume after the third change: exactly the last three come back.
    resumed = changes_until(
        watch(monitor_service_pb2.WatchRunsRequest(after_sequence=positions[2])), 3
    )
    assert [r.sequence for r in resumed] == positions[3:]

    # The same over SSE, where Last-Event-ID is the feed position.
    with (
        httpx.Client(timeout=30, headers=harness.http_headers(stack)) as http,
        http.stream(
            "GET",
            f"{stack['http']}/v1/runs:watch",
            params={"job_ids": bad_job.job_id},
            headers={"Last-Event-ID": str(positions[3])},
        ) as resp,
    ):
        assert resp.status_code == 200
        text = ""
        for piece in resp.iter_text():
            text += piece
            if text.count("\n\n") >= 2:
                break
    sse = parse_sse(text)[:2]
    assert [int(e["id"]) for e in sse] == positions[4:]
    assert json.loads(sse[1]["data"])["event"]["run_state_changed"]["state"] == "RUN_STATE_FAILED"

    # And from the CLI, which follows until stopped.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "--token",
            stack["token"],
            "runs",
            "watch",
            "--after",
            str(positions[2]),
            "--state",
            "failed",
            "--server",
            stack["grpc"],
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (int(line[0]), line[2], line[3], line[4]) == (
        positions[5],
        bad_run.run_id,
        "FAILED",
        "it-feed-bad",
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (monitor_service_pb2.WatchRunsRequest(states=[0]), "states[0]"),
        (monitor_service_pb2.WatchRunsRequest(triggers=[77]), "triggers[0]"),
        (monitor_service_pb2.WatchRunsRequest(after_sequence=-1), "after_sequence"),
        (monitor_service_pb2.WatchRunsRequest(after_sequence=10**12), "after_sequence"),
        (monitor_service_pb2.WatchRunsRequest(job_ids=["j"] * 101), "job_ids"),
    ],
)
def test_watch_runs_rejects_bad_requests(client: Client, request_: Any, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(client.monitor.WatchRuns(request_)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert field in [f for f, _r, _d in error_details(caught.value)[1]]


def test_watch_run_rejects_an_unknown_event_type(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(
            iter(
                client.monitor.WatchRun(monitor_service_pb2.WatchRunRequest(run_id="x", types=[42]))
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
