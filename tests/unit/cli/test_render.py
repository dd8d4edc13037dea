"""--watch lines: a step's output is printed as it is, markup and all."""

from __future__ import annotations

import io

from rich.console import Console

from conveyor.cli.render import event_line
from conveyor.monitor.v1 import event_pb2


def printed(ev: event_pb2.RunEvent) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(event_line(ev))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def log_event(text: str) -> event_pb2.RunEvent:
    ev = event_pb2.RunEvent()
    ev.step_log.node_id = "build"
    ev.step_log.stream = event_pb2.LOG_STREAM_STDOUT
    ev.step_log.text = text
    ev.event_time.FromSeconds(0)
    return ev


def test_markup_in_output_is_printed_literally() -> None:
    out = printed(log_event("[bold]not bold[/bold] [link=x]y[/link] \\[z]\n"))
    assert "[bold]not bold[/bold] [link=x]y[/link] \\[z]" in out
    assert out.count("out|") == 1


def test_each_line_of_a_chunk_gets_its_prefix() -> None:
    out = printed(log_event("one\ntwo\nthree\n"))
    lines = out.splitlines()
    assert [line.split("out| ")[1] for line in lines] == ["one", "two", "three"]
    assert all("build" in line for line in lines)


def test_a_long_line_is_printed_whole() -> None:
    out = printed(log_event("x" * 100_000 + "\n"))
    assert out.count("x") == 100_000


def test_state_lines_show_attempt_and_message() -> None:
    ev = event_pb2.RunEvent(
        step_state_changed=event_pb2.StepStateChanged(
            node_id="build", attempt=2, message="exit code [3]"
        )
    )
    ev.event_time.FromSeconds(0)
    out = printed(ev)
    assert "(attempt 2)" in out and "exit code [3]" in out
