"""kill -9 of the executor, monitor, gateway and scheduler mid-load, each started again:
nothing is lost, and an every-second schedule is neither missed nor doubled."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import duration_pb2
from sqlalchemy import text

from conveyor.scheduler.domain import Calendar, Spec
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from conveyor.translator.v1 import translator_service_pb2
from tests.chaos.load import Load, call, long_mode, marker
from tests.chaos.stack import Stack, chaos_stack
from tests.integration import workflows as wf

pytestmark = [pytest.mark.chaos, pytest.mark.distributed, pytest.mark.timeout(3600)]
VICTIMS = ("executor", "monitor", "gateway", "scheduler")


def _schedule(load: Load, job_id: str, start: datetime, end: datetime) -> Any:
    scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(load._channel)
    spec = schedule_pb2.ScheduleSpec()
    spec.cron.expression = "* * * * * *"
    spec.start_time.FromDatetime(start)
    spec.end_time.FromDatetime(end)
    return call(
        scheduler.CreateSchedule,
        scheduler_service_pb2.CreateScheduleRequest(
            schedule=schedule_pb2.Schedule(
                job_id=job_id,
                spec=spec,
                policies=schedule_pb2.SchedulePolicies(
                    overlap=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL,
                    catchup_mode=schedule_pb2.CATCHUP_MODE_ALL,
                    catchup_window=duration_pb2.Duration(seconds=3600),
                ),
            )
        ),
        errors=load.errors,
    ).schedule


def _kill_services(stack: Stack, rounds: int, gap_s: float, done: list[str]) -> None:
    for _ in range(rounds):
        for svc in VICTIMS:
            time.sleep(gap_s)
            stack.kill(svc)
            done.append(svc)
            time.sleep(1)
            stack.start_service(svc)


def test_service_kills_lose_nothing_and_schedules_fire_once(tmp_path: Path) -> None:
    runs, rounds, gap = (120, 4, 6.0) if long_mode() else (21, 1, 5.0)
    window_s = int(rounds * len(VICTIMS) * (gap + 4) + 10)
    with chaos_stack(tmp_path, workers=2) as stack:
        load = Load(stack, tmp_path / "marks.log", tmp_path / "flags")
        faults: list[str] = []
        try:
            load.create_jobs()
            tick = call(
                load.translator.CreateJob,
                translator_service_pb2.CreateJobRequest(
                    workflow_json=wf.doc("chaos-tick", [marker("tick", load.marks, 0.1)], []),
                    update_existing=True,
                ),
                errors=load.errors,
            ).job
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
            end = start + timedelta(seconds=window_s)
            schedule = _schedule(load, tick.job_id, start, end)
            expected = Calendar(
                Spec(kind="cron", cron="* * * * * *", start=start, end=end)
            ).upcoming(start - timedelta(seconds=1), 10 * window_s)
            load.start_approver()
            chaos = threading.Thread(
                target=_kill_services, args=(stack, rounds, gap, faults), daemon=True
            )
            chaos.start()
            load.submit_over(runs, window_s * 0.8)
            chaos.join()
            while datetime.now(UTC) < end + timedelta(seconds=5):
                time.sleep(0.5)
            states = load.wait_all(timeout_s=400 if long_mode() else 150)
            figures = load.report(states, faults=len(faults), name="service kill -9")
            sid = schedule.schedule_id
            with stack.engine.connect() as conn:
                keys = [
                    r
                    for (r,) in conn.execute(
                        text("SELECT request_id FROM job_runs WHERE job_id = :j"),
                        {"j": tick.job_id},
                    )
                ]
            want = sorted(f"{sid}:{t.isoformat()}" for t in expected)
            doubled = len(keys) - len(set(keys))
            missed = sorted(set(want) - set(keys))
            print({"schedule_fires_expected": len(want), "missed": len(missed), "doubled": doubled})
            assert figures["lost"] == 0
            assert doubled == 0
            assert not missed, f"fires missed: {missed}"
            assert sorted(keys) == want
        finally:
            load.close()
