"""The JSON mapping of messages whose string fields carry JSON text.

A string field declared `[(conveyor.kernel.v1.json) = JSON_KIND_...]` holds one JSON value
as text (see `protos/conveyor/kernel/v1/json.proto`). In the JSON mapping (the gateway's
HTTP API, the CLI's `--output json`) it appears as that value, parsed, under its name without
the `_json` suffix; an empty text is left out. Requests may give it the same way. Python's
json module keeps integers of any size and floats as they were, so nothing is rounded.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from conveyor.kernel.protoconv import json_text
from conveyor.kernel.v1 import json_pb2

__all__ = ["JsonFieldError", "from_json_dict", "json_kind", "json_name", "to_json_dict"]

OBJECT = json_pb2.JSON_KIND_OBJECT
VALUE = json_pb2.JSON_KIND_VALUE
_SUFFIX = "_json"


class JsonFieldError(ValueError):
    """A request gives a JSON field a value of the wrong kind."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def json_kind(field: FieldDescriptor) -> int:
    """The field's declared JSON kind; JSON_KIND_UNSPECIFIED for an ordinary field."""
    options = field.GetOptions()
    if not options.HasExtension(cast(Any, json_pb2.json)):
        return json_pb2.JSON_KIND_UNSPECIFIED
    kind = int(options.Extensions[cast(Any, json_pb2.json)])
    if kind and (field.type != FieldDescriptor.TYPE_STRING or not field.name.endswith(_SUFFIX)):
        raise TypeError(f"{field.full_name}: a JSON field is a string named *{_SUFFIX}")
    return kind


def json_name(field: FieldDescriptor) -> str:
    """The name a JSON field has in the JSON mapping: its name without `_json`."""
    return str(field.name).removesuffix(_SUFFIX)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _nested(field: FieldDescriptor) -> Descriptor | None:
    """The message type a field holds (a map's value type for a map), if it has JSON fields."""
    desc = field.message_type
    if desc is None:
        return None
    if desc.GetOptions().map_entry:
        desc = desc.fields_by_name["value"].message_type
    return desc if desc is not None and _has_json(desc) else None


@cache
def _has_json(desc: Descriptor) -> bool:
    return _search(desc, set())


def _search(desc: Descriptor, seen: set[str]) -> bool:
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    for field in desc.fields:
        if json_kind(field):
            return True
        inner = field.message_type
        if inner is not None and inner.GetOptions().map_entry:
            inner = inner.fields_by_name["value"].message_type
        if inner is not None and _search(inner, seen):
            return True
    return False


def _items(field: FieldDescriptor, value: Any) -> list[Any]:
    """The nested objects of a field's JSON value (one, a list's, or a map's values)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return list(value.values()) if isinstance(value, dict) else []
    if field.is_repeated:
        return list(value) if isinstance(value, list) else []
    return [value]


def _decode(desc: Descriptor, data: dict[str, Any]) -> None:
    for field in desc.fields:
        if field.name not in data:
            continue
        if json_kind(field):
            text = data.pop(field.name)
            if text:
                data[json_name(field)] = json.loads(text)
            continue
        inner = _nested(field)
        if inner is not None:
            for item in _items(field, data[field.name]):
                if isinstance(item, dict):
                    _decode(inner, item)


def to_json_dict(message: Message, *, every_field: bool = True) -> dict[str, Any]:
    """A message in the JSON mapping: proto field names, JSON fields as values.

    `every_field` prints fields without presence at their defaults (the gateway's shape).
    """
    result: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=every_field,
    )
    if _has_json(message.DESCRIPTOR):
        _decode(cast(Descriptor, message.DESCRIPTOR), result)
    return result


def _clean_text(value: Any) -> bool:
    """No string (key or value) holds a NUL or a lone surrogate: neither can be stored."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _encode(desc: Descriptor, data: dict[str, Any], path: str) -> None:
    for field in desc.fields:
        kind = json_kind(field)
        if kind:
            name = json_name(field)
            for key in (name, _camel(name)):
                if key not in data:
                    continue
                value = data.pop(key)
                where = f"{path}{name}"
                if kind == OBJECT and not isinstance(value, dict):
                    raise JsonFieldError(f"{where} must be a JSON object", field=where)
                if not _clean_text(value):
                    raise JsonFieldError(
                        f"{where}: text must be valid UTF-8 without NUL characters", field=where
                    )
                data[field.name] = json_text(value)
            continue
        inner = _nested(field)
        if inner is None:
            continue
        for key in (field.name, field.json_name):
            if key in data:
                for i, item in enumerate(_items(field, data[key])):
                    if isinstance(item, dict):
                        index = f"[{i}]" if field.is_repeated else ""
                        _encode(inner, item, f"{path}{field.name}{index}.")


def from_json_dict(data: dict[str, Any], message: Message) -> Message:
    """Fill `message` from its JSON mapping (JSON fields given as values or as text).

    Raises JsonFieldError (naming the field) for a JSON field of the wrong kind, and
    json_format.ParseError for anything else that does not fit.
    """
    if _has_json(message.DESCRIPTOR):
        _encode(cast(Descriptor, message.DESCRIPTOR), data, "")
    json_format.ParseDict(data, message, ignore_unknown_fields=False)
    return message
