"""How a stream's messages become server-sent events and WebSocket frames, by the rules the
protos declare (`protos/conveyor/kernel/v1/stream.proto`): which field is a message's position
(the event's `id`), which oneof names its kind (the event's name), which request field resumes
the stream, and which repeated field is a batch whose elements are sent one event each.

A backend's stream messages arrive as raw bytes. A batch is split into its elements without
decoding the rest, and an element up to `CACHE_MAX_BYTES` is encoded once per distinct
element (LRU): with N watchers of one run, a live event is decoded and turned into JSON once,
not N times, however each watcher's batches happen to be cut.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from conveyor.gateway.transcode import to_json
from conveyor.kernel.v1 import stream_pb2

#: Stream messages (or batch elements) up to this size are encoded once per distinct value.
CACHE_MAX_BYTES = 16 * 1024


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _marked(desc: Any, option: Any) -> Any:
    """The first field of a message type that carries the boolean field option, if any."""
    for field in desc.fields:
        options = field.GetOptions()
        if options.HasExtension(option) and options.Extensions[option]:
            return field
    return None


def _position(message: Message, name: str) -> tuple[int | None, str]:
    """(position, event kind) of a stream message, from the field its proto declares
    `(conveyor.kernel.v1.stream_position)`, on the message itself or else on a set singular
    message field it holds; the kind is the set field of that holder's oneof declared
    `(conveyor.kernel.v1.event_kind)`, else `name` (and so without a position)."""
    holder: Message | None = None
    field = _marked(message.DESCRIPTOR, stream_pb2.stream_position)
    if field is not None:
        holder = message
    else:
        for outer in message.DESCRIPTOR.fields:
            if outer.message_type is None or _is_repeated(cast(FieldDescriptor, outer)):
                continue
            inner = _marked(outer.message_type, stream_pb2.stream_position)
            if inner is not None and message.HasField(outer.name):
                holder, field = getattr(message, outer.name), inner
                break
    if holder is None or field is None:
        return None, name
    kind: Any = stream_pb2.event_kind  # a OneofOptions extension; the stubs type it as a field
    for oneof in holder.DESCRIPTOR.oneofs:
        options = oneof.GetOptions()
        if options.HasExtension(kind) and options.Extensions[kind]:
            name = holder.WhichOneof(oneof.name) or name
            break
    return int(getattr(holder, field.name)), name


def resume_field(desc: Any) -> str | None:
    """The streaming request's field declared `(conveyor.kernel.v1.resume_after)`, if any."""
    field = _marked(desc, stream_pb2.resume_after)
    return None if field is None else str(field.name)


class StreamBatch(NamedTuple):
    """A response's repeated field whose elements are sent as events of their own."""

    name: str
    number: int
    element: Descriptor
    key: str  # each element's event data is {key: element}


def stream_batch(desc: Any) -> StreamBatch | None:
    """The repeated message field of a stream's response declared
    `(conveyor.kernel.v1.stream_batch)`, if any."""
    option: Any = stream_pb2.stream_batch
    for field in desc.fields:
        options = field.GetOptions()
        if options.HasExtension(option) and options.Extensions[option]:
            if field.message_type is None or not _is_repeated(field):
                raise ValueError(f"{field.full_name}: a stream batch is a repeated message field")
            key = str(options.Extensions[option])
            return StreamBatch(field.name, field.number, field.message_type, key)
    return None


class Frame(NamedTuple):
    """One server-sent event (or WebSocket frame): its `id`, its name, its data."""

    id: int | None
    event: str
    data: dict[str, Any]

    def sse(self) -> str:
        """As server-sent event text."""
        lines = [] if self.id is None else [f"id: {self.id}"]
        lines.append(f"event: {self.event}")
        lines.append("data: " + json.dumps(self.data, separators=(",", ":")))
        return "\n".join(lines) + "\n\n"

    def ws(self) -> str:
        """As a WebSocket text frame {id, event, data}."""
        frame: dict[str, Any] = {} if self.id is None else {"id": self.id}
        frame["event"] = self.event
        frame["data"] = self.data
        return json.dumps(frame, separators=(",", ":"))


def _element_frame(item: Message, key: str, response_name: str) -> Frame:
    return Frame(*_position(item, response_name), {key: to_json(item)})


def stream_frames(message: Message) -> list[Frame]:
    """What a stream message is sent as over HTTP. A declared batch gives one frame per
    element, `{key: element}`, with the element's position and kind; any other message is one
    frame, itself. The kind falls back to the response message's name."""
    response_name = message.DESCRIPTOR.name
    declared = stream_batch(message.DESCRIPTOR)
    if declared is None:
        return [Frame(*_position(message, response_name), to_json(message))]
    return [
        _element_frame(item, declared.key, response_name)
        for item in getattr(message, declared.name)
    ]


def sse_event(message: Message) -> bytes:
    """A stream message's server-sent events: `id` from the declared stream position, `event`
    from the declared event kind's set field (else the message's name); one event per element
    of a declared batch (`stream_batch`), else one for the message."""
    return "".join(frame.sse() for frame in stream_frames(message)).encode()


def ws_events(message: Message) -> list[str]:
    """A stream message's WebSocket text frames: the SSE events' fields as JSON (`id`,
    `event`, `data`), one per server-sent event."""
    return [frame.ws() for frame in stream_frames(message)]


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise DecodeError("truncated varint")
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def batch_elements(raw: bytes, number: int) -> list[bytes]:
    """The encoded elements of repeated message field `number` in an encoded message, in
    order, without decoding them (other fields are skipped); DecodeError when malformed."""
    out: list[bytes] = []
    pos = 0
    while pos < len(raw):
        tag, pos = _varint(raw, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(raw, pos)
            if tag >> 3 == number:
                out.append(raw[pos : pos + length])
            pos += length
        else:  # groups: never used by these contracts
            raise DecodeError(f"unsupported wire type {wire}")
        if pos > len(raw):
            raise DecodeError("truncated field")
    return out


_TYPES: dict[str, type[Message]] = {}  # full name -> message class, for the cache's keys


@functools.lru_cache(maxsize=1024)
def _sse_cached(type_name: str, key: str, response_name: str, raw: bytes) -> bytes:
    item = _TYPES[type_name].FromString(raw)
    if key:
        return _element_frame(item, key, response_name).sse().encode()
    return sse_event(item)


def _known(cls: type[Message]) -> str:
    name = str(cls.DESCRIPTOR.full_name)
    _TYPES.setdefault(name, cls)
    return name


def _sse_element(cls: type[Message], key: str, response_name: str, raw: bytes) -> bytes:
    if len(raw) <= CACHE_MAX_BYTES:
        return _sse_cached(_known(cls), key, response_name, raw)
    return _element_frame(cls.FromString(raw), key, response_name).sse().encode()


def sse_encoder(response_cls: type[Message]) -> Callable[[Message | bytes], bytes]:
    """Encode a stream item of this response type as server-sent events: a local servicer's
    message, or a backend's raw bytes (cached per distinct message or batch element)."""
    declared = stream_batch(response_cls.DESCRIPTOR)

    def encode(item: Message | bytes) -> bytes:
        if isinstance(item, Message):
            return sse_event(item)
        if declared is None:
            if len(item) <= CACHE_MAX_BYTES:
                return _sse_cached(_known(response_cls), "", "", item)
            return sse_event(response_cls.FromString(item))
        element_cls = message_factory.GetMessageClass(declared.element)
        try:
            elements = batch_elements(item, declared.number)
        except DecodeError:
            return sse_event(response_cls.FromString(item))  # raises the parser's own error
        name = response_cls.DESCRIPTOR.name
        return b"".join(_sse_element(element_cls, declared.key, name, raw) for raw in elements)

    return encode
