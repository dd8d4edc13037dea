"""SQLite: read-only sessions do not take the write lock, so readers never wait on a writer."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from conveyor.kernel.db import Database


def test_read_session_runs_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.transaction() as session:
        session.execute(text("CREATE TABLE t (v INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.transaction() as session:  # BEGIN IMMEDIATE: holds the write lock
            session.execute(text("UPDATE t SET v = 2"))
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(30)
        # A write-locking reader would wait here for the writer (and fail after the busy
        # timeout); a read session reads the last committed snapshot at once.
        with db.read() as session:
            assert session.execute(text("SELECT v FROM t")).scalar_one() == 1
        assert thread.is_alive(), "the writer must still hold its transaction"
    finally:
        release.set()
        thread.join()
    with db.read() as session:
        assert session.execute(text("SELECT v FROM t")).scalar_one() == 2
    db.dispose()
