import datetime

from conveyor.kernel.v1 import stream_pb2 as _stream_pb2
from conveyor.executor.v1 import run_pb2 as _run_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_RUN_STATE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_STEP_STATE_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_STEP_LOG: _ClassVar[EventType]
    EVENT_TYPE_STEP_PROGRESS: _ClassVar[EventType]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    LOG_STREAM_STDOUT: _ClassVar[LogStream]
    LOG_STREAM_STDERR: _ClassVar[LogStream]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_RUN_STATE_CHANGED: EventType
EVENT_TYPE_STEP_STATE_CHANGED: EventType
EVENT_TYPE_STEP_LOG: EventType
EVENT_TYPE_STEP_PROGRESS: EventType
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream

class RunEvent(_message.Message):
    __slots__ = ("sequence", "run_id", "type", "event_time", "run_state", "node_id", "step_state", "attempt", "message", "data", "log", "progress")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    run_id: str
    type: EventType
    event_time: _timestamp_pb2.Timestamp
    run_state: _run_pb2.RunState
    node_id: str
    step_state: _run_pb2.StepState
    attempt: int
    message: str
    data: _struct_pb2.Struct
    log: StepLog
    progress: StepProgress
    def __init__(self, sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_state: _Optional[_Union[_run_pb2.RunState, str]] = ..., node_id: _Optional[str] = ..., step_state: _Optional[_Union[_run_pb2.StepState, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., log: _Optional[_Union[StepLog, _Mapping]] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("items_total", "items_done", "items_failed")
    ITEMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FAILED_FIELD_NUMBER: _ClassVar[int]
    items_total: int
    items_done: int
    items_failed: int
    def __init__(self, items_total: _Optional[int] = ..., items_done: _Optional[int] = ..., items_failed: _Optional[int] = ...) -> None: ...

class StepLog(_message.Message):
    __slots__ = ("stream", "text", "chunk", "offset", "truncated")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    stream: LogStream
    text: str
    chunk: int
    offset: int
    truncated: bool
    def __init__(self, stream: _Optional[_Union[LogStream, str]] = ..., text: _Optional[str] = ..., chunk: _Optional[int] = ..., offset: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...
