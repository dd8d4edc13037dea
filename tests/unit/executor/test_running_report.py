"""A worker process tells the monitor which attempts it runs (worker-attempts events)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from conveyor.executor.running import EVENT_TYPE, RunningReport


class FakeEvents:
    """Stands for `app.events`: records what the dispatcher sends, under which hostname."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.arrived = threading.Condition()

    @contextlib.contextmanager
    def default_dispatcher(self, *, hostname: str) -> Iterator[Any]:
        events = self

        class Dispatcher:
            def send(self, type_: str, **fields: Any) -> None:
                with events.arrived:
                    events.sent.append((hostname, type_, fields))
                    events.arrived.notify_all()

        yield Dispatcher()

    def wait_for(self, check: Any) -> list[tuple[str, str, dict[str, Any]]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: check(self.sent), timeout=10), self.sent
            return list(self.sent)


class FakeApp:
    def __init__(self) -> None:
        self.events = FakeEvents()


def test_reports_what_runs_then_that_nothing_does() -> None:
    app = FakeApp()
    name = ["vm"]
    report = RunningReport(app, hostname=lambda: name[0], interval_s=0.25)
    name[0] = "w1@vm"  # the node name is known once the worker is set up
    report.add(("run-a", "build", 1))
    sent = app.events.wait_for(lambda s: any(f["attempts"] for _h, _t, f in s))
    hostname, kind, fields = next(x for x in sent if x[2]["attempts"])
    assert (hostname, kind) == ("w1@vm", EVENT_TYPE)
    [attempt] = fields["attempts"]
    assert (attempt["run_id"], attempt["node_id"], attempt["attempt"]) == ("run-a", "build", 1)
    assert attempt["since"] and fields["interval"] == 0.25
    report.discard(("run-a", "build", 1))
    app.events.wait_for(lambda s: s[-1][2]["attempts"] == [])
    assert report.snapshot() == []
