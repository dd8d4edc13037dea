from conveyor.kernel.v1 import stream_pb2 as _stream_pb2
from conveyor.auth.v1 import auth_pb2 as _auth_pb2
from conveyor.executor.v1 import run_pb2 as _run_pb2
from conveyor.monitor.v1 import event_pb2 as _event_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "after_sequence", "types", "node_id", "history_only")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_sequence: int
    types: _containers.RepeatedScalarFieldContainer[_event_pb2.EventType]
    node_id: str
    history_only: bool
    def __init__(self, run_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., types: _Optional[_Iterable[_Union[_event_pb2.EventType, str]]] = ..., node_id: _Optional[str] = ..., history_only: _Optional[bool] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.RunEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_event_pb2.RunEvent, _Mapping]]] = ...) -> None: ...

class WatchRunsRequest(_message.Message):
    __slots__ = ("after_sequence", "job_ids", "states", "triggers", "from_now")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    FROM_NOW_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    states: _containers.RepeatedScalarFieldContainer[_run_pb2.RunState]
    triggers: _containers.RepeatedScalarFieldContainer[_run_pb2.RunTrigger]
    from_now: bool
    def __init__(self, after_sequence: _Optional[int] = ..., job_ids: _Optional[_Iterable[str]] = ..., states: _Optional[_Iterable[_Union[_run_pb2.RunState, str]]] = ..., triggers: _Optional[_Iterable[_Union[_run_pb2.RunTrigger, str]]] = ..., from_now: _Optional[bool] = ...) -> None: ...

class WatchRunsResponse(_message.Message):
    __slots__ = ("sequence", "event", "job_id", "job_name", "trigger")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    event: _event_pb2.RunEvent
    job_id: str
    job_name: str
    trigger: _run_pb2.RunTrigger
    def __init__(self, sequence: _Optional[int] = ..., event: _Optional[_Union[_event_pb2.RunEvent, _Mapping]] = ..., job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., trigger: _Optional[_Union[_run_pb2.RunTrigger, str]] = ...) -> None: ...
