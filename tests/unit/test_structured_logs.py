"""Every log line is JSON and carries the request, run and step ids in scope."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from conveyor.kernel.grpcserver import map_errors
from conveyor.kernel.logging import configure_logging, step_log_context

log = structlog.get_logger("conveyor.test")


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", json=True)
    yield stream
    root.handlers[:], root.level = saved
    structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class Servicer:
    @map_errors
    async def GetThing(self, request: Any, context: Any) -> str:  # noqa: N802
        log.info("inside unary")
        return "ok"

    @map_errors
    async def WatchThing(self, request: Any, context: Any) -> AsyncIterator[int]:  # noqa: N802
        log.info("inside stream")
        yield 1


def test_rpc_lines_carry_the_callers_request_id_and_the_requests_ids(lines: io.StringIO) -> None:
    request = SimpleNamespace(run_id="run-7", node_id="fetch")

    async def call() -> None:
        await Servicer().GetThing(request, Context((("x-request-id", "req-42"),)))
        async for _ in Servicer().WatchThing(request, Context(())):
            pass

    asyncio.run(call())
    unary, stream = records(lines)
    assert unary["event"] == "inside unary"
    assert unary["request_id"] == "req-42"
    assert (unary["rpc"], unary["run_id"], unary["step_id"]) == ("GetThing", "run-7", "fetch")
    assert stream["rpc"] == "WatchThing"
    assert len(stream["request_id"]) == 32  # none sent: one is made up
    assert "timestamp" in stream and stream["level"] == "info"


def test_step_lines_carry_run_step_attempt_and_task(lines: io.StringIO) -> None:
    with step_log_context("run-1", "build", 2, "task-9"):
        log.info("in step")
        logging.getLogger("celery.foreign").warning("stdlib record")
    log.info("after")
    inside, foreign, after = records(lines)
    for rec in (inside, foreign):
        assert (rec["run_id"], rec["step_id"], rec["attempt"], rec["task_id"]) == (
            "run-1",
            "build",
            2,
            "task-9",
        )
    assert "run_id" not in after
