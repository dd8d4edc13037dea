"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the same descriptors and
`google.api.http` routes the gateway serves, so it cannot drift from what is served.

Schemas follow the proto3 JSON mapping as the gateway writes it (proto field names, enums by
name, 64-bit integers as strings, well-known types in their JSON forms); streams are
`text/event-stream` whose events carry the response message as JSON (or, for a response
declaring a batch with `(conveyor.kernel.v1.stream_batch)`, one event per element).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from conveyor.auth import tokens
from conveyor.auth.roles import required_role
from conveyor.gateway.frames import resume_field, stream_batch
from conveyor.gateway.transcode import HttpRoute
from conveyor.kernel.protojson import OBJECT, json_kind, json_name

_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "description": "seconds, e.g. '1.5s'"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated paths"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer"},
    "google.protobuf.UInt32Value": {"type": "integer"},
    "google.protobuf.Int64Value": {"type": ["string", "integer"]},
    "google.protobuf.UInt64Value": {"type": ["string", "integer"]},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}
_QUERY_MESSAGES = {
    name for name in _WELL_KNOWN if name.endswith("Value") and name != "google.protobuf.Value"
} | {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "status": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["code", "status", "message"],
        }
    },
    "required": ["error"],
}


class _Schemas:
    """Collects component schemas for the messages reachable from the routes."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, desc: Descriptor) -> dict[str, Any]:
        """A schema for a message: inline for well-known types, a $ref otherwise."""
        known = _WELL_KNOWN.get(desc.full_name)
        if known is not None:
            return dict(known)
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {}  # placeholder: recursion stops here
            self.components[desc.full_name] = self._message(desc)
        return {"$ref": f"#/components/schemas/{desc.full_name}"}

    def _message(self, desc: Descriptor) -> dict[str, Any]:
        properties = {}
        for f in desc.fields:
            kind = json_kind(f)
            if kind:
                # JSON text travels parsed, under its name without `_json` (kernel.protojson).
                properties[json_name(f)] = {"type": "object"} if kind == OBJECT else {}
            else:
                properties[f.name] = self.field(f)
        return {"type": "object", "properties": properties}

    def scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of a field (repetition aside)."""
        if field.message_type is not None:
            return self.ref(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        kind = field.type
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _INT64:
            return {"type": ["string", "integer"], "format": "int64"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of a field, maps and repeated fields included."""
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.scalar(entry.fields_by_name["value"]),
            }
        if field.is_repeated:
            return {"type": "array", "items": self.scalar(field)}
        return self.scalar(field)


def _query_parameters(route: HttpRoute, schemas: _Schemas) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    bound = {v.split(".")[0] for v in route.variables} | ({route.body} if route.body else set())
    params = []
    for field in route.method.input_type.fields:
        if field.name in bound or json_kind(field):
            continue
        message = field.message_type
        if message is not None and message.full_name not in _QUERY_MESSAGES:
            continue
        schema = schemas.field(field)
        if message is not None:
            schema = dict(_WELL_KNOWN[message.full_name])
        params.append({"name": field.name, "in": "query", "required": False, "schema": schema})
    return params


def _operation(route: HttpRoute, schemas: _Schemas, operation_id: str) -> dict[str, Any]:
    role = required_role(route.method)
    params: list[dict[str, Any]] = [
        {
            "name": _param(v),
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": f"Sets `{v}`.",
        }
        for v in route.variables
    ]
    params += _query_parameters(route, schemas)
    response = schemas.ref(route.method.output_type)
    resume = resume_field(route.method.input_type) if route.server_streaming else None
    if resume is not None:
        params.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": f"Resume after this position (sets `{resume}`; EventSource "
                "sends it on reconnect).",
            }
        )
        description = (
            "Server-sent events; each `data:` line is the response message as JSON, `id:` its "
            "stream position."
        )
        batch = stream_batch(route.method.output_type)
        if batch is not None:
            # Each element of the response's batch is an event of its own.
            response = {
                "type": "object",
                "properties": {batch.key: schemas.ref(batch.element)},
                "required": [batch.key],
            }
            description = (
                f"Server-sent events, one per element of the response's `{batch.name}`; each "
                f'`data:` line is `{{"{batch.key}": ...}}` with that element as JSON, `id:` its '
                "stream position, `event:` its kind. A WebSocket frame carries the same fields."
            )
        ok: dict[str, Any] = {
            "200": {
                "description": description,
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "x-event-schema": response,
            },
            "204": {"description": "Resumed at or past the end of a finished stream."},
        }
    else:
        ok = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": response}},
            }
        }
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": f"{route.service.rsplit('.', 1)[-1]}.{route.method.name}",
        "tags": [route.service.rsplit(".", 1)[-1]],
        "x-required-role": tokens.role_label(role),
        "parameters": params,
        "responses": {
            **ok,
            "default": {
                "description": "An error (401 with WWW-Authenticate: Bearer, 403, 4xx, 5xx).",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        },
    }
    if route.body:
        body_desc = route.method.input_type
        body_schema = (
            schemas.ref(body_desc)
            if route.body == "*"
            else schemas.field(body_desc.fields_by_name[route.body])
        )
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body_schema}},
        }
    return operation


def _param(variable: str) -> str:
    """A path variable's parameter name: `schedule.schedule_id` -> `schedule_id` (tools choke
    on dots in path template names)."""
    return variable.rsplit(".", 1)[-1]


def _path(route: HttpRoute) -> str:
    path = route.template
    for variable in route.variables:
        path = path.replace("{" + variable + "}", "{" + _param(variable) + "}")
    return path


def _open_path(summary: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "OK", "content": content}},
        }
    }


HOOK_PATH: dict[str, Any] = {
    "post": {
        "operationId": "StartRunFromWebhook",
        "summary": "A signed delivery starts a run of a job with a trigger.webhook node",
        "security": [],
        "parameters": [
            {"name": "job", "in": "path", "required": True, "schema": {"type": "string"}},
            *(
                {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
                for name in ("X-Conveyor-Timestamp", "X-Conveyor-Signature", "X-Conveyor-Delivery")
            ),
        ],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": {
            "200": {
                "description": "The run started (or, for a redelivery, the run it started)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "default": {
                "description": "401 bad or missing signature, 400 bad parameters, ...",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            },
        },
    }
}


def openapi_document(
    routes: Sequence[HttpRoute], *, version: str, extra_paths: Iterable[tuple[str, Any]] = ()
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for route in routes:
        operation_id = f"{route.service.rsplit('.', 1)[-1]}_{route.method.name}"
        n = 2
        while operation_id in used:
            operation_id, n = f"{operation_id}_{n}", n + 1
        used.add(operation_id)
        paths.setdefault(_path(route), {})[route.verb.lower()] = _operation(
            route, schemas, operation_id
        )
    paths["/healthz"] = _open_path(
        "Health of the gateway's backends", {"application/json": {"schema": {"type": "object"}}}
    )
    paths["/openapi.json"] = _open_path(
        "This document", {"application/json": {"schema": {"type": "object"}}}
    )
    paths["/v1/hooks/{job}"] = HOOK_PATH
    paths.update(dict(extra_paths))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor",
            "version": version,
            "description": "Generated from the protos' google.api.http annotations.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas.components,
        },
    }
