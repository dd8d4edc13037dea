"""A stream's resume position, event kind and batches come from the proto's declarations."""

from __future__ import annotations

import json

from conveyor.executor.v1 import executor_service_pb2
from conveyor.gateway.frames import batch_elements, resume_field, sse_encoder, sse_event, ws_events
from conveyor.gateway.openapi import openapi_document
from conveyor.gateway.transcode import routes_for
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2


def _events(raw: bytes) -> list[dict[str, str]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            fields[key] = value
        out.append(fields)
    return out


def _sse(message: object) -> dict[str, str]:
    (only,) = _events(sse_event(message))  # type: ignore[arg-type]
    return only


def _batch(*events: event_pb2.RunEvent) -> monitor_service_pb2.WatchRunResponse:
    return monitor_service_pb2.WatchRunResponse(events=list(events))


def test_a_run_event_is_sent_with_its_sequence_and_kind() -> None:
    reply = _batch(
        event_pb2.RunEvent(sequence=7, run_id="r", step_log=event_pb2.StepLog(text="hi"))
    )
    sent = _sse(reply)
    assert (sent["id"], sent["event"]) == ("7", "step_log")
    assert json.loads(sent["data"])["event"]["run_id"] == "r"
    assert json.loads(sent["data"])["event"]["step_log"]["text"] == "hi"
    (frame,) = [json.loads(f) for f in ws_events(reply)]
    assert (frame["id"], frame["event"]) == (7, "step_log")
    assert frame["data"] == json.loads(sent["data"])


def _three() -> monitor_service_pb2.WatchRunResponse:
    return _batch(
        event_pb2.RunEvent(
            sequence=3, run_id="r", step_state_changed=event_pb2.StepStateChanged(node_id="a")
        ),
        event_pb2.RunEvent(sequence=4, run_id="r", step_log=event_pb2.StepLog(text="out")),
        event_pb2.RunEvent(
            sequence=5, run_id="r", run_state_changed=event_pb2.RunStateChanged(message="done")
        ),
    )


def test_a_batch_is_one_event_per_element_with_the_single_event_shape() -> None:
    reply = _three()
    sent = _events(sse_event(reply))
    assert [(e["id"], e["event"]) for e in sent] == [
        ("3", "step_state_changed"),
        ("4", "step_log"),
        ("5", "run_state_changed"),
    ]
    datas = [json.loads(e["data"]) for e in sent]
    assert [list(d) for d in datas] == [["event"]] * 3
    assert [d["event"]["sequence"] for d in datas] == ["3", "4", "5"]
    assert datas[1]["event"]["step_log"]["text"] == "out"
    frames = [json.loads(f) for f in ws_events(reply)]
    assert [(f["id"], f["event"]) for f in frames] == [
        (3, "step_state_changed"),
        (4, "step_log"),
        (5, "run_state_changed"),
    ]
    assert [f["data"] for f in frames] == datas


def test_a_backends_raw_batch_gives_the_same_events_as_the_decoded_one() -> None:
    reply = _three()
    raw = reply.SerializeToString()
    assert batch_elements(raw, 2) == [e.SerializeToString() for e in reply.events]
    encode = sse_encoder(monitor_service_pb2.WatchRunResponse)
    assert encode(raw) == sse_event(reply)
    # The same events cut into other batches (another watcher's queue) read the same.
    first, *rest = reply.events
    again = encode(_batch(first).SerializeToString()) + encode(_batch(*rest).SerializeToString())
    assert again == encode(raw)


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
        assert _sse(_batch(event))["event"] == kind
    names = {f.name for f in event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert set(cases) | {"step_log"} == names


def test_an_event_without_a_payload_is_named_after_its_message() -> None:
    reply = _batch(event_pb2.RunEvent(sequence=4))
    assert _sse(reply)["event"] == "WatchRunResponse"
    encode = sse_encoder(monitor_service_pb2.WatchRunResponse)
    assert encode(reply.SerializeToString()) == sse_event(reply)


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


def test_the_openapi_document_describes_one_event_per_batch_element() -> None:
    routes = routes_for([monitor_service_pb2.DESCRIPTOR.services_by_name["MonitorService"]])
    doc = openapi_document(routes, version="test")
    run_events = doc["paths"]["/v1/runs/{run_id}/events"]["get"]["responses"]["200"]
    assert run_events["x-event-schema"] == {
        "type": "object",
        "properties": {"event": {"$ref": "#/components/schemas/conveyor.monitor.v1.RunEvent"}},
        "required": ["event"],
    }
    assert "one per element of the response's `events`" in run_events["description"]
    assert "conveyor.monitor.v1.RunEvent" in doc["components"]["schemas"]
    # A stream without a declared batch still sends its response message as the event.
    feed = doc["paths"]["/v1/runs:watch"]["get"]["responses"]["200"]["x-event-schema"]
    assert feed == {"$ref": "#/components/schemas/conveyor.monitor.v1.WatchRunsResponse"}
