"""Worker liveness folded from Celery events and queue rates from run events, on an
injected clock."""

from __future__ import annotations

from conveyor.kernel.ids import utcnow
from conveyor.kernel.outbox import STEP_STATE_CHANGED, Event
from conveyor.monitor.workers import (
    OFFLINE_BEATS,
    RATE_WINDOW_S,
    REINSPECT_AFTER_S,
    WorkerTracker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_worker_goes_offline_after_missed_heartbeats() -> None:
    clock = Clock()
    tracker = WorkerTracker(clock=clock)
    seen: list[str] = []
    tracker.on_new_worker = seen.append
    tracker.handle({"type": "worker-online", "hostname": "w@h", "freq": 1.0, "sw_ver": "5.4"})
    tracker.register("w@h", queues=["default"], concurrency=4)
    clock.now += 1
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0, "active": 2})
    [(info, online)] = tracker.workers()
    assert online and info.active == 2 and info.concurrency == 4 and info.queues == {"default"}
    assert seen == ["w@h"]
    clock.now += OFFLINE_BEATS * 1.0
    assert tracker.workers()[0][1]
    clock.now += 0.5
    assert not tracker.workers()[0][1]
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0})
    assert tracker.workers()[0][1]


def test_goodbye_is_offline_at_once() -> None:
    tracker = WorkerTracker(clock=Clock())
    tracker.handle({"type": "worker-online", "hostname": "w@h", "freq": 2.0})
    tracker.handle({"type": "worker-offline", "hostname": "w@h"})
    assert tracker.workers()[0][1] is False


def test_registering_an_unseen_worker_is_ignored() -> None:
    tracker = WorkerTracker(clock=Clock())
    tracker.register("ghost@h", queues=["q"], concurrency=1)
    assert tracker.workers() == []


def step_event(state: str, attempt: int, **data: str) -> Event:
    return Event(
        run_id="r",
        sequence=attempt,
        type=STEP_STATE_CHANGED,
        time=utcnow(),
        node_id="n",
        step_state=state,
        attempt=attempt,
        data=data,
    )


def test_rates_and_learned_queues_from_step_events() -> None:
    clock = Clock()
    tracker = WorkerTracker(clock=clock)
    tracker.handle({"type": "worker-online", "hostname": "w@h", "freq": 1.0})
    tracker.steps([step_event("QUEUED", i, queue="gpu") for i in range(6)])
    tracker.steps([step_event("RUNNING", i, worker="w@h", queue="gpu") for i in range(3)])
    # Inline steps (no queue), a worker unknown here, other states and kinds: no change
    # to the rates beyond their own queue's count.
    tracker.steps(
        [
            step_event("QUEUED", 9),
            step_event("RUNNING", 9, worker="ghost@h", queue="cpu"),
            step_event("SUCCEEDED", 1, queue="gpu"),
            Event(run_id="r", sequence=20, type="RUN_STATE_CHANGED", time=utcnow()),
        ]
    )
    assert tracker.rates() == {
        "gpu": (6 / RATE_WINDOW_S, 3 / RATE_WINDOW_S),
        "cpu": (0.0, 1 / RATE_WINDOW_S),
    }
    assert tracker.consumers("gpu") == 1 and tracker.consumers("default") == 0
    assert tracker.consumers("cpu") == 0
    # Celery task events (sent when CONVEYOR_CELERY_TASK_EVENTS is on) count for nothing.
    tracker.handle({"type": "task-sent", "uuid": "t", "queue": "gpu"})
    tracker.handle({"type": "task-received", "uuid": "t", "hostname": "w@h"})
    assert tracker.rates()["gpu"] == (6 / RATE_WINDOW_S, 3 / RATE_WINDOW_S)
    clock.now += RATE_WINDOW_S + 1
    assert tracker.rates() == {}


def test_worker_without_configuration_is_asked_again() -> None:
    clock = Clock()
    tracker = WorkerTracker(clock=clock)
    asked: list[str] = []
    tracker.on_new_worker = asked.append
    tracker.handle({"type": "worker-online", "hostname": "w@h", "freq": 1.0})
    clock.now += 1
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0})
    assert asked == ["w@h"]  # the first question may still be answered
    clock.now += REINSPECT_AFTER_S
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0})
    assert asked == ["w@h", "w@h"]
    tracker.register("w@h", queues=["default"], concurrency=2)
    clock.now += REINSPECT_AFTER_S
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0})
    assert asked == ["w@h", "w@h"]


def test_running_attempts_are_merged_per_process_and_expire() -> None:
    clock = Clock()
    tracker = WorkerTracker(clock=clock)
    tracker.handle({"type": "worker-online", "hostname": "w@h", "freq": 1.0})
    tracker.handle({"type": "worker-heartbeat", "hostname": "w@h", "freq": 1.0, "active": 2})

    def report(pid: int, *attempts: tuple[str, str, str]) -> None:
        tracker.handle(
            {
                "type": "worker-attempts",
                "hostname": "w@h",
                "pid": pid,
                "interval": 2.0,
                "attempts": [
                    {"run_id": r, "node_id": n, "attempt": 1, "since": s} for r, n, s in attempts
                ],
            }
        )

    report(11, ("r1", "b", "2026-01-01T00:00:02+00:00"))
    report(12, ("r2", "a", "2026-01-01T00:00:01+00:00"))
    [(info, online)] = tracker.workers()
    assert online and info.active == 2  # a report is not a heartbeat: Celery's count stays
    assert [(a.run_id, a.node_id) for a in info.running(clock())] == [("r2", "a"), ("r1", "b")]
    report(11)  # process 11 finished its step
    assert [a.run_id for a in tracker.workers()[0][0].running(clock())] == ["r2"]
    clock.now += 3 * 2.0 + 0.1  # process 12 went silent for three of its periods
    assert tracker.workers()[0][0].running(clock()) == []
