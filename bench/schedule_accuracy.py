"""Fire accuracy: nominal fire time -> first step start, over a 1-second cron, distributed mode.

Every service its own process (PostgreSQL, Redis broker and events, one worker process with 4
threads, one scheduler). A schedule `* * * * * *` (ALLOW_ALL) runs a one-step job (`true`)
for FIRES seconds; the scheduler records each fire's lag on its action row.

    python -m bench.schedule_accuracy [--fires 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import write_section
from conveyor.cli.client import Client
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(fires: int) -> tuple[list[float], int]:
    """Lags (seconds) of every fire that started a run, and how many fires there were."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.distributed(Path(tmp), POSTGRES_URL, REDIS_URL, workers=1) as info,
    ):
        client = Client(info["grpc"], token=info["token"])
        channel = harness.grpc_channel(info)
        scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
        job = client.create_job(wf.doc("bench-scheduled", [wf.cmd("tick", ["true"])], [])).job
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        end = start + timedelta(seconds=fires - 1)
        created = harness.every_second_schedule(scheduler, job.job_id, start, end)
        request = scheduler_service_pb2.ListScheduleActionsRequest(
            schedule_id=created.schedule_id, page_size=500
        )
        deadline = time.monotonic() + fires + 120
        actions: list[schedule_pb2.ScheduleAction] = []
        while time.monotonic() < deadline:
            actions = list(scheduler.ListScheduleActions(request).actions)
            done = datetime.now(UTC) > end and len(actions) >= fires
            if done and all(a.HasField("lag") for a in actions):
                break
            time.sleep(2)
        channel.close()
        client.close()
        return [a.lag.ToTimedelta().total_seconds() for a in actions if a.HasField("lag")], len(
            actions
        )


def main() -> None:
    """Measure and write the schedule-accuracy section of docs/performance.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fires", type=int, default=300)
    opts = parser.parse_args()
    lags, count = measure(opts.fires)
    ms = [1000 * x for x in lags]
    md = "\n".join(
        [
            "## Schedule accuracy",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.schedule_accuracy"
            f" --fires {opts.fires}` on {platform.machine()} with {os.cpu_count()} CPUs (shared).",
            "Distributed mode (every service its own process, PostgreSQL, Redis, one worker "
            "process with 4 threads, one scheduler); a `* * * * * *` cron, overlap ALLOW_ALL, "
            "one `true` step per run. Lag = nominal fire time -> the run's first step start "
            "(recorded by the scheduler on each action).",
            "",
            "| fires | with a run | p50 | p90 | p99 | max |",
            "|---|---|---|---|---|---|",
            f"| {count} | {len(ms)} | {statistics.median(ms):.1f} ms | "
            f"{percentile(ms, 90):.1f} ms | {percentile(ms, 99):.1f} ms | {max(ms):.1f} ms |",
        ]
    )
    print(write_section("schedule-accuracy", md))


if __name__ == "__main__":
    main()
