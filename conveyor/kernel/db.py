"""Database engine and session factory for SQLite (embedded) and PostgreSQL (distributed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Engine, String, any_, bindparam, create_engine, event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, sessionmaker

READ_ONLY_OPTION = "conveyor_read_only"


class Base(DeclarativeBase):
    """Declarative base for every table of every service."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write-locking transactions.

    SQLite's default deferred transactions fail with 'database is locked' when two readers
    both try to upgrade to writers; BEGIN IMMEDIATE takes the write lock up front so
    concurrent workers queue on busy_timeout instead.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Read-only sessions (Database.read) take no write lock: WAL readers see a snapshot
            # and never block the writers.
            read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # An unreachable server fails a connection attempt in seconds, not the OS's minutes.
    kwargs.setdefault("connect_args", {"connect_timeout": CONNECT_TIMEOUT_S})
    engine = create_engine(url, **kwargs)
    if "pool_pre_ping" not in kwargs:  # a caller's own choice of pinging stands
        _ping_idle_connections(engine)
    return engine


# A pooled connection idle longer than this is pinged before it is handed out.
PING_IDLE_S = 1.0


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle.

    SQLAlchemy's `pool_pre_ping` costs a round trip on every checkout, that is on every
    transaction of every service: several per step. A connection returned to the pool less
    than `PING_IDLE_S` ago was working then; one idle longer (a server restart happens in
    that time) is pinged, and a dead one is replaced before it is used. What breaks in
    between fails on use like any connection lost mid-transaction, which callers retry.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        # A connection just opened works too: its first checkout needs no ping.
        if record is not None:
            record.info["conveyor_returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("conveyor_returned_at")
        if returned is not None and time.monotonic() - returned < PING_IDLE_S:
            return
        try:
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            if not dbapi_conn.autocommit:
                dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


CONNECT_TIMEOUT_S = 10


def is_unreachable(exc: DBAPIError) -> bool:
    """True for errors that mean the database could not be reached (worth retrying)."""
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)


class Database:
    """An engine plus a session factory; `transaction()` is the unit of work."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if not self.is_sqlite:
            # Reads on PostgreSQL run in autocommit: under READ COMMITTED each statement
            # sees its own snapshot inside a transaction too, so BEGIN and the ROLLBACK at
            # the end would be two round trips for nothing.
            options["isolation_level"] = "AUTOCOMMIT"
        #: The engine for reads: no write lock on SQLite, no transaction on PostgreSQL.
        self.read_engine = self.engine.execution_options(**options)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only: on SQLite it does not take the write lock (BEGIN, not
        BEGIN IMMEDIATE), so many watchers reading never hold up the workers writing."""
        with self._read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def is_one_of(
    session: Session, column: QueryableAttribute[str], values: list[str]
) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`, one parameter whatever
    the number of values (an IN of 200 strings costs three times as much there to send and
    plan)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(String)))
    return column.in_(values)


def is_one_of_param(
    session: Session, column: QueryableAttribute[str], name: str
) -> ColumnElement[bool]:
    """`is_one_of` with the values bound at execution as the list parameter `name`: for a
    statement built once and run many times (`= ANY(:name)` on PostgreSQL, an expanding
    IN elsewhere)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))
