"""Outbox events as the contract's `RunEvent`: the fields every event shares and one typed
payload per kind, built from the stored row's columns and its `data` keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conveyor.kernel import outbox
from conveyor.kernel.outbox import Event
from conveyor.kernel.protoconv import duration, timestamp
from conveyor.monitor.states import error_category, run_state, step_state
from conveyor.monitor.v1 import event_pb2

_LOG_STREAMS: dict[str, event_pb2.LogStream] = {
    "stdout": event_pb2.LOG_STREAM_STDOUT,
    "stderr": event_pb2.LOG_STREAM_STDERR,
}
_WAIT_REASONS: dict[str, event_pb2.WaitReason] = {
    "approval": event_pb2.WAIT_REASON_APPROVAL,
    "subworkflow": event_pb2.WAIT_REASON_SUBWORKFLOW,
}


def _known(table: dict[str, Any], key: Any, what: str) -> Any:
    try:
        return table[str(key)]
    except KeyError:
        raise ValueError(f"unknown {what} {key!r}") from None


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def _run_state_changed(ev: Event) -> dict[str, Any]:
    if not ev.run_state:
        raise ValueError(f"run event {ev.run_id}/{ev.sequence} has no run state")
    return {
        "run_state_changed": event_pb2.RunStateChanged(
            state=run_state(ev.run_state), message=ev.message
        )
    }


def _step_state_changed(ev: Event) -> dict[str, Any]:
    if not ev.step_state:
        raise ValueError(f"step event {ev.run_id}/{ev.sequence} has no step state")
    data = ev.data
    exit_code = data.get("exit_code")
    waiting_for = data.get("waiting_for")
    payload = event_pb2.StepStateChanged(
        node_id=ev.node_id or "",
        state=step_state(ev.step_state),
        attempt=ev.attempt,
        message=ev.message,
        worker=str(data.get("worker") or ""),
        exit_code=None if exit_code is None else int(exit_code),
        error_category=error_category(data.get("error_category")),
        handle=str(data.get("handle") or ""),
        retry_delay=duration(_seconds(data.get("retry_in_s"))),
        waiting_for=_known(_WAIT_REASONS, waiting_for, "wait reason") if waiting_for else None,
        wait_timeout=duration(_seconds(data.get("timeout_s"))),
        child_run_id=str(data.get("child_run_id") or ""),
    )
    return {"step_state_changed": payload}


def _step_log(ev: Event) -> dict[str, Any]:
    data = ev.data
    payload = event_pb2.StepLog(
        node_id=ev.node_id or "",
        attempt=ev.attempt,
        stream=_known(_LOG_STREAMS, data.get("stream"), "log stream"),
        text=ev.message,
        chunk=int(data.get("chunk") or 0),
        offset=int(data.get("offset") or 0),
        truncated=bool(data.get("truncated")),
    )
    return {"step_log": payload}


def _step_progress(ev: Event) -> dict[str, Any]:
    data = ev.data
    payload = event_pb2.StepProgress(
        node_id=ev.node_id or "",
        attempt=ev.attempt,
        items_total=int(data.get("items_total") or 0),
        items_done=int(data.get("items_done") or 0),
        items_failed=int(data.get("items_failed") or 0),
    )
    return {"step_progress": payload}


#: Each outbox kind's payload builder; the keys are every kind the outbox holds.
PAYLOADS: dict[str, Callable[[Event], dict[str, Any]]] = {
    outbox.RUN_STATE_CHANGED: _run_state_changed,
    outbox.STEP_STATE_CHANGED: _step_state_changed,
    outbox.STEP_LOG: _step_log,
    outbox.STEP_PROGRESS: _step_progress,
}


def event_pb(ev: Event) -> event_pb2.RunEvent:
    """Outbox event -> proto; ValueError for a kind (or a value) the contract has no room for."""
    build = PAYLOADS.get(ev.type)
    if build is None:
        raise ValueError(f"unknown run event kind {ev.type!r}")
    return event_pb2.RunEvent(
        sequence=ev.sequence, run_id=ev.run_id, event_time=timestamp(ev.time), **build(ev)
    )
