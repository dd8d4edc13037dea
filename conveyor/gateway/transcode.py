"""HTTP/JSON <-> protobuf transcoding driven by the `google.api.http` method options.

Everything here is pure: templates compile to regexes, HTTP requests become request messages,
and failures become Google-style JSON error bodies. The Starlette wiring is in `http.py`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.api import annotations_pb2, http_pb2
from google.protobuf import any_pb2, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from conveyor.kernel.protojson import JsonFieldError, from_json_dict, to_json_dict

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
#: The one reserved grpc-* key that carries application data (google.rpc.Status details).
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# Message types a single query value can set, in their JSON string form.
_QUERY_MESSAGES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        *(
            f"google.protobuf.{name}Value"
            for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String")
        ),
    }
)
_INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC code (500 for the ones without a closer match)."""
    return HTTP_STATUS.get(code, 500)


@dataclass
class CallError(Exception):
    """A call that ended with a non-OK status, with its google.rpc details."""

    code: grpc.StatusCode
    message: str
    details: Sequence[any_pb2.Any] = ()

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> CallError:
        """From a google.rpc.Status."""
        code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
        return cls(code, status.message, list(status.details))

    @classmethod
    def from_rpc_error(cls, err: grpc.aio.AioRpcError) -> CallError:
        """From a failed call, reading the details trailer when the backend sent one."""
        for key, value in err.trailing_metadata() or ():
            if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                try:
                    status = status_pb2.Status.FromString(value)
                except DecodeError:
                    break
                return cls(err.code(), status.message or err.details() or "", list(status.details))
        return cls(err.code(), err.details() or "")


class InputError(Exception):
    """The HTTP request cannot be turned into a request message."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def failure(self) -> CallError:
        """As an INVALID_ARGUMENT failure with one BadRequest field violation."""
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=self.field, description=self.message, reason="INVALID_HTTP_REQUEST"
                )
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return CallError(grpc.StatusCode.INVALID_ARGUMENT, self.message, [packed])


def error_body(failure: CallError) -> dict[str, Any]:
    """The Google-style JSON error: {"error": {code, status, message, details}}."""
    details: list[Any] = []
    for detail in failure.details:
        try:
            details.append(json_format.MessageToDict(detail))
        except (TypeError, KeyError, json_format.Error):
            # A detail type this process has no descriptor for: say what it was, at least.
            details.append({"@type": detail.type_url})
    return {
        "error": {
            "code": http_status(failure.code),
            "status": failure.code.name,
            "message": failure.message,
            "details": details,
        }
    }


def to_json(message: Message) -> dict[str, Any]:
    """Response message -> JSON object with proto field names and every field present; JSON
    text fields (`(conveyor.kernel.v1.json)`) as their values, without the `_json` suffix."""
    return to_json_dict(message)


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP binding of a gRPC method."""

    verb: str
    template: str
    pattern: re.Pattern[str]
    variables: tuple[str, ...]
    body: str
    service: str
    method: MethodDescriptor
    request_cls: type[Message]
    response_cls: type[Message]

    @property
    def grpc_path(self) -> str:
        """`/<package.Service>/<Method>`."""
        return f"/{self.service}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        """Whether the method streams its responses."""
        return bool(self.method.server_streaming)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside `{...}`."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _segments_regex(segments: Iterable[str]) -> str:
    out = []
    for seg in segments:
        if seg == "*":
            out.append("[^/]+")
        elif seg == "**":
            out.append(".+")
        else:
            out.append(re.escape(seg))
    return "/".join(out)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A path template (`/v1/jobs/{job_id}:run`) -> an anchored regex and its field paths."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    *_, last = _split_top(template, "/")
    verb = ""
    tail = _split_top(last, ":")
    if len(tail) > 1:
        verb = tail[-1]
        template = template[: len(template) - len(verb) - 1]
    regex: list[str] = []
    variables: list[str] = []
    for seg in _split_top(template[1:], "/"):
        if seg.startswith("{") and seg.endswith("}"):
            field, _, sub = seg[1:-1].partition("=")
            inner = _segments_regex(sub.split("/")) if sub else "[^/]+"
            regex.append(f"(?P<v{len(variables)}>{inner})")
            variables.append(field)
        else:
            regex.append(_segments_regex([seg]))
    pattern = "/" + "/".join(regex) + (":" + re.escape(verb) if verb else "")
    return re.compile(pattern), tuple(variables)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str]]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        yield rule.custom.kind.upper(), rule.custom.path, rule.body
    elif kind is not None:
        yield kind.upper(), getattr(rule, kind), rule.body
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


def routes_for(services: Iterable[Any]) -> list[HttpRoute]:
    """Every HTTP binding declared on the methods of the given service descriptors."""
    table: list[HttpRoute] = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            for verb, template, body in _bindings(options.Extensions[annotations_pb2.http]):
                pattern, variables = compile_template(template)
                for variable in variables:
                    _resolve(method.input_type, variable.split("."))
                table.append(
                    HttpRoute(
                        verb=verb,
                        template=template,
                        pattern=pattern,
                        variables=variables,
                        body=body,
                        service=service.full_name,
                        method=method,
                        request_cls=message_factory.GetMessageClass(method.input_type),
                        response_cls=message_factory.GetMessageClass(method.output_type),
                    )
                )
    return table


def _field(desc: Descriptor, name: str) -> FieldDescriptor | None:
    found = desc.fields_by_name.get(name)
    if found is not None:
        return found
    return next((f for f in desc.fields if f.json_name == name), None)


def _resolve(desc: Descriptor, path: Sequence[str]) -> list[FieldDescriptor]:
    fields: list[FieldDescriptor] = []
    for i, name in enumerate(path):
        found = _field(desc, name)
        if found is None:
            raise KeyError(".".join(path[: i + 1]))
        fields.append(found)
        if i < len(path) - 1:
            if found.message_type is None or _is_repeated(found):
                raise KeyError(".".join(path[: i + 1]))
            desc = found.message_type
    return fields


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _put(target: dict[str, Any], fields: Sequence[FieldDescriptor], value: Any) -> None:
    """Set a nested JSON value, replacing any spelling (snake or camel) of the same field."""
    for field in fields[:-1]:
        existing = target.pop(field.json_name, None) if field.json_name != field.name else None
        nested = target.setdefault(field.name, existing if isinstance(existing, dict) else {})
        if not isinstance(nested, dict):
            nested = target[field.name] = {}
        target = nested
    last = fields[-1]
    target.pop(last.json_name, None)
    target[last.name] = value


def _query_value(field: FieldDescriptor, key: str, raw: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise InputError(f"query parameter {key!r} must be true or false, not {raw!r}", field=key)
    if field.type in _INT_TYPES:
        try:
            return int(raw)
        except ValueError:
            raise InputError(
                f"query parameter {key!r} must be an integer, not {raw!r}", field=key
            ) from None
    if field.message_type is not None and field.message_type.full_name not in _QUERY_MESSAGES:
        raise InputError(f"field {key!r} cannot be set from the query string", field=key)
    # Enums (by name or number), floats, strings and well-known types: ParseDict converts.
    return raw


def _query_dict(desc: Descriptor, items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in items:
        try:
            fields = _resolve(desc, key.split("."))
        except KeyError:
            raise InputError(f"unknown query parameter {key!r}", field=key) from None
        value = _query_value(fields[-1], key, raw)
        if _is_repeated(fields[-1]):
            holder = out
            for field in fields[:-1]:
                holder = holder.setdefault(field.name, {})
            holder.setdefault(fields[-1].name, []).append(value)
        else:
            _put(out, fields, value)
    return out


#: Deepest JSON nesting a body may have (a workflow document needs a handful of levels; the
#: backends' protobuf parser stops at 100).
MAX_JSON_DEPTH = 64


class _NotFinite(ValueError):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value) or math.isnan(value):
        raise _NotFinite(f"number {text} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a JSON number")


def _depth_ok(value: Any) -> bool:
    """Whether nesting stays within MAX_JSON_DEPTH (iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def parse_body(body: bytes) -> Any:
    """A request body as JSON (None when empty); InputError for what no backend can take."""
    if not body.strip():
        return None
    try:
        parsed = json.loads(body, parse_float=_finite, parse_constant=_constant)
    except _NotFinite as exc:
        raise InputError(f"request body: {exc}", field="body") from None
    except RecursionError:
        raise InputError(
            f"request body nests deeper than {MAX_JSON_DEPTH} levels", field="body"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"request body is not valid JSON: {exc}", field="body") from None
    if not _depth_ok(parsed):
        raise InputError(f"request body nests deeper than {MAX_JSON_DEPTH} levels", field="body")
    return parsed


def _bad_text(message: Message) -> str | None:
    """The path of the first string holding a NUL or a lone surrogate (neither can be stored
    or sent), or None."""
    stack: list[tuple[str, Any]] = [("", message)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "body"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path or "body"
        elif isinstance(item, Message):
            for field, value in item.ListFields():
                name = f"{path}.{field.name}" if path else field.name
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    stack.extend((f"{name}.{k}", k) for k in value if isinstance(k, str))
                    stack.extend((f"{name}.{k}", v) for k, v in value.items())
                elif _is_repeated(field):
                    stack.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
                else:
                    stack.append((name, value))
    return None


def build_request(
    route: HttpRoute,
    *,
    path_values: Sequence[str],
    query: Iterable[tuple[str, str]],
    body: bytes,
) -> Message:
    """An HTTP request -> the method's request message; InputError when it does not fit."""
    desc = route.method.input_type
    data: dict[str, Any]
    if route.body == "*":
        # Every field comes from the path or the body here, so any query parameter is unknown.
        unknown = [key for key, _ in query]
        if unknown:
            raise InputError(f"unknown query parameter {unknown[0]!r}", field=unknown[0])
        parsed = parse_body(body)
        if parsed is not None and not isinstance(parsed, dict):
            raise InputError("request body must be a JSON object", field="body")
        data = parsed or {}
    else:
        data = _query_dict(desc, query)
        if route.body:
            parsed = parse_body(body)
            if parsed is not None:
                _put(data, _resolve(desc, route.body.split(".")), parsed)
    for variable, value in zip(route.variables, path_values, strict=True):
        _put(data, _resolve(desc, variable.split(".")), value)
    message = route.request_cls()
    where = "body" if route.body else "query"
    try:
        from_json_dict(data, message)
    except JsonFieldError as exc:
        raise InputError(str(exc), field=exc.field) from None
    except json_format.ParseError as exc:
        raise InputError(str(exc), field=where) from None
    except (ValueError, TypeError, RecursionError) as exc:  # the parser's own edge cases
        raise InputError(f"the request does not fit the message: {exc}", field=where) from None
    bad = _bad_text(message)
    if bad is not None:
        raise InputError(f"{bad}: text must be valid UTF-8 without NUL characters", field=bad)
    return message


def sse_error(failure: CallError) -> bytes:
    """The final event of a stream that failed after it started."""
    return ("event: error\ndata: " + json.dumps(error_body(failure)) + "\n\n").encode()
