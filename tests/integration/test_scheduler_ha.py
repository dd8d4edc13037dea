"""Two schedulers on one PostgreSQL, one SIGKILLed mid-stream: no fire doubled or lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.scheduler.domain import Calendar, Spec
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

pytestmark = pytest.mark.distributed
WINDOW_S = 20


def all_runs(client: Client, job_id: str) -> list[Any]:
    runs: list[Any] = []
    token = ""
    while True:
        reply = client.executor.ListRuns(
            executor_service_pb2.ListRunsRequest(job_id=job_id, page_size=500, page_token=token)
        )
        runs += reply.runs
        token = reply.next_page_token
        if not token:
            return runs


def test_two_schedulers_one_killed_no_duplicate_no_missed_fire(tmp_path: Path) -> None:
    with harness.distributed(tmp_path, POSTGRES_URL, REDIS_URL, workers=1) as info:
        second_port = harness.free_port()
        env = {
            **info["env"],
            "CONVEYOR_SCHEDULER_ADDR": f"127.0.0.1:{second_port}",
            "CONVEYOR_SCHEDULER_METRICS_PORT": "0",  # the first one holds the port
        }
        log = (info["logs"] / "scheduler-b.log").open("wb")
        second = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "scheduler"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            harness.wait_serving(f"127.0.0.1:{second_port}", procs=[second])
            _exercise(info, second, f"127.0.0.1:{second_port}")
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGTERM)
                second.wait(timeout=15)


def _exercise(info: dict[str, Any], second: subprocess.Popen[bytes], survivor: str) -> None:
    client = Client(info["grpc"], token=info["token"])
    channel = harness.grpc_channel(info)
    scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
    job = client.create_job(wf.doc("it-ha", [wf.cmd("tick", ["true"])], [])).job
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    end = start + timedelta(seconds=WINDOW_S)
    created = harness.every_second_schedule(scheduler, job.job_id, start, end)
    expected = Calendar(Spec(kind="cron", cron="* * * * * *", start=start, end=end)).upcoming(
        start - timedelta(seconds=1), 10 * WINDOW_S
    )
    assert len(expected) == WINDOW_S + 1

    # Mid-window, SIGKILL whichever scheduler carried out the latest fire (so the victim was
    # certainly active), and keep talking to the other one directly.
    first = next(p for p in info["procs"] if "scheduler" in p.args)
    addresses = {first.pid: info["env"]["CONVEYOR_SCHEDULER_ADDR"], second.pid: survivor}
    processes = {first.pid: first, second.pid: second}
    while datetime.now(UTC) < start + timedelta(seconds=WINDOW_S / 2):
        time.sleep(0.1)
    with harness.internal_channel(info, survivor) as ch:
        recent = scheduler_service_pb2_grpc.SchedulerServiceStub(ch).ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(schedule_id=created.schedule_id)
        )
    latest = next(a for a in recent.actions if a.scheduler)
    victim_pid = int(latest.scheduler.rsplit(":", 1)[1])
    victim = processes[victim_pid]
    alive = next(p for pid, p in processes.items() if pid != victim_pid)
    survivor = addresses[alive.pid]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    sid = created.schedule_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = all_runs(client, job.job_id)
        if len(runs) >= len(expected) and datetime.now(UTC) > end:
            break
        time.sleep(0.5)
    time.sleep(1)  # a duplicate, were there one, would have had the time to appear
    runs = all_runs(client, job.job_id)
    assert alive.poll() is None, "the surviving scheduler died"

    assert all(r.trigger == run_pb2.RUN_TRIGGER_SCHEDULE for r in runs)
    keys = sorted(r.request_id for r in runs)
    assert len(keys) == len(set(keys)), "a fire started two runs"
    want = sorted(f"{sid}:{t.isoformat()}" for t in expected)
    assert keys == want, f"missing {sorted(set(want) - set(keys))} extra {set(keys) - set(want)}"

    # The gateway routes to the killed scheduler; ask the survivor directly.
    direct = harness.internal_channel(info, survivor)
    actions = (
        scheduler_service_pb2_grpc.SchedulerServiceStub(direct)
        .ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(schedule_id=sid, page_size=500)
        )
        .actions
    )
    assert len(actions) == len(expected)
    assert {a.outcome for a in actions} == {schedule_pb2.ACTION_OUTCOME_STARTED}
    direct.close()
    channel.close()
    client.close()
