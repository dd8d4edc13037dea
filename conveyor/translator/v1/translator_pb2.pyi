import datetime

from conveyor.executor.v1 import run_pb2 as _run_pb2
from conveyor.kernel.v1 import json_pb2 as _json_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]

class TriggerRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_RULE_UNSPECIFIED: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_SUCCESS: _ClassVar[TriggerRule]
    TRIGGER_RULE_ALL_DONE: _ClassVar[TriggerRule]
    TRIGGER_RULE_ONE_SUCCESS: _ClassVar[TriggerRule]
    TRIGGER_RULE_ONE_FAILED: _ClassVar[TriggerRule]
    TRIGGER_RULE_NONE_FAILED: _ClassVar[TriggerRule]
    TRIGGER_RULE_NONE_FAILED_MIN_ONE_SUCCESS: _ClassVar[TriggerRule]
SEVERITY_UNSPECIFIED: Severity
SEVERITY_ERROR: Severity
SEVERITY_WARNING: Severity
TRIGGER_RULE_UNSPECIFIED: TriggerRule
TRIGGER_RULE_ALL_SUCCESS: TriggerRule
TRIGGER_RULE_ALL_DONE: TriggerRule
TRIGGER_RULE_ONE_SUCCESS: TriggerRule
TRIGGER_RULE_ONE_FAILED: TriggerRule
TRIGGER_RULE_NONE_FAILED: TriggerRule
TRIGGER_RULE_NONE_FAILED_MIN_ONE_SUCCESS: TriggerRule

class Diagnostic(_message.Message):
    __slots__ = ("code", "severity", "message", "path", "node_id", "edge_id", "line", "column")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    code: str
    severity: Severity
    message: str
    path: str
    node_id: str
    edge_id: str
    line: int
    column: int
    def __init__(self, code: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., message: _Optional[str] = ..., path: _Optional[str] = ..., node_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "name", "description", "version", "create_time", "update_time", "node_count", "definition_json", "plan", "parameters_schema_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    description: str
    version: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    node_count: int
    definition_json: str
    plan: Plan
    parameters_schema_json: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_count: _Optional[int] = ..., definition_json: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., parameters_schema_json: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_retries", "initial_backoff", "backoff_factor", "max_backoff", "jitter", "retry_on")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    initial_backoff: _duration_pb2.Duration
    backoff_factor: float
    max_backoff: _duration_pb2.Duration
    jitter: bool
    retry_on: _containers.RepeatedScalarFieldContainer[_run_pb2.ErrorCategory]
    def __init__(self, max_retries: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_factor: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., jitter: _Optional[bool] = ..., retry_on: _Optional[_Iterable[_Union[_run_pb2.ErrorCategory, str]]] = ...) -> None: ...

class PlanEdge(_message.Message):
    __slots__ = ("node_id", "handle")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    handle: str
    def __init__(self, node_id: _Optional[str] = ..., handle: _Optional[str] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class PlanNode(_message.Message):
    __slots__ = ("id", "type", "label", "data_json", "timeout", "retry_policy", "queue", "trigger_rule", "continue_on_error", "upstream", "downstream", "group", "body", "position")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_RULE_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    label: str
    data_json: str
    timeout: _duration_pb2.Duration
    retry_policy: RetryPolicy
    queue: str
    trigger_rule: TriggerRule
    continue_on_error: bool
    upstream: _containers.RepeatedCompositeFieldContainer[PlanEdge]
    downstream: _containers.RepeatedCompositeFieldContainer[PlanEdge]
    group: str
    body: _containers.RepeatedScalarFieldContainer[str]
    position: Position
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., label: _Optional[str] = ..., data_json: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., queue: _Optional[str] = ..., trigger_rule: _Optional[_Union[TriggerRule, str]] = ..., continue_on_error: _Optional[bool] = ..., upstream: _Optional[_Iterable[_Union[PlanEdge, _Mapping]]] = ..., downstream: _Optional[_Iterable[_Union[PlanEdge, _Mapping]]] = ..., group: _Optional[str] = ..., body: _Optional[_Iterable[str]] = ..., position: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("schema", "name", "description", "parameters_schema_json", "nodes", "entry_node_ids")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ENTRY_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    name: str
    description: str
    parameters_schema_json: str
    nodes: _containers.RepeatedCompositeFieldContainer[PlanNode]
    entry_node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_schema_json: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[PlanNode, _Mapping]]] = ..., entry_node_ids: _Optional[_Iterable[str]] = ...) -> None: ...
