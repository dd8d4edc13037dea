"""Generate the dashboard's TypeScript API types from the compiled protos.

The gateway answers JSON with proto field names and every field present (see
`conveyor.gateway.transcode.to_json`), so each message becomes an interface whose keys are
the proto field names, enums become unions of their value names, 64-bit integers strings,
and well-known types their JSON mapping; a stream response that declares a batch also gets
`<Response>Frame`, the data of one of its server-sent events. Run as
`python scripts/gen_ts_types.py`; `--check` exits 1 when web/src/gen/api.ts is stale.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from conveyor.kernel.protojson import json_kind, json_name
from conveyor.kernel.v1 import json_pb2, stream_pb2

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "web" / "src" / "gen" / "api.ts"
FRAME_SUFFIX = "Frame"
MODULES = [
    "conveyor.auth.v1.auth_pb2",
    "conveyor.executor.v1.run_pb2",
    "conveyor.executor.v1.executor_service_pb2",
    "conveyor.translator.v1.translator_pb2",
    "conveyor.translator.v1.translator_service_pb2",
    "conveyor.monitor.v1.event_pb2",
    "conveyor.monitor.v1.monitor_service_pb2",
    "conveyor.monitor.v1.insight_service_pb2",
    "conveyor.monitor.v1.alert_service_pb2",
    "conveyor.scheduler.v1.schedule_pb2",
    "conveyor.scheduler.v1.scheduler_service_pb2",
    "conveyor.gateway.v1.gateway_service_pb2",
]
_WELL_KNOWN = {
    "google.protobuf.Timestamp": "string",
    "google.protobuf.Duration": "string",
    "google.protobuf.Struct": "Record<string, unknown>",
    "google.protobuf.Value": "unknown",
    "google.protobuf.ListValue": "unknown[]",
    "google.protobuf.Empty": "Record<string, never>",
    "google.protobuf.FieldMask": "string",
}
_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "number",
    FieldDescriptor.TYPE_FLOAT: "number",
    FieldDescriptor.TYPE_INT32: "number",
    FieldDescriptor.TYPE_UINT32: "number",
    FieldDescriptor.TYPE_SINT32: "number",
    FieldDescriptor.TYPE_FIXED32: "number",
    FieldDescriptor.TYPE_SFIXED32: "number",
    FieldDescriptor.TYPE_INT64: "string",
    FieldDescriptor.TYPE_UINT64: "string",
    FieldDescriptor.TYPE_SINT64: "string",
    FieldDescriptor.TYPE_FIXED64: "string",
    FieldDescriptor.TYPE_SFIXED64: "string",
    FieldDescriptor.TYPE_BOOL: "boolean",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "string",
}


def _ts_name(full_name: str) -> str:
    """`conveyor.executor.v1.Run` -> `Run`; nested `A.B` -> `A_B`."""
    parts = full_name.split(".")
    package_end = next(i for i, p in enumerate(parts) if p[:1].isupper())
    return "_".join(parts[package_end:])


def _field_type(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        if field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return f"Record<string, {_field_type(value)}>"
        name = field.message_type.full_name
        base = _WELL_KNOWN.get(name) or _ts_name(name)
    elif field.enum_type is not None:
        base = _ts_name(field.enum_type.full_name)
    else:
        base = _SCALARS[field.type]
    if _repeated(field):
        return f"{base}[]" if " " not in base else f"Array<{base}>"
    return base


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated) and not (
        field.message_type is not None and field.message_type.GetOptions().map_entry
    )


def _optional(field: FieldDescriptor) -> bool:
    """Absent from the JSON when unset: singular messages and explicit-presence scalars."""
    if _repeated(field):
        return False
    if field.message_type is not None and not field.message_type.GetOptions().map_entry:
        return True
    return field.containing_oneof is not None


def _enum(enum: EnumDescriptor) -> str:
    values = " | ".join(f'"{v.name}"' for v in enum.values)
    return f"export type {_ts_name(enum.full_name)} = {values};\n"


def _message(message: Descriptor) -> list[str]:
    out = [_enum(nested) for nested in message.enum_types]
    for nested_msg in message.nested_types:
        if not nested_msg.GetOptions().map_entry:
            out.extend(_message(nested_msg))
    lines = [f"export interface {_ts_name(message.full_name)} {{"]
    for field in message.fields:
        kind = json_kind(field)
        if kind:
            # JSON text fields appear parsed, under their name without `_json`, absent when
            # empty (conveyor.kernel.protojson).
            shape = "Record<string, unknown>" if kind == json_pb2.JSON_KIND_OBJECT else "unknown"
            lines.append(f"  {json_name(field)}?: {shape};")
            continue
        mark = "?" if _optional(field) else ""
        lines.append(f"  {field.name}{mark}: {_field_type(field)};")
    lines.append("}\n")
    out.append("\n".join(lines))
    out.extend(_batch_frame(message))
    return out


def _batch_frame(message: Descriptor) -> list[str]:
    """For a stream response declaring a batch (`(conveyor.kernel.v1.stream_batch)`), the
    data of one server-sent event or WebSocket frame: one element under its key."""
    option: Any = stream_pb2.stream_batch
    for field in message.fields:
        options = field.GetOptions()
        if options.HasExtension(option) and options.Extensions[option]:
            key = options.Extensions[option]
            name = _ts_name(message.full_name)
            element = _ts_name(field.message_type.full_name)
            return [
                f"// One server-sent event (or WebSocket frame) of a {name} stream: each element"
                f" of `{field.name}` is sent alone.\n"
                f"export interface {name}{FRAME_SUFFIX} {{\n  {key}: {element};\n}}\n"
            ]
    return []


def render() -> str:
    """The whole generated module."""
    chunks = [
        "// Generated by scripts/gen_ts_types.py from protos/: do not edit.\n"
        "// The gateway's JSON: proto field names, enums by name, 64-bit integers as strings.\n"
    ]
    seen: set[str] = set()
    for module_name in MODULES:
        file = importlib.import_module(module_name).DESCRIPTOR
        chunks.extend(_enum(enum) for enum in file.enum_types_by_name.values())
        for message in file.message_types_by_name.values():
            name = _ts_name(message.full_name)
            if name in seen:
                raise SystemExit(f"two messages map to the TypeScript name {name}")
            seen.add(name)
            chunks.extend(_message(message))
    return "\n".join(chunks)


def main() -> int:
    """Write web/src/gen/api.ts, or with --check compare it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    opts = parser.parse_args()
    text = render()
    if opts.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"stale: {TARGET.relative_to(ROOT)} (run scripts/gen_ts_types.py)")
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
