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
        event=event_pb2.RunEvent(sequence=7, run_id="r", step_log=event_pb2.StepLog(text="hi"))
    )
    sent = _sse(reply)
    assert (sent["id"], sent["event"]) == ("7", "step_log")
    assert json.loads(sent["data"])["event"]["run_id"] == "r"
    assert json.loads(sent["data"])["event"]["step_log"]["text"] == "hi"
    frame = json.loads(ws_event(reply))
    assert (frame["id"], frame["event"]) == (7, "step_log")


def test_the_event_name_follows_the_payload_case() -> None:
    cases = {
        "run_state_changed": event_pb2.RunEvent(
            sequence=1, run_state_changed=event_pb2.RunStateChanged()
        ),
        "step_state_changed": event_pb2.RunEvent(
            sequence=2, step_state_changed=event_pb2.StepStateChanged(node_id="a")
        ),
        "step_progress": event_pb2.RunEvent(
            sequence=3, step_progress=event_pb2.StepProgress(items_total=2)
        ),
    }
    for kind, event in cases.items():
        assert _sse(monitor_service_pb2.WatchRunResponse(event=event))["event"] == kind
    names = {f.name for f in event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert set(cases) | {"step_log"} == names


def test_an_event_without_a_payload_is_named_after_its_message() -> None:
    reply = monitor_service_pb2.WatchRunResponse(event=event_pb2.RunEvent(sequence=4))
    assert _sse(reply)["event"] == "WatchRunResponse"


def test_the_feed_position_wins_over_the_held_event_sequence() -> None:
    reply = monitor_service_pb2.WatchRunsResponse(
        sequence=120,
        event=event_pb2.RunEvent(sequence=3, run_state_changed=event_pb2.RunStateChanged()),
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
