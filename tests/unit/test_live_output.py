"""Live output: batching into whole lines, per-stream numbering, the live cap, masking."""

from __future__ import annotations

import threading

from conveyor.executor.livelog import LiveLog, merge
from conveyor.executor.runners.base import Masker
from conveyor.executor.runners.capture import ByteMasker, LiveOutput
from conveyor.kernel.db import Database


def collector(**options: float | int) -> tuple[LiveOutput, list[str]]:
    chunks: list[str] = []
    live = LiveOutput("stdout", lambda _s, t: chunks.append(t), mask=lambda t: t, **options)
    return live, chunks


def test_a_full_batch_goes_out_at_a_line_boundary_without_waiting_for_the_interval() -> None:
    live, chunks = collector(interval=3600, max_batch=100)
    lines = [f"line {i:03d}\n" for i in range(30)]  # 9 bytes each
    for line in lines:
        live.feed(line.encode())
    assert chunks, "a batch is sent once max_batch bytes wait"
    assert all(c.endswith("\n") and len(c) <= 100 for c in chunks)
    live.close()
    assert "".join(chunks) == "".join(lines)


def test_nothing_is_sent_before_the_interval_and_everything_on_close() -> None:
    live, chunks = collector(interval=3600, max_batch=1 << 20)
    live.feed(b"one\ntwo\nthr")
    live.tick()
    assert chunks == []
    live.close()
    assert chunks == ["one\ntwo\nthr"]


def test_a_due_tick_sends_complete_lines_and_keeps_the_partial_one() -> None:
    live, chunks = collector(interval=0, max_batch=1 << 20)
    live.feed(b"one\ntwo\nthr")
    assert chunks == ["one\ntwo\n"]
    live.feed(b"ee\n")
    assert chunks == ["one\ntwo\n", "three\n"]


def test_a_line_longer_than_a_batch_is_split() -> None:
    live, chunks = collector(interval=3600, max_batch=10)
    live.feed(b"x" * 25)
    live.close()
    assert "".join(chunks) == "x" * 25
    assert len(chunks) >= 2


def test_a_secret_split_across_two_reads_never_reaches_a_chunk() -> None:
    masker = Masker(["hunter2"])
    bytes_masker = ByteMasker(masker)
    chunks: list[str] = []
    live = LiveOutput(
        "stdout", lambda _s, t: chunks.append(t), mask=masker.text, interval=0, max_batch=4
    )
    for piece in (b"pass=hun", b"ter2 and hunt", b"er2\nok hunter", b"2"):
        live.feed(bytes_masker.feed(piece))
        live.tick()
    live.feed(bytes_masker.flush())
    live.close()
    text = "".join(chunks)
    assert text == "pass=*** and ***\nok ***"
    assert not any("hun" in c or "ter2" in c for c in chunks)


def test_multibyte_characters_split_across_batches_survive() -> None:
    live, chunks = collector(interval=3600, max_batch=3)
    data = "héllo wörld ✓\n".encode()
    for i in range(len(data)):
        live.feed(data[i : i + 1])
    live.close()
    assert "".join(chunks) == "héllo wörld ✓\n"


def test_merge_joins_neighbours_of_one_stream_up_to_the_limit() -> None:
    items = [("stdout", "a\n"), ("stdout", "b\n"), ("stderr", "e\n"), ("stdout", "c\n")]
    assert merge(items) == [("stdout", "a\nb\n"), ("stderr", "e\n"), ("stdout", "c\n")]
    assert merge([("stdout", "aaa"), ("stdout", "bbb")], limit=5) == [
        ("stdout", "aaa"),
        ("stdout", "bbb"),
    ]


def test_chunks_are_numbered_per_stream_and_capped() -> None:
    live = LiveLog(
        db=Database("sqlite://"),
        publish=lambda _events: None,
        run_id="r",
        node_id="n",
        attempt=1,
        cap=10,
    )
    try:
        chunks = live.number(
            [("stdout", "abcd"), ("stderr", "E1\n"), ("stdout", "efgh"), ("stdout", "ijkl")]
        )
        later = live.number([("stdout", "more"), ("stderr", "E2\n")])
    finally:
        live.close()
    out = [c for c in [*chunks, *later] if c.stream == "stdout"]
    assert [(c.chunk, c.offset, c.text, c.truncated) for c in out] == [
        (1, 0, "abcd", False),
        (2, 4, "efgh", False),
        (3, 8, "ij", True),
    ]
    err = [c for c in [*chunks, *later] if c.stream == "stderr"]
    assert [(c.chunk, c.offset, c.text) for c in err] == [(1, 0, "E1\n"), (2, 3, "E2\n")]


def test_close_waits_for_every_queued_piece() -> None:
    written: list[list[tuple[str, str]]] = []

    class Recording(LiveLog):
        def _write(self, chunks):  # type: ignore[no-untyped-def]
            written.append([(c.stream, c.text) for c in chunks])

    live = Recording(
        db=Database("sqlite://"),
        publish=lambda _e: None,
        run_id="r",
        node_id="n",
        attempt=1,
        cap=1 << 20,
    )
    writers = [
        threading.Thread(target=lambda s=s: [live.write(s, f"{s}{i}\n") for i in range(500)])
        for s in ("stdout", "stderr")
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    live.close()
    flat = [piece for batch in written for piece in batch]
    for stream in ("stdout", "stderr"):
        text = "".join(t for s, t in flat if s == stream)
        assert text == "".join(f"{stream}{i}\n" for i in range(500))


def test_cli_prefixes_each_line_once_even_when_chunks_split_lines() -> None:
    import io

    from conveyor.cli.render import print_logs
    from conveyor.monitor.v1 import event_pb2

    def chunk(node: str, stream: int, text: str) -> event_pb2.RunEvent:
        return event_pb2.RunEvent(
            step_log=event_pb2.StepLog(node_id=node, stream=stream, text=text),  # type: ignore[arg-type]
        )

    out, err = io.StringIO(), io.StringIO()
    events = [
        chunk("a", 1, "one\ntw"),
        chunk("b", 1, "x\n"),
        chunk("a", 1, "o\n"),
        chunk("a", 2, "warn\n"),
        chunk("b", 1, "\nno newline at the end"),
        event_pb2.RunEvent(run_state_changed=event_pb2.RunStateChanged()),
    ]
    print_logs(events, prefix=True, out=out, err=err)
    assert out.getvalue() == "[a] one\n[b] x\n[a] two\n[b] \n[b] no newline at the end\n"
    assert err.getvalue() == "[a] warn\n"


def test_large_chunks_cross_the_bus_without_their_text() -> None:
    from datetime import UTC, datetime

    from conveyor.executor.livelog import BUS_TEXT_LIMIT, for_bus
    from conveyor.kernel.outbox import STEP_LOG, Event

    def event(text: str) -> Event:
        now = datetime.now(UTC)
        return Event("r", 5, STEP_LOG, now, node_id="n", message=text, data={"chunk": 1})

    small = event("x" * BUS_TEXT_LIMIT)
    assert for_bus(small) is small
    thin = for_bus(event("x" * (BUS_TEXT_LIMIT + 1)))
    assert (thin.sequence, thin.message, thin.data) == (5, "", {"chunk": 1, "thin": True})
