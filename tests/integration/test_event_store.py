"""The event tables on SQLite and PostgreSQL: live-log events and the global run feed."""

from __future__ import annotations

import threading

from sqlalchemy import delete, select

from conveyor.executor import runs
from conveyor.executor.livelog import Chunk, LiveLog, append_logs
from conveyor.kernel import feed, outbox
from conveyor.kernel.db import Database
from conveyor.kernel.feed import FeedFilter
from conveyor.translator.domain import compile_workflow
from tests.integration import workflows as wf

DOC = wf.doc("store-one", [wf.cmd("a", ["true"])], [])


def plan(job_id: str = "job-a", name: str = "store-one") -> runs.JobPlan:
    compiled = compile_workflow(DOC)
    assert compiled.plan is not None
    return runs.JobPlan(job_id=job_id, name=name, version=1, plan=compiled.plan)


def start_and_claim(db: Database, job: runs.JobPlan) -> str:
    with db.transaction() as s:
        run, _ = runs.start_run(
            s, job, parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as s:
        claim, _ = runs.claim_step(s, run_id, "a", 1, worker="w", queue="default", task_id="t")
        assert claim is not None
    return run_id


def test_log_chunks_take_the_runs_sequence_only_while_the_step_runs(db: Database) -> None:
    run_id = start_and_claim(db, plan())
    with db.transaction() as s:
        events = append_logs(
            s, run_id, "a", 1, [Chunk("stdout", "x\n", 1, 0), Chunk("stderr", "e\n", 1, 0)]
        )
    assert [e.type for e in events] == [outbox.STEP_LOG, outbox.STEP_LOG]
    with db.transaction() as s:
        stored = outbox.events_after(s, run_id, 0)
        assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
        assert [e.message for e in stored[-2:]] == ["x\n", "e\n"]
        assert stored[-1].data == {"stream": "stderr", "chunk": 1, "offset": 0}
        # A stale attempt writes nothing.
        assert append_logs(s, run_id, "a", 2, [Chunk("stdout", "late", 2, 2)]) == []
    with db.transaction() as s:
        runs.cancel_run(s, run_id, "stop")
    with db.transaction() as s:
        assert append_logs(s, run_id, "a", 1, [Chunk("stdout", "after", 2, 2)]) == []
        last = outbox.events_after(s, run_id, 0)[-1]
        assert last.terminal


def test_filters_keep_the_terminal_event(db: Database) -> None:
    run_id = start_and_claim(db, plan())
    with db.transaction() as s:
        append_logs(s, run_id, "a", 1, [Chunk("stdout", "x\n", 1, 0)])
    with db.transaction() as s:
        runs.cancel_run(s, run_id, "stop")
    with db.transaction() as s:
        only_logs = outbox.events_after(s, run_id, 0, types=[outbox.STEP_LOG])
        head = outbox.last_sequence(s, run_id)
        until = outbox.events_after(s, run_id, 0, until=2)
    assert [e.type for e in only_logs] == [outbox.STEP_LOG, outbox.RUN_STATE_CHANGED]
    assert only_logs[-1].terminal and only_logs[-1].sequence == head
    assert [e.sequence for e in until] == [1, 2]


def test_live_log_writes_every_piece_in_order(db: Database) -> None:
    run_id = start_and_claim(db, plan())
    published: list[outbox.Event] = []
    live = LiveLog(
        db=db, publish=published.extend, run_id=run_id, node_id="a", attempt=1, cap=1 << 20
    )
    writers = [
        threading.Thread(target=lambda s=s: [live.write(s, f"{s} {i}\n") for i in range(300)])
        for s in ("stdout", "stderr")
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    live.close()
    with db.transaction() as s:
        stored = outbox.events_after(s, run_id, 0, limit=10_000)
    logs = [e for e in stored if e.type == outbox.STEP_LOG]
    assert [e.sequence for e in published] == [e.sequence for e in logs]
    for stream in ("stdout", "stderr"):
        mine = [e for e in logs if e.data["stream"] == stream]
        assert [e.data["chunk"] for e in mine] == list(range(1, len(mine) + 1))
        assert "".join(e.message for e in mine) == "".join(f"{stream} {i}\n" for i in range(300))


def test_feed_positions_and_filters(db: Database) -> None:
    first = start_and_claim(db, plan("job-a"))
    second = start_and_claim(db, plan("job-b", "other"))
    with db.transaction() as s:
        runs.cancel_run(s, second, "stop")
    with db.transaction() as s:
        every = feed.changes_after(s, 0)
        assert feed.head(s) == len(every)
        only_b = feed.changes_after(s, 0, FeedFilter(job_ids=frozenset({"job-b"})))
        cancelled = feed.changes_after(s, 0, FeedFilter(states=frozenset({"CANCELLED"})))
        scheduled = feed.changes_after(s, 0, FeedFilter(triggers=frozenset({"SCHEDULE"})))
        tail = feed.changes_after(s, 2)
    assert [c.position for c in every] == list(range(1, len(every) + 1))
    assert [(c.run_id, c.run_state) for c in every] == [
        (first, "PENDING"),
        (first, "RUNNING"),
        (second, "PENDING"),
        (second, "RUNNING"),
        (second, "CANCELLED"),
    ]
    assert [c.run_state for c in only_b] == ["PENDING", "RUNNING", "CANCELLED"]
    assert all(c.job_name == "other" for c in only_b)
    assert [c.run_id for c in cancelled] == [second]
    assert scheduled == []
    assert [c.position for c in tail] == [3, 4, 5]


def test_feed_never_shows_a_gap_to_a_concurrent_reader(db: Database) -> None:
    writers, per_writer = 6, 15
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def read() -> None:
        last = 0
        while True:
            done = stop.is_set()
            with db.transaction() as s:
                batch = feed.changes_after(s, last)
            for change in batch:
                if change.position != last + 1:
                    problems.append(f"saw {change.position} after {last}")
                last = change.position
                seen.append(last)
            if done:
                return

    def write() -> None:
        for _ in range(per_writer):
            with db.transaction() as s:
                runs.start_run(
                    s, plan(), parameters={}, request_id=None, trigger="MANUAL", priority=0
                )

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert problems == []
    assert seen == list(range(1, writers * per_writer + 1))


def test_feed_numbers_many_changes_of_one_transaction_in_order(db: Database) -> None:
    """One transaction's changes take consecutive positions, whether they fit the one
    statement PostgreSQL uses (up to 32 rows) or not, and the head follows them."""
    job = plan()
    sizes = [3, 40]
    with db.transaction() as s:
        before = feed.head(s)
    made: list[list[str]] = []
    for size in sizes:
        with db.transaction() as s:
            ids = []
            for _ in range(size):
                run, _ = runs.start_run(
                    s, job, parameters={}, request_id=None, trigger="MANUAL", priority=0
                )
                ids.append(run.id)
        made.append(ids)
    with db.read() as s:
        changes = feed.changes_after(s, before)
        top = s.scalar(select(feed.RunFeedHead.position))
    assert [c.position for c in changes] == list(range(before + 1, before + 44))
    assert [c.run_id for c in changes] == made[0] + made[1]
    assert {c.run_state for c in changes} == {"PENDING"}
    assert top == before + 43


def test_feed_seeds_a_missing_head_row(db: Database) -> None:
    with db.transaction() as s:
        s.execute(delete(feed.RunFeedHead))
        s.execute(delete(feed.RunFeedRow))
    run_id = start_and_claim(db, plan())
    with db.read() as s:
        changes = feed.changes_after(s, 0)
        top = s.scalar(select(feed.RunFeedHead.position))
    assert [(c.position, c.run_id, c.run_state) for c in changes] == [
        (1, run_id, "PENDING"),
        (2, run_id, "RUNNING"),
    ]
    assert top == 2
