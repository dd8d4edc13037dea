"""Conversions between protobuf messages and plain Python values.

User JSON (parameters, outputs, node data, documents) crosses gRPC as JSON text in fields
declared with the `(conveyor.kernel.v1.json)` option, never as `google.protobuf.Struct`: Struct
numbers are doubles, so `9007199254740993` would arrive as `9007199254740992` and `1.0` could
not be told from `1`. Python's json module keeps both exactly, so text -> value -> text is
lossless.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast, overload

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from conveyor.kernel.errors import InvalidArgument, Violation

#: Deepest nesting of arrays and objects a JSON text field may hold (the HTTP edge allows
#: the same depth for a whole request body).
MAX_JSON_DEPTH = 64


class _NotJson(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a value (0 for a scalar); iterative."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def json_text(value: Any) -> str:
    """A JSON value as compact JSON text, exactly: integers of any size, floats as floats.

    Non-ASCII characters are escaped, so the text is valid UTF-8 whatever the strings hold.
    """
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def parse_json_text(text: str, *, field: str, default: Any = None) -> Any:
    """The value of a JSON text field; `default` when the field is empty.

    Raises InvalidArgument naming `field` for text that is not one finite JSON value, or that
    nests deeper than MAX_JSON_DEPTH.
    """
    if not text:
        return default
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        value, problem = None, f"nests deeper than {MAX_JSON_DEPTH} levels"
    except (_NotJson, ValueError) as exc:
        value, problem = None, f"is not valid JSON: {exc}"
    else:
        problem = (
            ""
            if json_depth(value) <= MAX_JSON_DEPTH
            else (f"nests deeper than {MAX_JSON_DEPTH} levels")
        )
    if problem:
        raise InvalidArgument(
            f"{field} {problem}",
            violations=[Violation(field, f"{field} {problem}", "INVALID_JSON")],
        )
    return value


def parse_json_object(text: str, *, field: str) -> dict[str, Any]:
    """The object in a JSON text field ({} when empty); InvalidArgument for anything else."""
    value = parse_json_text(text, field=field, default={})
    if not isinstance(value, dict):
        raise InvalidArgument(
            f"{field} must be a JSON object",
            violations=[Violation(field, f"{field} must be a JSON object", "INVALID_JSON")],
        )
    return value


E = TypeVar("E", bound=int)


def enum_value(enum: type[E], name: str) -> E:
    """`Enum.Value(name)` typed as the enum (the generated stubs type it as a plain int);
    ValueError for a name the enum does not have."""
    return cast(E, enum.Value(name))  # type: ignore[attr-defined]


def dict_to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    """A JSON-compatible dict as a Struct (for data of our own, never user values)."""
    struct = struct_pb2.Struct()
    if value:
        struct.update(value)
    return struct


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """Seconds as a Duration (None stays None so the field is left unset)."""
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def seconds(value: duration_pb2.Duration) -> float | int:
    """A Duration as seconds: an int when whole, else a float."""
    whole, nanos = int(value.seconds), int(value.nanos)
    return whole if nanos == 0 else whole + nanos / 1e9


@overload
def timestamp(value: datetime) -> timestamp_pb2.Timestamp: ...
@overload
def timestamp(value: None) -> None: ...
@overload
def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None: ...
def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A datetime as a Timestamp (None stays None so the field is left unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts
