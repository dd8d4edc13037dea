"""PostgreSQL: what a step boundary writes, in one statement at commit.

The ORM's flush writes each changed row in a statement of its own, and so does the outbox:
the end of a step and the claim of its successor (`runs.finish_step`, `runs.claim_step`)
leave the run row, two step rows, a new execution row and a few events to write at commit -
five statements, five round trips and the unit of work's bookkeeping for three objects.
Here, just before the commit, those writes become the parts of one statement (each INSERT
or UPDATE a data-modifying CTE, every value a bound parameter), and the objects are marked
as written.

Only the plain case is taken: rows of the executor's three tables, whose changes are
column values, no more than `MAX_ROWS` rows in any part. A transaction with anything else
(a deleted object, another table's row, many rows) is left to the ORM and the outbox as
before, whole. SQLite is left alone: its statements cost no round trip.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Column, DateTime, event, inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError

from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel import outbox
from conveyor.kernel.outbox import RunEventRow

#: The most rows one part (one table's inserts, or one set of columns' updates) may have.
MAX_ROWS = 64

_UPDATED = (RunRow, StepRow)
_INSERTED = (ExecutionRow,)


class _Table:
    """What a part needs of one mapped class: its columns, their attribute keys and casts."""

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

    def cast(self, key: str) -> str:
        return _cast(self.column[key])

    def value(self, key: str, value: Any) -> Any:
        """A Python value as the driver takes it for CAST(... AS type)."""
        column = self.column[key]
        if isinstance(column.type, JSON):
            if value is None and column.type.none_as_null:
                return None
            return json.dumps(value)
        return value

    def default(self, key: str) -> Any:
        """The value the ORM would insert for an attribute never set."""
        column = self.column[key]
        if column.default is not None and column.default.is_scalar:  # type: ignore[attr-defined]
            return column.default.arg  # type: ignore[attr-defined]
        if column.server_default is not None:
            return getattr(column.server_default, "arg", None)
        return None


def _cast(column: Column[Any]) -> str:
    t = column.type
    if isinstance(t, JSON):
        return "JSON"
    if isinstance(t, DateTime):
        return "TIMESTAMPTZ" if t.timezone else "TIMESTAMP"
    name = type(t).__name__.upper()
    return {
        "STRING": "VARCHAR",
        "TEXT": "TEXT",
        "INTEGER": "INTEGER",
        "BIGINTEGER": "BIGINT",
        "BOOLEAN": "BOOLEAN",
        "FLOAT": "FLOAT8",
        "LARGEBINARY": "BYTEA",
    }.get(name, "BIGINT" if "BIG" in name else "TEXT")


_TABLES: dict[type[Any], _Table] = {}


def _table(cls: type[Any]) -> _Table:
    table = _TABLES.get(cls)
    if table is None:
        table = _TABLES[cls] = _Table(cls)
    return table


class _Statement:
    """The parts of one statement and their parameters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}
        self.updated: list[tuple[int, int]] = []  # (part, rows it must change)

    def _param(self, value: Any, cast: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"CAST(%({name})s AS {cast})"

    def insert(self, table: _Table, rows: list[dict[str, Any]]) -> None:
        keys = table.insert_keys
        values = ", ".join(
            "(" + ", ".join(self._param(table.value(k, r[k]), table.cast(k)) for k in keys) + ")"
            for r in rows
        )
        columns = ", ".join(table.key_of[k] for k in keys)
        # Names from the mapped tables; every value is a bound parameter.
        self.parts.append(f"INSERT INTO {table.name} ({columns}) VALUES {values}")  # noqa: S608

    def update(self, table: _Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        every = (table.pk_key, *keys)
        values = ", ".join(
            "(" + ", ".join(self._param(table.value(k, r[k]), table.cast(k)) for k in every) + ")"
            for r in rows
        )
        names = [table.key_of[k] for k in every]
        sets = ", ".join(f"{n} = v.{n}" for n in names[1:])
        self.parts.append(
            f"UPDATE {table.name} AS t SET {sets} FROM (VALUES {values})"  # noqa: S608
            f" AS v ({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]} RETURNING 1"
        )
        self.updated.append((len(self.parts) - 1, len(rows)))

    def sql(self) -> str:
        """The statement; its one row counts the rows each UPDATE part changed."""
        ctes = ", ".join(f"w{i} AS ({part})" for i, part in enumerate(self.parts))
        counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i, _ in self.updated) or "0"  # noqa: S608
        return f"WITH {ctes} SELECT {counts}"


def _plan(session: Session) -> tuple[_Statement, list[Any], list[Any]] | None:
    """The one statement for what the session holds, or None when it is not the plain case."""
    if session.deleted:
        return None
    updates: dict[tuple[type[Any], tuple[str, ...]], list[dict[str, Any]]] = {}
    dirty: list[Any] = []
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
        dirty.append(obj)
    inserts: dict[type[Any], list[dict[str, Any]]] = {}
    new = list(session.new)
    for obj in new:
        if not isinstance(obj, _INSERTED):
            return None
        table = _table(type(obj))
        values = instance_state(obj).dict
        inserts.setdefault(type(obj), []).append(
            {k: values[k] if k in values else table.default(k) for k in table.insert_keys}
        )
    events = outbox.pending(session)
    groups = [*inserts.values(), *updates.values(), events]
    if any(len(rows) > MAX_ROWS for rows in groups):
        return None
    statement = _Statement()
    if events:
        statement.insert(_table(RunEventRow), events)
    for cls, rows in inserts.items():
        statement.insert(_table(cls), rows)
    for (cls, keys), rows in updates.items():
        table = _table(cls)
        # In key order, as the ORM writes them: concurrent writers lock rows in one order.
        statement.update(table, keys, sorted(rows, key=lambda r: r[table.pk_key]))
    if not statement.parts:
        return None
    return statement, dirty, new


@event.listens_for(Session, "before_commit", insert=True)
def _write_at_commit(session: Session) -> None:
    bind = session.bind
    if bind is None or bind.dialect.name != "postgresql" or not session.in_transaction():
        return
    planned = _plan(session)
    if planned is None:
        return
    statement, dirty, new = planned
    counts = session.connection().exec_driver_sql(statement.sql(), statement.params).one()
    for (_part, expected), changed in zip(statement.updated, counts, strict=False):
        if changed != expected:  # as the ORM's flush would: a row gone is an error
            raise StaleDataError(f"expected to update {expected} row(s), updated {changed}")
    outbox.take_pending(session)
    for obj in dirty:
        # Written: the flush that follows has nothing left to do for it.
        state = instance_state(obj)
        state._commit_all(state.dict, session.identity_map)
    for obj in new:
        session.expunge(obj)
