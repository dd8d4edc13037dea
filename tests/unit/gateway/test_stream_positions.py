"""A stream's resume position and event kind come from the proto's declarations."""

from __future__ import annotations

import json

from conveyor.executor.v1 import executor_service_pb2
from conveyor.gateway.transcode import resume_field, sse_event, ws_event
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2


def _sse(message: object) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in sse_event(message).decode().strip().split("\n"):  # type: ignore[arg-type]
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def test_a_run_event_is_sent_with_its_sequence_and_kind() -> None:
    reply = monitor_service_pb2.WatchRunResponse(
        event=event_pb2.RunEvent(sequence=7, type=event_pb2.EVENT_TYPE_STEP_LOG, run_id="r")
    )
    sent = _sse(reply)
    assert (sent["id"], sent["event"]) == ("7", "EVENT_TYPE_STEP_LOG")
    assert json.loads(sent["data"])["event"]["run_id"] == "r"
    frame = json.loads(ws_event(reply))
    assert (frame["id"], frame["event"]) == (7, "EVENT_TYPE_STEP_LOG")


def test_the_feed_position_wins_over_the_held_event_sequence() -> None:
    reply = monitor_service_pb2.WatchRunsResponse(
        sequence=120,
        event=event_pb2.RunEvent(sequence=3, type=event_pb2.EVENT_TYPE_RUN_STATE_CHANGED),
    )
    sent = _sse(reply)
    assert (sent["id"], sent["event"]) == ("120", "WatchRunsResponse")


def test_a_message_without_a_declared_position_has_no_id() -> None:
    sent = _sse(executor_service_pb2.GetRunRequest(run_id="r"))
    assert "id" not in sent and sent["event"] == "GetRunRequest"


def test_requests_declare_where_a_stream_resumes() -> None:
    assert resume_field(monitor_service_pb2.WatchRunRequest.DESCRIPTOR) == "after_sequence"
    assert resume_field(monitor_service_pb2.WatchRunsRequest.DESCRIPTOR) == "after_sequence"
    assert resume_field(executor_service_pb2.ListRunsRequest.DESCRIPTOR) is None
