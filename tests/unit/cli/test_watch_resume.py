"""`conveyor runs watch` resumes after a dropped connection from the last change it printed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from conveyor.cli import main
from conveyor.cli import runs as runs_cli
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from conveyor.monitor.v1 import monitor_service_pb2


class Dropped(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection reset"

    def trailing_metadata(self) -> tuple[()]:
        return ()


def change(seq: int, run_id: str) -> monitor_service_pb2.WatchRunsResponse:
    out = monitor_service_pb2.WatchRunsResponse(sequence=seq, job_name="hello")
    out.event.run_id = run_id
    out.event.run_state_changed.state = run_pb2.RUN_STATE_SUCCEEDED
    return out


class FakeMonitor:
    def __init__(self) -> None:
        self.requests: list[monitor_service_pb2.WatchRunsRequest] = []

    def WatchRuns(self, request: Any) -> Iterator[Any]:  # noqa: N802
        self.requests.append(request)
        if len(self.requests) == 1:
            yield change(7, "a")
            raise Dropped()
        if len(self.requests) == 2:
            raise Dropped()
        yield change(8, "b")
        raise KeyboardInterrupt  # the user stops the command


class FakeClient:
    def __init__(self) -> None:
        self.monitor = FakeMonitor()

    def close(self) -> None:
        pass


def test_watch_resumes_after_the_last_printed_change(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClient()
    monkeypatch.setattr(runs_cli, "_client", lambda *_a, **_k: fake)
    monkeypatch.setattr(runs_cli.time, "sleep", lambda _s: None)
    result = CliRunner().invoke(main.app, ["runs", "watch"])
    assert result.exit_code == 0, result.output
    first, second, third = fake.monitor.requests[:3]
    assert first.from_now and first.after_sequence == 0
    assert not second.from_now and second.after_sequence == 7
    assert third.after_sequence == 7
    printed = [ln.split()[0] for ln in result.stdout.splitlines() if ln.strip()[:1].isdigit()]
    assert printed == ["7", "8"]
    assert "resuming after 7" in result.output


def test_watch_gives_up_on_a_non_transient_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Denied(Dropped):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.INVALID_ARGUMENT

    class Monitor:
        def WatchRuns(self, request: Any) -> Iterator[Any]:  # noqa: N802
            raise Denied()

    fake = FakeClient()
    fake.monitor = Monitor()  # type: ignore[assignment]
    monkeypatch.setattr(runs_cli, "_client", lambda *_a, **_k: fake)
    result = CliRunner().invoke(main.app, ["runs", "watch"])
    assert result.exit_code == 2


def batch(*sequences: int) -> monitor_service_pb2.WatchRunResponse:
    reply = monitor_service_pb2.WatchRunResponse()
    for seq in sequences:
        reply.events.add(sequence=seq, run_id="r")
    return reply


class BatchedMonitor:
    def __init__(self) -> None:
        self.requests: list[monitor_service_pb2.WatchRunRequest] = []

    def WatchRun(self, request: Any) -> Iterator[Any]:  # noqa: N802
        self.requests.append(request)
        if len(self.requests) == 1:
            yield batch(1, 2, 3)
            raise Dropped()
        yield batch(4)
        yield batch(5, 6)


def test_following_a_run_yields_each_event_of_a_batch_and_resumes_after_its_last() -> None:
    client = Client("127.0.0.1:1")  # never connects: the monitor is a fake
    fake = BatchedMonitor()
    client.monitor = fake  # type: ignore[assignment]
    try:
        seen = [event.sequence for event in client.watch("r", node_id="a")]
    finally:
        client.close()
    assert seen == [1, 2, 3, 4, 5, 6]
    assert [r.after_sequence for r in fake.requests] == [0, 3]
    assert fake.requests[1].node_id == "a"
