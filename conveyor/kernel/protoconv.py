"""Conversions between protobuf well-known types and plain Python values."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2


def normalise_numbers(value: Any) -> Any:
    """Struct carries every number as a double: turn integral floats back into ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: normalise_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_numbers(v) for v in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict with ints restored."""
    result = normalise_numbers(json_format.MessageToDict(struct))
    return result if isinstance(result, dict) else {}


def dict_to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    """A JSON-compatible dict as a Struct."""
    struct = struct_pb2.Struct()
    if value:
        struct.update(value)
    return struct


def to_value(value: Any) -> struct_pb2.Value:
    """Any JSON-compatible value as a google.protobuf.Value."""
    msg = struct_pb2.Value()
    json_format.ParseDict(value, msg)
    return msg


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """Seconds as a Duration (None stays None so the field is left unset)."""
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (None stays None so the field is left unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts
