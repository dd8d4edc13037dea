"""Fixtures for the step runner tests: a local artifact sink and a context factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.runners import StepContext
from tests.unit.runners.local_sink import LocalArtifactSink

MakeCtx = Callable[..., StepContext]


@pytest.fixture
def sink(tmp_path: Path) -> LocalArtifactSink:
    return LocalArtifactSink(tmp_path / "artifacts")


@pytest.fixture
def make_ctx(sink: LocalArtifactSink) -> MakeCtx:
    def make(
        *,
        params: dict[str, Any] | None = None,
        steps: dict[str, Any] | None = None,
        node_id: str = "n",
        **options: Any,
    ) -> StepContext:
        scope = {
            "params": params or {},
            "steps": steps or {},
            "run": {"id": "run-1", "job": "job-1", "trigger": "manual"},
            "secrets": {},
        }
        return StepContext(
            run_id="run-1", node_id=node_id, attempt=1, scope=scope, artifacts=sink, **options
        )

    return make
