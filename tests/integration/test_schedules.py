"""Schedules through the gateway (gRPC and HTTP), in the embedded and the distributed mode."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2

from conveyor.cli.client import Client
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.kernel.grpcserver import error_details
from conveyor.scheduler.v1 import schedule_pb2, scheduler_service_pb2, scheduler_service_pb2_grpc
from tests.integration import harness
from tests.integration import workflows as wf

QUICK = wf.doc("it-scheduled", [wf.cmd("tick", ["true"])], [])


@pytest.fixture
def scheduler(stack: dict[str, Any]) -> Any:
    channel = harness.grpc_channel(stack)
    yield scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
    channel.close()


def wait_for(predicate: Any, *, what: str, limit_s: float = 60.0) -> Any:
    """Poll until predicate() is truthy (the limit only stops a hung test)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


def test_http_created_cron_schedule_starts_runs_with_trigger_schedule(
    stack: dict[str, Any], client: Client, scheduler: Any
) -> None:
    job = client.create_job(QUICK).job
    body = {
        "schedule": {
            "job_id": job.name,
            "spec": {"cron": {"expression": "* * * * * *"}, "time_zone": "Europe/Berlin"},
            "policies": {"overlap": "OVERLAP_POLICY_ALLOW_ALL"},
        }
    }
    reply = httpx.post(
        f"{stack['http']}/v1/schedules", json=body, timeout=30, headers=harness.http_headers(stack)
    )
    assert reply.status_code == 200, reply.text
    created = reply.json()["schedule"]
    assert created["job_id"] == job.job_id
    sid = created["schedule_id"]

    def started() -> list[Any]:
        actions = scheduler.ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(schedule_id=sid)
        ).actions
        done = [a for a in actions if a.outcome == schedule_pb2.ACTION_OUTCOME_STARTED]
        return done if len(done) >= 3 else []

    wait_for(started, what="three scheduled runs")
    scheduler.PauseSchedule(scheduler_service_pb2.PauseScheduleRequest(schedule_id=sid, note="t"))
    actions = [
        a
        for a in scheduler.ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(schedule_id=sid)
        ).actions
        if a.outcome == schedule_pb2.ACTION_OUTCOME_STARTED
    ]
    for action in actions:
        run = client.get_run(action.run_id)
        assert run.trigger == run_pb2.RUN_TRIGGER_SCHEDULE
        assert run.request_id == f"{sid}:{action.nominal_time.ToDatetime(tzinfo=UTC).isoformat()}"
    assert len({a.run_id for a in actions}) == len(actions)
    nominal = sorted(a.nominal_time.ToDatetime() for a in actions)
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(nominal))

    def lag_known() -> bool:
        got = scheduler.ListScheduleActions(
            scheduler_service_pb2.ListScheduleActionsRequest(schedule_id=sid)
        ).actions
        return any(a.HasField("lag") and a.run_id for a in got)

    wait_for(lag_known, what="the lag of a fire")
    listed = httpx.get(
        f"{stack['http']}/v1/schedules/{sid}/actions",
        timeout=30,
        headers=harness.http_headers(stack),
    ).json()
    with_lag = [a for a in listed["actions"] if a.get("lag")]
    assert with_lag and all(a["run_id"] for a in with_lag)

    def lag_observed() -> bool:
        body = httpx.get(
            f"{stack['http']}/metrics", timeout=30, headers=harness.http_headers(stack)
        ).text
        return any(
            line.startswith("conveyor_schedule_lag_seconds_count") and float(line.split()[-1]) > 0
            for line in body.splitlines()
        )

    wait_for(lag_observed, what="conveyor_schedule_lag_seconds at the gateway's /metrics")


def test_trigger_obeys_skip_policy_and_update_changes_the_spec(
    client: Client, scheduler: Any
) -> None:
    job = client.create_job(wf.SLEEPER).job
    far = datetime.now(UTC) + timedelta(days=30)
    spec = schedule_pb2.ScheduleSpec()
    spec.once.run_time.FromDatetime(far)
    created = scheduler.CreateSchedule(
        scheduler_service_pb2.CreateScheduleRequest(
            schedule=schedule_pb2.Schedule(job_id=job.job_id, spec=spec)
        )
    ).schedule
    first = scheduler.TriggerSchedule(
        scheduler_service_pb2.TriggerScheduleRequest(schedule_id=created.schedule_id)
    ).action
    assert first.outcome == schedule_pb2.ACTION_OUTCOME_STARTED
    second = scheduler.TriggerSchedule(
        scheduler_service_pb2.TriggerScheduleRequest(schedule_id=created.schedule_id)
    ).action
    assert second.outcome == schedule_pb2.ACTION_OUTCOME_SKIPPED
    assert first.run_id in second.message
    client.executor.CancelRun(executor_service_pb2.CancelRunRequest(run_id=first.run_id))

    new = schedule_pb2.Schedule(schedule_id=created.schedule_id)
    new.spec.cron.expression = "0 9 * * 1-5"
    new.spec.time_zone = "America/New_York"
    updated = scheduler.UpdateSchedule(
        scheduler_service_pb2.UpdateScheduleRequest(
            schedule=new, update_mask=field_mask_pb2.FieldMask(paths=["spec"])
        )
    ).schedule
    nxt = updated.next_run_time.ToDatetime(tzinfo=UTC)
    local = nxt.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5


BAD_SPECS = [
    ({"cron": {"expression": "61 * * * *"}}, "schedule.spec.cron.expression", "INVALID_CRON"),
    ({"cron": {"expression": "* * *"}}, "schedule.spec.cron.expression", "INVALID_CRON"),
    (
        {"cron": {"expression": "0 * * * *"}, "time_zone": "Mars/Olympus"},
        "schedule.spec.time_zone",
        "UNKNOWN_TIME_ZONE",
    ),
    (
        {
            "interval": {"every": "60s"},
            "start_time": "2030-01-02T00:00:00Z",
            "end_time": "2030-01-01T00:00:00Z",
        },
        "schedule.spec.end_time",
        "END_BEFORE_START",
    ),
    ({"interval": {"every": "0s"}}, "schedule.spec.interval.every", "OUT_OF_RANGE"),
    ({}, "schedule.spec", "REQUIRED"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_SPECS)
def test_bad_spec_is_invalid_argument_and_nothing_is_saved(
    stack: dict[str, Any], client: Client, spec: dict[str, Any], field: str, reason: str
) -> None:
    job = client.create_job(QUICK).job
    before = httpx.get(
        f"{stack['http']}/v1/schedules?page_size=500",
        timeout=30,
        headers=harness.http_headers(stack),
    ).json()
    reply = httpx.post(
        f"{stack['http']}/v1/schedules",
        json={"schedule": {"job_id": job.job_id, "spec": spec}},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    violations = [v for d in error["details"] for v in d.get("fieldViolations", [])]
    assert {"field": field, "reason": reason} in [
        {"field": v["field"], "reason": v["reason"]} for v in violations
    ]
    after = httpx.get(
        f"{stack['http']}/v1/schedules?page_size=500",
        timeout=30,
        headers=harness.http_headers(stack),
    ).json()
    assert len(after.get("schedules", [])) == len(before.get("schedules", []))


def test_schedule_for_missing_job_is_not_found_with_field(scheduler: Any) -> None:
    spec = schedule_pb2.ScheduleSpec()
    spec.cron.expression = "0 * * * *"
    with pytest.raises(grpc.RpcError) as caught:
        scheduler.CreateSchedule(
            scheduler_service_pb2.CreateScheduleRequest(
                schedule=schedule_pb2.Schedule(job_id="no-such-job", spec=spec)
            )
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    _reason, violations = error_details(caught.value)
    assert [v[0] for v in violations] == ["schedule.job_id"]


def test_preview_over_http_is_dst_correct(stack: dict[str, Any]) -> None:
    reply = httpx.post(
        f"{stack['http']}/v1/schedules:preview",
        json={
            "spec": {"cron": {"expression": "30 2 * * *"}, "time_zone": "Europe/Berlin"},
            "count": 3,
            "after_time": "2026-10-24T12:00:00Z",
        },
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["fire_times"] == [
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
    ]


def test_http_patch_pause_resume_trigger_idempotency_and_paging(
    stack: dict[str, Any], client: Client, scheduler: Any
) -> None:
    job = client.create_job(wf.doc("it-paging", [wf.cmd("tick", ["true"])], [])).job
    http = stack["http"]
    made = [
        httpx.post(
            f"{http}/v1/schedules",
            json={
                "schedule": {
                    "job_id": job.job_id,
                    "spec": {"interval": {"every": "3600s"}},
                    "description": f"paging {i}",
                },
                "request_id": f"paging-{stack['mode']}-{i}",
            },
            timeout=30,
            headers=harness.http_headers(stack),
        ).json()["schedule"]
        for i in range(3)
    ]
    again = httpx.post(
        f"{http}/v1/schedules",
        json={
            "schedule": {"job_id": job.job_id, "spec": {"interval": {"every": "3600s"}}},
            "request_id": f"paging-{stack['mode']}-0",
        },
        timeout=30,
        headers=harness.http_headers(stack),
    ).json()["schedule"]
    assert again["schedule_id"] == made[0]["schedule_id"]

    sid = made[0]["schedule_id"]
    patched = httpx.patch(
        f"{http}/v1/schedules/{sid}?update_mask=description,policies.overlap",
        json={"description": "patched", "policies": {"overlap": "OVERLAP_POLICY_BUFFER_ONE"}},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()["schedule"]
    assert body["description"] == "patched"
    assert body["policies"]["overlap"] == "OVERLAP_POLICY_BUFFER_ONE"
    assert body["spec"]["interval"]["every"] == "3600s"  # unmasked fields untouched

    bad = httpx.patch(
        f"{http}/v1/schedules/{sid}?update_mask=paused",
        json={"paused": True},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert bad.status_code == 400
    assert "update_mask" in bad.text

    paused = httpx.post(
        f"{http}/v1/schedules/{sid}:pause",
        json={"note": "maint"},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert paused.json()["schedule"]["paused"] is True
    assert paused.json()["schedule"]["note"] == "maint"
    resumed = httpx.post(
        f"{http}/v1/schedules/{sid}:resume",
        json={"note": "back"},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert resumed.json()["schedule"]["paused"] is False
    next_run = datetime.fromisoformat(resumed.json()["schedule"]["next_run_time"])
    assert next_run > datetime.now(UTC)

    first = httpx.post(
        f"{http}/v1/schedules/{sid}:trigger",
        json={"request_id": "k1"},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    second = httpx.post(
        f"{http}/v1/schedules/{sid}:trigger",
        json={"request_id": "k1"},
        timeout=30,
        headers=harness.http_headers(stack),
    )
    assert first.json()["action"]["outcome"] == "ACTION_OUTCOME_STARTED"
    assert second.json()["action"]["run_id"] == first.json()["action"]["run_id"]

    seen: list[str] = []
    token = ""
    while True:
        page = scheduler.ListSchedules(
            scheduler_service_pb2.ListSchedulesRequest(
                page_size=1, page_token=token, job_id=job.job_id
            )
        )
        seen += [s.schedule_id for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    assert [m["schedule_id"] for m in made] == seen

    assert (
        httpx.delete(
            f"{http}/v1/schedules/{sid}", timeout=30, headers=harness.http_headers(stack)
        ).status_code
        == 200
    )
    gone = httpx.get(f"{http}/v1/schedules/{sid}", timeout=30, headers=harness.http_headers(stack))
    assert gone.status_code == 404


def test_cli_create_list_preview_and_actions(stack: dict[str, Any], client: Client) -> None:
    from typer.testing import CliRunner

    from conveyor.cli.main import app

    job = client.create_job(QUICK).job
    runner = CliRunner(env={"CONVEYOR_TOKEN": stack["token"]})
    server = ["--server", stack["grpc"]]
    made = runner.invoke(
        app,
        ["schedules", "create", job.name, "--cron", "0 3 * * *", "--tz", "Asia/Tokyo", *server],
    )
    assert made.exit_code == 0, made.output
    sid = made.output.split()[0]
    listed = runner.invoke(app, ["schedules", "list", "--job", job.job_id, *server])
    assert sid in listed.output
    shown = runner.invoke(app, ["schedules", "show", sid, *server])
    assert '"time_zone": "Asia/Tokyo"' in shown.output
    preview = runner.invoke(
        app, ["schedules", "preview", "--cron", "0 3 * * *", "--tz", "Asia/Tokyo", *server]
    )
    assert preview.exit_code == 0
    times = [line for line in preview.output.splitlines() if line.startswith("20")]
    assert len(times) == 10 and all(line.endswith("T18:00:00Z") for line in times)
    fired = runner.invoke(app, ["schedules", "trigger", sid, *server])
    # (in embedded mode the suite's own log lines share this process's stdout)
    assert fired.output.splitlines()[-1].startswith("STARTED")
    acts = runner.invoke(app, ["schedules", "actions", sid, *server])
    assert "STARTED" in acts.output
    bad = runner.invoke(app, ["schedules", "create", job.name, "--cron", "nope", *server])
    assert bad.exit_code == 2
    assert "INVALID_CRON" in bad.output
