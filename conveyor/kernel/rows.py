"""Table rows as JSON records and back, for export, import and archives of run history.

A record is ``{"table": name, "row": {column: value}}``; datetimes travel as ISO 8601 text
in UTC, binary columns as base64 text, everything else as the JSON the column already
holds. Loading checks that the table is one the caller accepts and that every non-nullable
column without a default is there.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Table

from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.ids import as_utc

MAX_RECORD = 64 * 1024 * 1024


def dump(table: Table, row: Any) -> str:
    """One record as JSON text, from an ORM object or a row mapping."""
    values: dict[str, Any] = {}
    for column in table.columns:
        value = row[column.name] if isinstance(row, Mapping) else _attr(row, column.name)
        if isinstance(value, datetime):
            utc = as_utc(value)
            value = utc.isoformat() if utc is not None else None
        elif isinstance(value, bytes | bytearray | memoryview):
            value = base64.b64encode(bytes(value)).decode("ascii")
        values[column.name] = value
    return json.dumps({"table": table.name, "row": values}, separators=(",", ":"))


def _attr(obj: Any, column: str) -> Any:
    for attr in obj.__mapper__.column_attrs:
        if attr.columns[0].name == column:
            return getattr(obj, attr.key)
    raise KeyError(column)


def load(records: Iterable[str], tables: Sequence[Table]) -> list[tuple[Table, dict[str, Any]]]:
    """Parse records for the given tables; INVALID_ARGUMENT names the first bad one."""
    by_name = {t.name: t for t in tables}
    out: list[tuple[Table, dict[str, Any]]] = []
    for index, text in enumerate(records):
        field = f"records[{index}]"
        if len(text) > MAX_RECORD:
            raise _bad(field, "is too large")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(field, f"is not JSON: {exc}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("row"), dict):
            raise _bad(field, 'must be {"table": …, "row": {…}}')
        table = by_name.get(str(record.get("table")))
        if table is None:
            raise _bad(
                field, f"names a table this service does not import: {record.get('table')!r}"
            )
        out.append((table, _values(table, record["row"], field)))
    return out


def _values(table: Table, row: dict[str, Any], field: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in row:
            if not column.nullable and column.default is None and not column.primary_key:
                raise _bad(field, f"misses column {column.name!r}")
            continue
        value = row[column.name]
        if isinstance(column.type, DateTime) and value is not None:
            try:
                value = datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise _bad(field, f"column {column.name!r} is not a time") from exc
        if isinstance(column.type, LargeBinary) and value is not None:
            try:
                value = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad(field, f"column {column.name!r} is not base64") from exc
        values[column.name] = value
    return values


def _bad(field: str, problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} {problem}", violations=[Violation(field, problem, "INVALID_RECORD")]
    )
