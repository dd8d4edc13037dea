import datetime

from conveyor.kernel.v1 import stream_pb2 as _stream_pb2
from conveyor.executor.v1 import run_pb2 as _run_pb2
from google.protobuf import duration_pb2 as _duration_pb2
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

class WaitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_REASON_UNSPECIFIED: _ClassVar[WaitReason]
    WAIT_REASON_APPROVAL: _ClassVar[WaitReason]
    WAIT_REASON_SUBWORKFLOW: _ClassVar[WaitReason]

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
WAIT_REASON_UNSPECIFIED: WaitReason
WAIT_REASON_APPROVAL: WaitReason
WAIT_REASON_SUBWORKFLOW: WaitReason
LOG_STREAM_UNSPECIFIED: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_STDERR: LogStream

class RunEvent(_message.Message):
    __slots__ = ("sequence", "run_id", "event_time", "run_state_changed", "step_state_changed", "step_log", "step_progress")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STEP_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STEP_LOG_FIELD_NUMBER: _ClassVar[int]
    STEP_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    run_id: str
    event_time: _timestamp_pb2.Timestamp
    run_state_changed: RunStateChanged
    step_state_changed: StepStateChanged
    step_log: StepLog
    step_progress: StepProgress
    def __init__(self, sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_state_changed: _Optional[_Union[RunStateChanged, _Mapping]] = ..., step_state_changed: _Optional[_Union[StepStateChanged, _Mapping]] = ..., step_log: _Optional[_Union[StepLog, _Mapping]] = ..., step_progress: _Optional[_Union[StepProgress, _Mapping]] = ...) -> None: ...

class RunStateChanged(_message.Message):
    __slots__ = ("state", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: _run_pb2.RunState
    message: str
    def __init__(self, state: _Optional[_Union[_run_pb2.RunState, str]] = ..., message: _Optional[str] = ...) -> None: ...

class StepStateChanged(_message.Message):
    __slots__ = ("node_id", "state", "attempt", "message", "worker", "exit_code", "error_category", "handle", "retry_delay", "waiting_for", "wait_timeout", "child_run_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CHILD_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: _run_pb2.StepState
    attempt: int
    message: str
    worker: str
    exit_code: int
    error_category: _run_pb2.ErrorCategory
    handle: str
    retry_delay: _duration_pb2.Duration
    waiting_for: WaitReason
    wait_timeout: _duration_pb2.Duration
    child_run_id: str
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[_run_pb2.StepState, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., worker: _Optional[str] = ..., exit_code: _Optional[int] = ..., error_category: _Optional[_Union[_run_pb2.ErrorCategory, str]] = ..., handle: _Optional[str] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., waiting_for: _Optional[_Union[WaitReason, str]] = ..., wait_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., child_run_id: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("node_id", "attempt", "items_total", "items_done", "items_failed")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FAILED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    attempt: int
    items_total: int
    items_done: int
    items_failed: int
    def __init__(self, node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., items_total: _Optional[int] = ..., items_done: _Optional[int] = ..., items_failed: _Optional[int] = ...) -> None: ...

class StepLog(_message.Message):
    __slots__ = ("node_id", "attempt", "stream", "text", "chunk", "offset", "truncated")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    attempt: int
    stream: LogStream
    text: str
    chunk: int
    offset: int
    truncated: bool
    def __init__(self, node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., stream: _Optional[_Union[LogStream, str]] = ..., text: _Optional[str] = ..., chunk: _Optional[int] = ..., offset: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...
