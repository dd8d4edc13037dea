"""The step I/O threads: as many at once as steps need, reused when idle, ended when idle
for long, and never held up by a task's failure."""

from __future__ import annotations

import threading
import time

from conveyor.executor.runners.process import _ThreadCache


def test_every_task_runs_at_once_however_many_there_are() -> None:
    cache = _ThreadCache(idle_s=5)
    count = 40
    barrier = threading.Barrier(count + 1, timeout=10)
    for _ in range(count):
        cache.submit(barrier.wait)
    barrier.wait()  # only passes when all 40 run at the same time: no bound, no deadlock


def test_idle_threads_are_reused_and_end_when_idle_for_long() -> None:
    cache = _ThreadCache(idle_s=0.3)
    seen: list[int] = []
    done = threading.Event()

    def note() -> None:
        seen.append(threading.get_ident())
        done.set()

    for _ in range(5):
        done.clear()
        cache.submit(note)
        assert done.wait(5)
        time.sleep(0.01)  # the thread is back waiting before the next task
    assert len(set(seen)) == 1
    named = [t for t in threading.enumerate() if t.ident == seen[0]]
    assert named and named[0].daemon
    deadline = time.monotonic() + 5
    while any(t.ident == seen[0] for t in threading.enumerate()):
        assert time.monotonic() < deadline, "an idle thread did not end"
        time.sleep(0.05)


def test_a_failing_task_leaves_its_thread_serving() -> None:
    cache = _ThreadCache(idle_s=5)
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("task failure")

    cache.submit(boom)
    time.sleep(0.05)
    cache.submit(ran.set)
    assert ran.wait(5)
