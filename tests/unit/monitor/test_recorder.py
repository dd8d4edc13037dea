"""The metrics recorder: run and step events become counters and histograms, with what
events do not carry asked of the executor once per batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY

from conveyor.kernel.outbox import RUN_STATE_CHANGED, STEP_LOG, STEP_STATE_CHANGED, Event
from conveyor.monitor.recorder import MetricsRecorder
from conveyor.monitor.runstats import Attempt

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeRuns:
    """Knows run r1 (job `rec-job`) with node `n` (type `rec.type`), whose attempt 1 ran 2.5 s."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str, int]]] = []

    def describe(self, keys: Sequence[tuple[str, str, int]]) -> list[Attempt]:
        self.calls.append(list(keys))
        found = []
        for run_id, node_id, attempt in keys:
            if run_id != "r1":
                continue
            wall = 2.5 if (node_id, attempt) == ("n", 1) else None
            node_type = "rec.type" if node_id else ""
            found.append(Attempt(run_id, node_id, attempt, "rec-job", node_type, wall))
        return found


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(seq: int, type_: str, run_id: str = "r1", **fields: Any) -> Event:
    return Event(run_id=run_id, sequence=seq, type=type_, time=NOW, **fields)


def test_a_batch_is_looked_up_once_and_moves_the_metrics() -> None:
    runs = FakeRuns()
    recorder = MetricsRecorder(runs)  # type: ignore[arg-type]
    seen: list[int] = []
    recorder.listeners.append(lambda ev: seen.append(ev.sequence))
    before_runs = sample("conveyor_runs_total", job="rec-job", state="FAILED")
    failed = {"type": "rec.type", "state": "FAILED", "category": "NONZERO_EXIT"}
    before_steps = sample("conveyor_steps_total", **failed)
    before_wall = sample("conveyor_step_duration_seconds_sum", type="rec.type")
    before_count = sample("conveyor_step_duration_seconds_count", type="rec.type")

    recorder.record(
        [
            event(1, STEP_STATE_CHANGED, node_id="n", step_state="RUNNING", attempt=1),
            event(
                2,
                STEP_STATE_CHANGED,
                node_id="n",
                step_state="FAILED",
                attempt=1,
                data={"error_category": "NONZERO_EXIT"},
            ),
            event(3, STEP_LOG, node_id="n"),
            event(4, RUN_STATE_CHANGED, run_state="FAILED"),
            event(1, RUN_STATE_CHANGED, run_id="gone", run_state="FAILED"),
        ]
    )

    assert runs.calls == [[("r1", "n", 1), ("r1", "", 0), ("gone", "", 0)]]
    assert sample("conveyor_runs_total", job="rec-job", state="FAILED") == before_runs + 1
    assert sample("conveyor_steps_total", **failed) == before_steps + 1
    assert sample("conveyor_step_duration_seconds_sum", type="rec.type") == before_wall + 2.5
    assert sample("conveyor_step_duration_seconds_count", type="rec.type") == before_count + 1
    assert seen == [1, 2, 3, 4, 1]  # every event reaches the listeners, in order


def test_events_that_move_no_metric_ask_nothing() -> None:
    runs = FakeRuns()
    recorder = MetricsRecorder(runs)  # type: ignore[arg-type]
    recorder.record(
        [
            event(1, RUN_STATE_CHANGED, run_state="RUNNING"),
            event(2, STEP_STATE_CHANGED, node_id="n", step_state="QUEUED", attempt=1),
        ]
    )
    assert runs.calls == []


def test_events_that_tell_their_metric_ask_nothing_and_the_rest_are_asked() -> None:
    runs = FakeRuns()
    recorder = MetricsRecorder(runs)  # type: ignore[arg-type]
    ok = {"type": "own.type", "state": "SUCCEEDED", "category": ""}
    skipped = {"type": "own.type", "state": "SKIPPED", "category": ""}
    before = {
        "runs": sample("conveyor_runs_total", job="own-job", state="SUCCEEDED"),
        "ok": sample("conveyor_steps_total", **ok),
        "skipped": sample("conveyor_steps_total", **skipped),
        "wall": sample("conveyor_step_duration_seconds_sum", type="own.type"),
        "count": sample("conveyor_step_duration_seconds_count", type="own.type"),
    }
    recorder.record(
        [
            event(
                1,
                STEP_STATE_CHANGED,
                run_id="r9",
                node_id="a",
                step_state="SUCCEEDED",
                attempt=1,
                data={"node_type": "own.type", "wall_s": 0.75},
            ),
            event(
                2,
                STEP_STATE_CHANGED,
                run_id="r9",
                node_id="b",
                step_state="SKIPPED",
                data={"node_type": "own.type"},
            ),
            event(
                3,
                RUN_STATE_CHANGED,
                run_id="r9",
                run_state="SUCCEEDED",
                data={"job_name": "own-job"},
            ),
            # No wall time measured (and no node type): the executor is asked.
            event(
                4,
                STEP_STATE_CHANGED,
                node_id="n",
                step_state="FAILED",
                attempt=1,
                data={"node_type": "rec.type", "error_category": "NONZERO_EXIT"},
            ),
            event(5, RUN_STATE_CHANGED, run_state="FAILED", data={"job_name": ""}),
        ]
    )
    assert runs.calls == [[("r1", "n", 1), ("r1", "", 0)]]
    assert sample("conveyor_runs_total", job="own-job", state="SUCCEEDED") == before["runs"] + 1
    assert sample("conveyor_steps_total", **ok) == before["ok"] + 1
    assert sample("conveyor_steps_total", **skipped) == before["skipped"] + 1
    assert sample("conveyor_step_duration_seconds_sum", type="own.type") == before["wall"] + 0.75
    assert sample("conveyor_step_duration_seconds_count", type="own.type") == before["count"] + 1
