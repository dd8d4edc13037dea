"""PostgreSQL connections are pinged before use only after sitting idle
(`kernel.db.PING_IDLE_S`): one the server dropped while it sat idle is replaced, not handed
out; one returned moments ago is handed out unpinged, and if the server dropped it meanwhile
the failure is an unreachable-database error, which callers retry, and the pool heals."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from conveyor.kernel import db as dbmod
from conveyor.kernel.db import Database, is_unreachable
from tests.conftest import POSTGRES_URL
from tests.integration import harness


@pytest.fixture
def pg() -> Iterator[Database]:
    with harness.postgres_database(POSTGRES_URL) as url:
        database = Database(url, pool_size=1, max_overflow=0)
        yield database
        database.dispose()


def backend_pid(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)  # the backend is gone before the next checkout


def drop_a_pooled_connection(pg: Database, monkeypatch: pytest.MonkeyPatch, idle_s: float) -> int:
    """Use the pool's one connection, then have the server drop it; its backend pid."""
    monkeypatch.setattr(dbmod, "PING_IDLE_S", idle_s)
    first = backend_pid(pg)
    terminate(first)
    return first


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = drop_a_pooled_connection(pg, monkeypatch, idle_s=0.2)
    time.sleep(0.2)
    assert backend_pid(pg) != first  # the dead connection was pinged and replaced


def test_a_connection_returned_moments_ago_is_not_pinged(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = drop_a_pooled_connection(pg, monkeypatch, idle_s=60.0)
    with pytest.raises(DBAPIError) as failed:
        backend_pid(pg)  # handed out as it was: the loss shows on use
    assert is_unreachable(failed.value)
    assert backend_pid(pg) != first  # the pool dropped it; the next checkout is fresh
