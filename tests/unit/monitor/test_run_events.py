"""Outbox events become `RunEvent`s with exactly one typed payload per kind."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.executor.v1 import run_pb2
from conveyor.kernel import outbox
from conveyor.kernel.outbox import Event
from conveyor.monitor.events import PAYLOADS, event_pb
from conveyor.monitor.v1 import event_pb2

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PAYLOAD = event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"]


def event(type_: str, **fields: Any) -> Event:
    return Event(run_id="r1", sequence=7, type=type_, time=WHEN, **fields)


def test_every_outbox_kind_has_one_payload_member_and_one_filter_value() -> None:
    kinds = {outbox.RUN_STATE_CHANGED, outbox.STEP_STATE_CHANGED, outbox.STEP_LOG}
    kinds |= {outbox.STEP_PROGRESS}
    assert set(PAYLOADS) == kinds
    filters = {v.name.removeprefix("EVENT_TYPE_") for v in event_pb2.EventType.DESCRIPTOR.values}
    assert filters - {"UNSPECIFIED"} == kinds
    samples = {
        outbox.RUN_STATE_CHANGED: event(outbox.RUN_STATE_CHANGED, run_state="RUNNING"),
        outbox.STEP_STATE_CHANGED: event(
            outbox.STEP_STATE_CHANGED, node_id="a", step_state="QUEUED", attempt=1
        ),
        outbox.STEP_LOG: event(
            outbox.STEP_LOG, node_id="a", attempt=1, message="hi\n", data={"stream": "stdout"}
        ),
        outbox.STEP_PROGRESS: event(outbox.STEP_PROGRESS, node_id="a", attempt=1),
    }
    members = set()
    for kind, ev in samples.items():
        built = event_pb(ev)
        member = built.WhichOneof("payload")
        assert member is not None, kind
        assert (built.sequence, built.run_id, built.event_time.ToDatetime(UTC)) == (7, "r1", WHEN)
        members.add(member)
    assert members == {f.name for f in PAYLOAD.fields}


def test_a_step_end_carries_its_exit_code_category_and_handle_as_fields() -> None:
    built = event_pb(
        event(
            outbox.STEP_STATE_CHANGED,
            node_id="build",
            step_state="FAILED",
            attempt=2,
            message="exit code 3",
            data={"exit_code": 3, "error_category": "NONZERO_EXIT", "handle": "false"},
        )
    )
    step = built.step_state_changed
    assert (step.node_id, step.state, step.attempt) == ("build", run_pb2.STEP_STATE_FAILED, 2)
    assert step.message == "exit code 3"
    assert step.HasField("exit_code") and step.exit_code == 3
    assert step.error_category == run_pb2.ERROR_CATEGORY_NONZERO_EXIT
    assert step.handle == "false"
    assert not step.HasField("retry_delay") and not step.worker


def test_a_retry_wait_carries_its_delay_and_a_start_its_worker() -> None:
    retry = event_pb(
        event(
            outbox.STEP_STATE_CHANGED,
            node_id="flaky",
            step_state="WAITING",
            attempt=1,
            data={"error_category": "TIMEOUT", "retry_in_s": 1.5},
        )
    ).step_state_changed
    assert retry.retry_delay.ToMilliseconds() == 1500
    assert retry.error_category == run_pb2.ERROR_CATEGORY_TIMEOUT
    assert not retry.HasField("exit_code")
    assert retry.waiting_for == event_pb2.WAIT_REASON_UNSPECIFIED
    started = event_pb(
        event(outbox.STEP_STATE_CHANGED, node_id="a", step_state="RUNNING", data={"worker": "w1"})
    ).step_state_changed
    assert (started.state, started.worker) == (run_pb2.STEP_STATE_RUNNING, "w1")


def test_waits_say_what_they_wait_for() -> None:
    approval = event_pb(
        event(
            outbox.STEP_STATE_CHANGED,
            node_id="ok",
            step_state="WAITING",
            data={"waiting_for": "approval", "timeout_s": 3600},
        )
    ).step_state_changed
    assert approval.waiting_for == event_pb2.WAIT_REASON_APPROVAL
    assert approval.wait_timeout.seconds == 3600
    child = event_pb(
        event(
            outbox.STEP_STATE_CHANGED,
            node_id="sub",
            step_state="WAITING",
            data={"waiting_for": "subworkflow", "child_run_id": "r2"},
        )
    ).step_state_changed
    assert (child.waiting_for, child.child_run_id) == (event_pb2.WAIT_REASON_SUBWORKFLOW, "r2")
    assert not child.HasField("wait_timeout")


def test_run_log_and_progress_payloads() -> None:
    run = event_pb(event(outbox.RUN_STATE_CHANGED, run_state="PENDING", message="started by x"))
    assert run.run_state_changed.state == run_pb2.RUN_STATE_PENDING
    assert run.run_state_changed.message == "started by x"
    log = event_pb(
        event(
            outbox.STEP_LOG,
            node_id="p",
            attempt=2,
            message="out\n",
            data={"stream": "stderr", "chunk": 3, "offset": 40, "truncated": True},
        )
    ).step_log
    assert (log.node_id, log.attempt, log.stream) == ("p", 2, event_pb2.LOG_STREAM_STDERR)
    assert (log.text, log.chunk, log.offset, log.truncated) == ("out\n", 3, 40, True)
    progress = event_pb(
        event(
            outbox.STEP_PROGRESS,
            node_id="loop",
            attempt=1,
            message="3/8 items, 1 failed",
            data={"items_done": 3, "items_failed": 1, "items_total": 8},
        )
    ).step_progress
    assert (progress.node_id, progress.attempt) == ("loop", 1)
    assert (progress.items_done, progress.items_failed, progress.items_total) == (3, 1, 8)


def test_an_unknown_kind_or_value_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        event_pb(event("STEP_EXPLODED"))
    with pytest.raises(ValueError, match="error category"):
        event_pb(
            event(
                outbox.STEP_STATE_CHANGED,
                step_state="FAILED",
                data={"error_category": "GREMLINS"},
            )
        )
    with pytest.raises(ValueError, match="run state"):
        event_pb(event(outbox.RUN_STATE_CHANGED))
