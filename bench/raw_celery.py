"""The same work done with plain Celery: a task that runs `true`, chained and in a chord."""

from __future__ import annotations

import os
import subprocess
import time

from celery import Celery

BROKER = os.environ.get("BENCH_RAW_BROKER", "redis://127.0.0.1:6379/10")

app = Celery("bench_raw", broker=BROKER, backend=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
)


@app.task(name="bench.run_true")
def run_true(*_: object) -> int:
    """Run `true` as a child process, as a Conveyor action.command step does."""
    return subprocess.run(["true"], check=False).returncode


@app.task(name="bench.join")
def join(results: list[int] | None = None) -> int:
    """The chord callback: a join step that also runs `true`."""
    return subprocess.run(["true"], check=False).returncode + len(results or [])


@app.task(name="bench.started_at")
def started_at(*_: object) -> float:
    """The wall clock when the task began, then run `true` (submit -> start latency)."""
    began = time.time()
    subprocess.run(["true"], check=False)
    return began
