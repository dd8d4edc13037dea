"""How the CLI shows runs, events and diagnostics."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from conveyor.executor.v1 import run_pb2
from conveyor.monitor.v1 import event_pb2
from conveyor.shared import nodetypes as nt

STATE_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "QUEUED": "blue",
    "WAITING": "magenta",
}


def run_state(value: int) -> str:
    """RUN_STATE_FAILED -> FAILED."""
    return str(run_pb2.RunState.Name(value)).removeprefix("RUN_STATE_")


def step_state(value: int) -> str:
    """STEP_STATE_QUEUED -> QUEUED."""
    return str(run_pb2.StepState.Name(value)).removeprefix("STEP_STATE_")


def category(value: int) -> str | None:
    """ERROR_CATEGORY_TIMEOUT -> TIMEOUT; unspecified -> None."""
    if value == run_pb2.ERROR_CATEGORY_UNSPECIFIED:
        return None
    return str(run_pb2.ErrorCategory.Name(value)).removeprefix("ERROR_CATEGORY_")


def json_value(text: str, default: Any) -> Any:
    """A JSON text field of a reply as its value (`default` when empty), numbers exact."""
    return json.loads(text) if text else default


def run_json(run: run_pb2.Run) -> dict[str, Any]:
    """The final run as one JSON object (the `--output json` contract)."""
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "job": run.job_name,
        "state": run_state(run.state),
        "error_message": run.error_message or None,
        "started_by": run.started_by or None,
        "parent_run_id": run.parent_run_id or None,
        "parameters": json_value(run.parameters_json, {}),
        "steps": [
            {
                "node_id": s.node_id,
                "type": s.node_type,
                "state": step_state(s.state),
                "attempts": s.attempts,
                "exit_code": s.exit_code if s.HasField("exit_code") else None,
                "stdout": s.stdout,
                "stderr": s.stderr,
                "output": json_value(s.output_json, None),
                "error_category": category(s.error_category),
                "error_message": s.error_message or None,
                "skip_reason": s.skip_reason or None,
                "outputs": json_value(s.outputs_json, {}),
                "child_run_id": s.child_run_id or None,
            }
            for s in run.steps
        ],
    }


def event_line(ev: event_pb2.RunEvent) -> Text:
    """One line per event for --watch (a log chunk: one line per line of output).

    Output is appended as plain text: no markup parsing and no highlighting of what a step
    printed, which also keeps a 100 KB line as cheap to print as a short one.
    """
    when = ev.event_time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
    kind = ev.WhichOneof("payload")
    if kind == "run_state_changed":
        changed = ev.run_state_changed
        state = run_state(changed.state)
        line = Text(f"{when}  ")
        line.append("run", style="bold")
        line.append(" ")
        line.append(state, style=STATE_STYLE.get(state, "white"))
        if changed.message:
            line.append(f"  {changed.message}")
        return line
    if kind == "step_log":
        log = ev.step_log
        stream = "err" if log.stream == event_pb2.LOG_STREAM_STDERR else "out"
        lines = Text()
        for i, text in enumerate(log.text.rstrip("\n").split("\n")):
            if i:
                lines.append("\n")
            lines.append(f"{when}  {log.node_id:<20} ")
            lines.append(f"{stream}|", style="dim")
            lines.append(f" {text}")
        return lines
    if kind == "step_progress":
        p = ev.step_progress
        counts = f"{p.items_done}/{p.items_total} items"
        if p.items_failed:
            counts += f", {p.items_failed} failed"
        return Text(f"{when}  {p.node_id:<20} {counts}", style="dim")
    step = ev.step_state_changed
    state = step_state(step.state)
    line = Text(f"{when}  {step.node_id:<20} ")
    line.append(state, style=STATE_STYLE.get(state, "white"))
    if step.attempt > 1:
        line.append(f" (attempt {step.attempt})")
    if step.message:
        line.append(f"  {step.message}")
    return line


def waiting_detail(run_id: str, s: run_pb2.Step) -> str:
    """What a WAITING step waits for."""
    if s.node_type == nt.APPROVAL:
        message = str(json_value(s.outputs_json, {}).get("message") or "")
        return f"awaiting approval: {message} (conveyor runs approve {run_id} {s.node_id})"
    if s.child_run_id:
        return f"waiting for sub-workflow run {s.child_run_id}"
    if s.HasField("wake_time"):
        return f"retry due at {s.wake_time.ToDatetime().strftime('%H:%M:%S')} UTC"
    return ""


def run_table(console: Console, run: run_pb2.Run) -> None:
    """A run's steps as a table."""
    state = run_state(run.state)
    style = STATE_STYLE.get(state, "white")
    console.print(f"run {run.run_id} ({run.job_name}) [{style}]{state}[/{style}]")
    if run.error_message:
        console.print(f"  {run.error_message}", markup=False)
    if run.started_by:
        console.print(f"  started by {run.started_by}", markup=False)
    table = Table("step", "type", "state", "attempts", "exit", "output / error")
    for s in run.steps:
        st = step_state(s.state)
        detail = s.error_message or s.skip_reason
        if not detail and s.state == run_pb2.STEP_STATE_WAITING:
            detail = waiting_detail(run.run_id, s)
        if not detail and s.output_json:
            detail = json.dumps(json_value(s.output_json, None), ensure_ascii=False)
        table.add_row(
            s.node_id,
            s.node_type,
            f"[{STATE_STYLE.get(st, 'white')}]{st}[/]",
            str(s.attempts),
            str(s.exit_code) if s.HasField("exit_code") else "",
            (detail or "")[:160],
        )
    console.print(table)


def print_logs(
    events: Iterable[event_pb2.RunEvent],
    *,
    prefix: bool,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> None:
    """Write STEP_LOG chunks as they come; with `prefix`, whole lines led by their step."""
    streams: dict[int, IO[str]] = {
        event_pb2.LOG_STREAM_STDOUT: out or sys.stdout,
        event_pb2.LOG_STREAM_STDERR: err or sys.stderr,
    }
    # With prefixes, a line split across chunks waits for its end, so steps never interleave
    # inside a line.
    partial: dict[tuple[str, int], str] = {}  # (node, stream) -> unfinished line
    for ev in events:
        if not ev.HasField("step_log"):
            continue
        log = ev.step_log
        target = streams.get(log.stream, streams[event_pb2.LOG_STREAM_STDOUT])
        text = log.text
        if prefix:
            key = (log.node_id, log.stream)
            lines = (partial.pop(key, "") + text).split("\n")
            if lines[-1]:
                partial[key] = lines[-1]
            text = "".join(f"[{log.node_id}] {line}\n" for line in lines[:-1])
        target.write(text)
        if log.truncated:
            (err or sys.stderr).write(
                f"\n[live output of {log.node_id} reached the live log cap; the full output is"
                f" in `conveyor runs show {ev.run_id}` and its artifact]\n"
            )
        target.flush()
    for (node_id, stream), rest in partial.items():
        streams.get(stream, streams[event_pb2.LOG_STREAM_STDOUT]).write(f"[{node_id}] {rest}\n")
