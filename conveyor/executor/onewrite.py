"""What a transaction leaves to write at commit, written without the ORM's unit of work.

The ORM's flush writes each changed row in a statement of its own, and so does the outbox:
the end of a step and the claim of its successor (`runs.finish_step`, `runs.claim_step`)
leave the run row, two step rows, a new execution row, the close of the ended attempt and a
few events to write at commit - six statements, and the unit of work's bookkeeping for
three objects. Just before the commit, this module writes them itself and marks the objects
as written:

- on PostgreSQL, as the parts of one statement (each INSERT or UPDATE a data-modifying CTE
  whose rows are one bound JSON array read with `json_populate_recordset`, so the text is
  the same for every transaction of a shape), the run feed's numbered rows
  (`feed.pg_parts`) last: one round trip instead of five or six;
- on SQLite, a statement per table and set of changed columns, values bound with
  SQLAlchemy's own type processors: no round trips to save there, only the bookkeeping.

UPDATE parts count the rows they changed, and a row gone is an error, as in the ORM's flush.
Only the plain case is taken: new or changed rows of the executor's three tables whose
changes are column values, no more than `MAX_ROWS` rows in any part, values JSON can carry
(on PostgreSQL, no NUL character). A transaction holding anything else (a deleted object,
another table's row, a callable column default, more rows) is left to the ORM and the
outbox, whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Dialect, event, inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError

from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel import feed, outbox
from conveyor.kernel.outbox import RunEventRow

#: The most rows one part (one table's inserts, or one set of columns' updates) may have.
MAX_ROWS = 64

_UPDATED = (RunRow, StepRow)
# In this order: a run, its steps, attempts (the foreign keys are checked at the statement's
# end on PostgreSQL, in order on SQLite).
_INSERTED = (RunRow, StepRow, ExecutionRow)


class _Table:
    """What a part needs of one mapped class: its columns and their attribute keys."""

    def __init__(self, cls: type[Any]) -> None:
        mapper = inspect(cls)
        self.name = mapper.local_table.name
        self.key_of: dict[str, str] = {}  # attribute key -> column name
        self.column: dict[str, Column[Any]] = {}
        for attr in mapper.column_attrs:
            column = attr.columns[0]
            self.key_of[attr.key] = column.name
            self.column[attr.key] = column
        (pk,) = mapper.primary_key
        self.pk_key = next(k for k, c in self.column.items() if c is pk)
        # Inserted: every column but an autoincremented key, in a fixed order.
        self.insert_keys = [
            k for k, c in self.column.items() if not (c.primary_key and c.autoincrement is True)
        ]
        self._binders: dict[str, dict[str, Callable[[Any], Any]]] = {}

    def from_v(self, key: str) -> str:
        """The column's value in the relation `v` of a part's rows. JSON's null becomes SQL
        NULL there; the ORM stores it as JSON null in a column not `none_as_null`."""
        name = self.key_of[key]
        t = self.column[key].type
        if isinstance(t, JSON) and not t.none_as_null:
            return f"COALESCE(v.{name}, 'null'::json)"
        return f"v.{name}"

    def binders(self, dialect: Dialect) -> dict[str, Callable[[Any], Any]]:
        """Per attribute, what turns a Python value into the driver's (SQLAlchemy's own
        bind processors: the ORM's flush stores exactly this)."""
        binders = self._binders.get(dialect.name)
        if binders is None:
            binders = {}
            for key, column in self.column.items():
                process = column.type.dialect_impl(dialect).bind_processor(dialect)
                binders[key] = process if process is not None else _same
            self._binders[dialect.name] = binders
        return binders

    def provided(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The columns the ORM's INSERT of an object with these attribute values would set:
        those set, and those with a scalar default; the others are left to the database
        (NULL, or a server default). None: a callable default, which this module does not
        evaluate."""
        row: dict[str, Any] = {}
        for key in self.insert_keys:
            if key in values:
                row[key] = values[key]
                continue
            default = self.column[key].default
            if default is None:
                continue
            if not default.is_scalar:  # type: ignore[attr-defined]
                return None
            row[key] = default.arg  # type: ignore[attr-defined]
        return row


def _same(value: Any) -> Any:
    return value


_TABLES: dict[type[Any], _Table] = {}


def _table(cls: type[Any]) -> _Table:
    table = _TABLES.get(cls)
    if table is None:
        table = _TABLES[cls] = _Table(cls)
    return table


class NotPlain(Exception):
    """A value this module does not write: one JSON cannot carry (NaN, an unknown type) or,
    on PostgreSQL, a NUL character."""


def _json_rows(table: _Table, keys: Iterable[str], rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array of objects keyed by column name, for json_populate_recordset:
    every value of a part is one bound parameter, so the statement's text is the same for
    every transaction of a shape (the driver converts it once, the server prepares it)."""
    names = [(k, table.key_of[k]) for k in keys]
    return _json([{name: r[k] for k, name in names} for r in rows])


def _json(document: Any) -> str:
    """JSON text for PostgreSQL's JSON functions; NotPlain for what they would refuse or
    JSON cannot carry. They refuse a NUL character anywhere in the document, which a json
    column written as text keeps: such rows are left to the ORM."""
    try:
        text = json.dumps(document, default=_json_default, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise NotPlain(str(exc)) from exc
    if "\\u0000" in text:
        raise NotPlain("a NUL character")
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):  # bytea's text form
        return "\\x" + value.hex()
    raise TypeError(f"{type(value).__name__} is not written here")


class _Statement:
    """The named parts of one statement and their parameters."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []
        self.params: dict[str, Any] = {}
        self.counted: list[tuple[str, int]] = []  # (part, rows it must return)

    def param(self, value: Any, cast: str) -> str:
        """Bind a value; its placeholder, cast to a type."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"CAST(%({name})s AS {cast})"

    def add(self, name: str, sql: str) -> None:
        self.parts.append((name, sql))

    def _rows(self, table: _Table, keys: Iterable[str], rows: list[dict[str, Any]]) -> str:
        """The rows as a relation `v` with the table's column types."""
        data = self.param(_json_rows(table, keys, rows), "JSON")
        return f"json_populate_recordset(NULL::{table.name}, {data}) AS v"

    def insert(self, table: _Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        columns = ", ".join(table.key_of[k] for k in keys)
        values = ", ".join(table.from_v(k) for k in keys)
        # Names from the mapped tables; the rows are one bound parameter.
        self.add(
            f"w{len(self.parts)}",
            f"INSERT INTO {table.name} ({columns})"  # noqa: S608
            f" SELECT {values} FROM {self._rows(table, keys, rows)}",
        )

    def update(self, table: _Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        pk = table.key_of[table.pk_key]
        sets = ", ".join(f"{table.key_of[k]} = {table.from_v(k)}" for k in keys)
        name = f"w{len(self.parts)}"
        self.add(
            name,
            f"UPDATE {table.name} AS t SET {sets}"  # noqa: S608
            f" FROM {self._rows(table, (table.pk_key, *keys), rows)}"
            f" WHERE t.{pk} = v.{pk} RETURNING 1",
        )
        self.counted.append((name, len(rows)))

    def close(self, table: _Table, keys: tuple[str, ...], closes: list[dict[str, Any]]) -> None:
        """Attempts' rows still RUNNING get `keys`' values (`close_attempt`); not counted."""
        sets = ", ".join(f"{table.key_of[k]} = {table.from_v(k)}" for k in keys)
        on = " AND ".join(f"t.{table.key_of[k]} = v.{table.key_of[k]}" for k in _ATTEMPT)
        self.add(
            f"w{len(self.parts)}",
            f"UPDATE {table.name} AS t SET {sets}"  # noqa: S608
            f" FROM {self._rows(table, (*_ATTEMPT, *keys), closes)}"
            f" WHERE {on} AND t.state = '{_RUNNING}'",
        )

    def sql(self) -> str:
        """The statement; its one row counts the rows each counted part returned."""
        ctes = ", ".join(f"{name} AS ({part})" for name, part in self.parts)
        counts = ", ".join(f"(SELECT count(*) FROM {name})" for name, _ in self.counted)  # noqa: S608
        return f"WITH {ctes} SELECT {counts or '0'}"


_CLOSES = "conveyor.onewrite.closes"
_RUNNING = "RUNNING"
_ATTEMPT = ("run_id", "node_id", "attempt")  # the columns a close finds its row by


def close_attempt(
    session: Session, run_id: str, node_id: str, attempt: int, values: dict[str, Any]
) -> None:
    """Set `values` on an attempt's execution row if it is still RUNNING, with the
    transaction's next flush or at its commit (in the commit's one statement when this
    module writes it). The caller holds no object of that row in the session."""
    closes: list[dict[str, Any]] = session.info.setdefault(_CLOSES, [])
    closes.append({"run_id": run_id, "node_id": node_id, "attempt": attempt, **values})


def _write_closes(session: Session) -> None:
    """The closes still pending, one UPDATE each (when this module does not write the
    transaction)."""
    closes: list[dict[str, Any]] = session.info.pop(_CLOSES, None) or []
    connection = session.connection()  # not the session: no autoflush from a flush
    for close in closes:
        key = {k: close[k] for k in _ATTEMPT}
        connection.execute(
            update(ExecutionRow)
            .where(
                ExecutionRow.run_id == key["run_id"],
                ExecutionRow.node_id == key["node_id"],
                ExecutionRow.attempt == key["attempt"],
                ExecutionRow.state == _RUNNING,
            )
            .values({k: v for k, v in close.items() if k not in key})
        )


@event.listens_for(Session, "before_flush")
def _closes_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    _write_closes(session)


@event.listens_for(Session, "before_commit")
def _closes_before_commit(session: Session) -> None:
    # Runs after `_write_at_commit`: what it did not take (a transaction not its plain case
    # and with nothing else to flush) is written here.
    _write_closes(session)


@event.listens_for(Session, "after_rollback")
def _closes_after_rollback(session: Session) -> None:
    session.info.pop(_CLOSES, None)


def _close_groups(
    closes: list[dict[str, Any]],
) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """The pending closes by the columns they set."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for close in closes:
        keys = tuple(k for k in close if k not in _ATTEMPT)
        groups.setdefault(keys, []).append(close)
    return list(groups.items())


@dataclass
class _Writes:
    """What a transaction leaves to write at commit, when it is the plain case."""

    inserts: list[tuple[_Table, tuple[str, ...], list[dict[str, Any]]]] = field(
        default_factory=list
    )
    updates: list[tuple[_Table, tuple[str, ...], list[dict[str, Any]]]] = field(
        default_factory=list
    )
    dirty: list[Any] = field(default_factory=list)
    new: list[Any] = field(default_factory=list)
    closes: list[dict[str, Any]] = field(default_factory=list)


def _collect(session: Session) -> _Writes | None:
    """The rows to write for what the session holds, or None when it is not the plain case."""
    if session.deleted:
        return None
    writes = _Writes()
    updates: dict[tuple[type[Any], tuple[str, ...]], list[dict[str, Any]]] = {}
    for obj in session.dirty:
        if not isinstance(obj, _UPDATED):
            return None
        state = instance_state(obj)
        keys = tuple(sorted(state.committed_state))
        if not keys:
            continue
        table = _table(type(obj))
        values = state.dict
        if any(k not in table.column or k not in values for k in keys):
            return None
        group = updates.setdefault((type(obj), keys), [])
        group.append({table.pk_key: values[table.pk_key], **{k: values[k] for k in keys}})
        writes.dirty.append(obj)
    inserts: dict[tuple[int, tuple[str, ...]], list[dict[str, Any]]] = {}
    writes.new = list(session.new)
    for obj in writes.new:
        if not isinstance(obj, _INSERTED):
            return None
        row = _table(type(obj)).provided(instance_state(obj).dict)
        if row is None:
            return None
        order = next(i for i, cls in enumerate(_INSERTED) if isinstance(obj, cls))
        inserts.setdefault((order, tuple(row)), []).append(row)
    events = outbox.pending(session)
    if events:
        table = _table(RunEventRow)
        writes.inserts.append((table, tuple(table.insert_keys), events))
    for (order, keys), rows in sorted(inserts.items(), key=lambda item: item[0][0]):
        writes.inserts.append((_table(_INSERTED[order]), keys, rows))
    for (cls, keys), rows in updates.items():
        table = _table(cls)
        # In key order, as the ORM writes them: concurrent writers lock rows in one order.
        writes.updates.append((table, keys, sorted(rows, key=lambda r: r[table.pk_key])))
    writes.closes = session.info.get(_CLOSES) or []
    if (
        any(len(rows) > MAX_ROWS for _t, _k, rows in writes.inserts)
        or any(len(rows) > MAX_ROWS for _t, _k, rows in writes.updates)
        or len(writes.closes) > MAX_ROWS
    ):
        return None
    return writes


def _pg_statement(writes: _Writes, changes: list[dict[str, Any]]) -> _Statement:
    """Everything in one statement, the feed's changes last (`feed.pg_parts`); NotPlain
    when a value is not one this module writes."""
    statement = _Statement()
    for table, keys, rows in writes.inserts:
        statement.insert(table, keys, rows)
    for table, keys, rows in writes.updates:
        statement.update(table, keys, rows)
    for keys, closes in _close_groups(writes.closes):
        statement.close(_table(ExecutionRow), keys, closes)
    if changes:
        # Last: the feed head's row lock is held from this statement to the commit only.
        for name, sql in feed.pg_parts(
            statement.param(_json(changes), "JSON"), statement.param(len(changes), "BIGINT")
        ):
            statement.add(name, sql)
        statement.counted.append(("feed_rows", len(changes)))
    return statement


def _write_pg(connection: Connection, statement: _Statement, changes: list[dict[str, Any]]) -> None:
    row = connection.exec_driver_sql(statement.sql(), statement.params).one()
    counts = tuple(row) if statement.counted else ()  # else the row is a placeholder 0
    for (part, expected), written in zip(statement.counted, counts, strict=True):
        if written == expected:
            continue
        if part == "feed_rows":  # a schema without the feed's head row
            feed.insert_unnumbered(connection, changes)
            continue
        _stale(expected, written)


def _write_sqlite(connection: Connection, writes: _Writes) -> None:
    """A statement per table and set of columns, each for all its rows (no round trips to
    save here: what is saved is the unit of work's bookkeeping)."""
    dialect = connection.dialect
    for table, keys, rows in writes.inserts:
        bind = table.binders(dialect)
        names = ", ".join(table.key_of[k] for k in keys)
        marks = ", ".join("?" for _ in keys)
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})",  # noqa: S608
            [tuple(bind[k](r[k]) for k in keys) for r in rows],
        )
    for table, changed, rows in writes.updates:
        bind = table.binders(dialect)
        sets = ", ".join(f"{table.key_of[k]} = ?" for k in changed)
        pk = table.pk_key
        result = connection.exec_driver_sql(
            f"UPDATE {table.name} SET {sets} WHERE {table.key_of[pk]} = ?",  # noqa: S608
            [(*(bind[k](r[k]) for k in changed), bind[pk](r[pk])) for r in rows],
        )
        if result.rowcount != len(rows):
            _stale(len(rows), result.rowcount)
    table = _table(ExecutionRow)
    bind = table.binders(dialect)
    for columns, closes in _close_groups(writes.closes):
        sets = ", ".join(f"{table.key_of[k]} = ?" for k in columns)
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET {sets}"  # noqa: S608
            " WHERE run_id = ? AND node_id = ? AND attempt = ? AND state = ?",
            [
                (*(bind[k](c[k]) for k in columns), *(c[k] for k in _ATTEMPT), _RUNNING)
                for c in closes
            ],
        )


def _stale(expected: int, written: int) -> None:
    # As the ORM's flush would: a row gone is an error.
    raise StaleDataError(f"expected to update {expected} row(s), updated {written}")


@event.listens_for(Session, "before_commit", insert=True)
def _write_at_commit(session: Session) -> None:
    bind = session.bind
    if bind is None or not session.in_transaction():
        return
    dialect = bind.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return
    changes = feed.pending(session)
    if dialect == "postgresql" and len(changes) > feed.ONE_STATEMENT_ROWS:
        return
    writes = _collect(session)
    if writes is None:
        return
    connection = session.connection()
    if dialect == "postgresql":
        if not (writes.inserts or writes.updates or writes.closes or changes):
            return
        try:
            statement = _pg_statement(writes, changes)
        except NotPlain:
            return  # the ORM and the outbox write it all, as ever
        feed.take_pending(session)
        _write_pg(connection, statement, changes)
    else:  # the feed numbers its changes itself, after this
        if not (writes.inserts or writes.updates or writes.closes):
            return
        _write_sqlite(connection, writes)
    outbox.take_pending(session)
    session.info.pop(_CLOSES, None)
    for obj in writes.dirty:
        # Written: the flush that follows has nothing left to do for it.
        state = instance_state(obj)
        state._commit_all(state.dict, session.identity_map)
    for obj in writes.new:
        session.expunge(obj)
