"""WatchRun sends every event already queued for a watcher in one response, bounded, in order,
filtered, resumable from a batch's last sequence; the table stays the truth on a gap, an
overflow or a thin event, and the terminal event ends the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.kernel import outbox
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.kernel.outbox import Event
from conveyor.monitor import api
from conveyor.monitor.api import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MonitorServicer
from conveyor.monitor.hub import Hub
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2

RUN = "run-1"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
Stream = AsyncIterator[monitor_service_pb2.WatchRunResponse]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'events.db'}")
    upgrade(database)
    yield database
    database.dispose()


def run_state(seq: int, state: str) -> Event:
    return Event(RUN, seq, outbox.RUN_STATE_CHANGED, WHEN, run_state=state)


def step(seq: int, node: str = "a", state: str = "RUNNING") -> Event:
    return Event(RUN, seq, outbox.STEP_STATE_CHANGED, WHEN, node_id=node, step_state=state)


def log(seq: int, text: str, node: str = "a", **data: Any) -> Event:
    return Event(
        RUN,
        seq,
        outbox.STEP_LOG,
        WHEN,
        node_id=node,
        attempt=1,
        message=text,
        data={"stream": "stdout", "chunk": seq, **data},
    )


def store(db: Database, *events: Event) -> None:
    with db.transaction() as session:
        for ev in events:
            outbox.append(session, ev)


def commit_and_publish(
    db: Database, hub: Hub, *events: Event, bus: list[Event] | None = None
) -> None:
    """Commit events, then publish them (or `bus`, what the bus carries of them) at once."""
    store(db, *events)
    hub.deliver(list(events) if bus is None else bus)


def sequences(reply: monitor_service_pb2.WatchRunResponse) -> list[int]:
    return [e.sequence for e in reply.events]


def watch(servicer: MonitorServicer, **request: Any) -> Stream:
    stream: Stream = servicer.WatchRun(
        monitor_service_pb2.WatchRunRequest(run_id=RUN, **request), None
    )
    return stream


async def settle() -> None:
    """Let the hub's hand-over (call_soon_threadsafe) reach the watcher's queue."""
    await asyncio.sleep(0)


def scenario(db: Database, body: Callable[[MonitorServicer, Hub], Awaitable[None]]) -> None:
    async def main() -> None:
        hub = Hub()
        await body(MonitorServicer(db=db, hub=hub), hub)

    asyncio.run(main())


async def rest(stream: Stream) -> list[list[int]]:
    return [sequences(reply) async for reply in stream]


def test_events_queued_before_the_watcher_reads_come_in_one_response(db: Database) -> None:
    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "PENDING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]  # the stored history
        # One transaction's burst (a step ends, its successor is queued and starts).
        commit_and_publish(db, hub, step(2, "a", "SUCCEEDED"), step(3, "b", "QUEUED"))
        commit_and_publish(db, hub, step(4, "b", "RUNNING"))
        await settle()
        burst = await anext(stream)
        assert sequences(burst) == [2, 3, 4]
        assert [e.WhichOneof("payload") for e in burst.events] == ["step_state_changed"] * 3
        assert [e.step_state_changed.node_id for e in burst.events] == ["a", "b", "b"]
        commit_and_publish(db, hub, step(5, "b", "SUCCEEDED"), run_state(6, "SUCCEEDED"))
        await settle()
        assert await rest(stream) == [[5, 6]]  # the terminal event ends the stream

    scenario(db, body)


def test_the_count_bound_splits_a_long_burst(db: Database) -> None:
    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        burst = [log(seq, f"line {seq}\n") for seq in range(2, 2 * MAX_BATCH_EVENTS + 12)]
        commit_and_publish(db, hub, *burst, run_state(2 * MAX_BATCH_EVENTS + 12, "SUCCEEDED"))
        await settle()
        got = await rest(stream)
        assert [len(batch) for batch in got] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 11]
        assert [seq for batch in got for seq in batch] == list(range(2, 2 * MAX_BATCH_EVENTS + 13))

    scenario(db, body)


def test_the_byte_bound_splits_large_log_events_live_and_from_the_table(db: Database) -> None:
    text = "x" * (16 * 1024)  # the largest chunk that crosses the bus with its text
    count = 2 * MAX_BATCH_BYTES // len(text)

    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        commit_and_publish(db, hub, *(log(seq, text) for seq in range(2, count + 2)))
        await settle()
        live: list[monitor_service_pb2.WatchRunResponse] = []
        while sum(len(r.events) for r in live) < count:
            live.append(await anext(stream))
        assert len(live) == 3
        assert all(reply.ByteSize() <= MAX_BATCH_BYTES for reply in live)
        assert [s for reply in live for s in sequences(reply)] == list(range(2, count + 2))
        await stream.aclose()
        # The same events replayed from the table are cut by the same bound.
        replay = [r async for r in watch(servicer, history_only=True)]
        assert len(replay) == 3 and all(r.ByteSize() <= MAX_BATCH_BYTES for r in replay)
        assert [s for r in replay for s in sequences(r)] == list(range(1, count + 2))

    scenario(db, body)


def test_one_event_larger_than_the_byte_bound_still_goes_out_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "MAX_BATCH_BYTES", 100)
    store(db, run_state(1, "RUNNING"), log(2, "y" * 300), log(3, "z"), run_state(4, "SUCCEEDED"))

    async def body(servicer: MonitorServicer, _hub: Hub) -> None:
        assert await rest(watch(servicer)) == [[1], [2], [3, 4]]

    scenario(db, body)


def test_a_filtered_watch_batches_only_what_it_asked_for(db: Database) -> None:
    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"), log(2, "a0\n"), step(3, "a", "RUNNING"))
        logs_of_a = watch(servicer, types=[event_pb2.EVENT_TYPE_STEP_LOG], node_id="a")
        states = watch(servicer, types=[event_pb2.EVENT_TYPE_STEP_STATE_CHANGED])
        assert sequences(await anext(logs_of_a)) == [2]
        assert sequences(await anext(states)) == [3]
        commit_and_publish(db, hub, log(4, "a1\n"), step(5, "b"), log(6, "b1\n", node="b"))
        commit_and_publish(db, hub, log(7, "a2\n"), step(8, "a", "SUCCEEDED"))
        await settle()
        live = await anext(logs_of_a)
        assert sequences(live) == [4, 7]
        assert [e.step_log.text for e in live.events] == ["a1\n", "a2\n"]
        assert sequences(await anext(states)) == [5, 8]
        commit_and_publish(db, hub, log(9, "a3\n"), run_state(10, "SUCCEEDED"))
        await settle()
        # The terminal event ends both streams; a filter that leaves it out does not get it.
        assert await rest(logs_of_a) == [[9]]
        assert await rest(states) == []

    scenario(db, body)


def test_a_watcher_resumes_after_the_last_sequence_of_a_batch(db: Database) -> None:
    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        commit_and_publish(db, hub, step(2), step(3), step(4, "a", "SUCCEEDED"))
        await settle()
        batch = await anext(stream)
        assert sequences(batch) == [2, 3, 4]
        await stream.aclose()  # the connection drops after the batch
        commit_and_publish(db, hub, step(5, "b", "QUEUED"), run_state(6, "SUCCEEDED"))
        resumed = watch(servicer, after_sequence=batch.events[-1].sequence)
        assert await rest(resumed) == [[5, 6]]

    scenario(db, body)


def test_a_thin_log_event_ends_the_batch_and_comes_from_the_table(db: Database) -> None:
    big = "q" * (20 * 1024)

    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        thin = Event(RUN, 3, outbox.STEP_LOG, WHEN, node_id="a", data={"chunk": 3, "thin": True})
        events = (step(2), log(3, big), step(4, "a", "SUCCEEDED"))
        commit_and_publish(db, hub, *events, bus=[events[0], thin, events[2]])
        await settle()
        assert sequences(await anext(stream)) == [2]
        from_table = await anext(stream)
        assert sequences(from_table) == [3, 4]
        assert from_table.events[0].step_log.text == big
        await stream.aclose()

    scenario(db, body)


def test_a_gap_on_the_bus_is_filled_from_the_table_without_duplicates(db: Database) -> None:
    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        events = (step(2), step(3), step(4), run_state(5, "SUCCEEDED"))
        commit_and_publish(db, hub, *events, bus=[events[0], events[2], events[3]])  # 3 lost
        await settle()
        assert await rest(stream) == [[2], [3, 4, 5]]

    scenario(db, body)


def test_an_overflowed_queue_is_refilled_from_the_table(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.monitor.hub.QUEUE_LIMIT", 2)

    async def body(servicer: MonitorServicer, hub: Hub) -> None:
        store(db, run_state(1, "RUNNING"))
        stream = watch(servicer)
        assert sequences(await anext(stream)) == [1]
        commit_and_publish(db, hub, step(2), step(3), step(4), run_state(5, "SUCCEEDED"))
        await settle()
        # Events were dropped for this watcher: everything comes from the table, once.
        assert await rest(stream) == [[2, 3, 4, 5]]

    scenario(db, body)
