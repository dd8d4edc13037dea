import datetime

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

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_PENDING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_WAITING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATE_UNSPECIFIED: _ClassVar[StepState]
    STEP_STATE_PENDING: _ClassVar[StepState]
    STEP_STATE_QUEUED: _ClassVar[StepState]
    STEP_STATE_RUNNING: _ClassVar[StepState]
    STEP_STATE_WAITING: _ClassVar[StepState]
    STEP_STATE_SUCCEEDED: _ClassVar[StepState]
    STEP_STATE_FAILED: _ClassVar[StepState]
    STEP_STATE_SKIPPED: _ClassVar[StepState]
    STEP_STATE_CANCELLED: _ClassVar[StepState]

class ErrorCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CATEGORY_UNSPECIFIED: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_TIMEOUT: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_NONZERO_EXIT: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_WORKER_LOST: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_TEMPLATE: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_HTTP_STATUS: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_CONNECTION: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_CANCELLED: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_REJECTED: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_INFRA: _ClassVar[ErrorCategory]
    ERROR_CATEGORY_INTERNAL: _ClassVar[ErrorCategory]

class RunTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_TRIGGER_UNSPECIFIED: _ClassVar[RunTrigger]
    RUN_TRIGGER_MANUAL: _ClassVar[RunTrigger]
    RUN_TRIGGER_SCHEDULE: _ClassVar[RunTrigger]
    RUN_TRIGGER_WEBHOOK: _ClassVar[RunTrigger]
    RUN_TRIGGER_SUBWORKFLOW: _ClassVar[RunTrigger]
    RUN_TRIGGER_RETRY: _ClassVar[RunTrigger]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_PENDING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_WAITING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_CANCELLED: RunState
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_PENDING: StepState
STEP_STATE_QUEUED: StepState
STEP_STATE_RUNNING: StepState
STEP_STATE_WAITING: StepState
STEP_STATE_SUCCEEDED: StepState
STEP_STATE_FAILED: StepState
STEP_STATE_SKIPPED: StepState
STEP_STATE_CANCELLED: StepState
ERROR_CATEGORY_UNSPECIFIED: ErrorCategory
ERROR_CATEGORY_TIMEOUT: ErrorCategory
ERROR_CATEGORY_NONZERO_EXIT: ErrorCategory
ERROR_CATEGORY_WORKER_LOST: ErrorCategory
ERROR_CATEGORY_TEMPLATE: ErrorCategory
ERROR_CATEGORY_HTTP_STATUS: ErrorCategory
ERROR_CATEGORY_CONNECTION: ErrorCategory
ERROR_CATEGORY_CANCELLED: ErrorCategory
ERROR_CATEGORY_REJECTED: ErrorCategory
ERROR_CATEGORY_INFRA: ErrorCategory
ERROR_CATEGORY_INTERNAL: ErrorCategory
RUN_TRIGGER_UNSPECIFIED: RunTrigger
RUN_TRIGGER_MANUAL: RunTrigger
RUN_TRIGGER_SCHEDULE: RunTrigger
RUN_TRIGGER_WEBHOOK: RunTrigger
RUN_TRIGGER_SUBWORKFLOW: RunTrigger
RUN_TRIGGER_RETRY: RunTrigger

class Execution(_message.Message):
    __slots__ = ("attempt", "worker", "queue", "task_id", "start_time", "end_time", "wall_time", "cpu_user_time", "cpu_system_time", "max_rss_kib", "exit_code", "error_category", "error_message", "state", "rendered_inputs_json")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_USER_TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_SYSTEM_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_RSS_KIB_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RENDERED_INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    worker: str
    queue: str
    task_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    wall_time: _duration_pb2.Duration
    cpu_user_time: _duration_pb2.Duration
    cpu_system_time: _duration_pb2.Duration
    max_rss_kib: int
    exit_code: int
    error_category: ErrorCategory
    error_message: str
    state: StepState
    rendered_inputs_json: str
    def __init__(self, attempt: _Optional[int] = ..., worker: _Optional[str] = ..., queue: _Optional[str] = ..., task_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wall_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu_user_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu_system_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_rss_kib: _Optional[int] = ..., exit_code: _Optional[int] = ..., error_category: _Optional[_Union[ErrorCategory, str]] = ..., error_message: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., rendered_inputs_json: _Optional[str] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("node_id", "node_type", "label", "state", "attempts", "exit_code", "stdout", "stderr", "error_category", "error_message", "skip_reason", "start_time", "end_time", "queue", "failure_handled", "executions", "stdout_uri", "stderr_uri", "child_run_id", "wake_time", "output_json", "outputs_json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_HANDLED_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_URI_FIELD_NUMBER: _ClassVar[int]
    STDERR_URI_FIELD_NUMBER: _ClassVar[int]
    CHILD_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_type: str
    label: str
    state: StepState
    attempts: int
    exit_code: int
    stdout: str
    stderr: str
    error_category: ErrorCategory
    error_message: str
    skip_reason: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    queue: str
    failure_handled: bool
    executions: _containers.RepeatedCompositeFieldContainer[Execution]
    stdout_uri: str
    stderr_uri: str
    child_run_id: str
    wake_time: _timestamp_pb2.Timestamp
    output_json: str
    outputs_json: str
    def __init__(self, node_id: _Optional[str] = ..., node_type: _Optional[str] = ..., label: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., attempts: _Optional[int] = ..., exit_code: _Optional[int] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., error_category: _Optional[_Union[ErrorCategory, str]] = ..., error_message: _Optional[str] = ..., skip_reason: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue: _Optional[str] = ..., failure_handled: _Optional[bool] = ..., executions: _Optional[_Iterable[_Union[Execution, _Mapping]]] = ..., stdout_uri: _Optional[str] = ..., stderr_uri: _Optional[str] = ..., child_run_id: _Optional[str] = ..., wake_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_json: _Optional[str] = ..., outputs_json: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "job_id", "job_name", "job_version", "state", "trigger", "create_time", "start_time", "end_time", "steps", "error_message", "priority", "request_id", "last_sequence", "parent_run_id", "parent_node_id", "retry_of_run_id", "started_by", "parameters_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PARENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_OF_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    job_name: str
    job_version: int
    state: RunState
    trigger: RunTrigger
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    error_message: str
    priority: int
    request_id: str
    last_sequence: int
    parent_run_id: str
    parent_node_id: str
    retry_of_run_id: str
    started_by: str
    parameters_json: str
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., job_version: _Optional[int] = ..., state: _Optional[_Union[RunState, str]] = ..., trigger: _Optional[_Union[RunTrigger, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., error_message: _Optional[str] = ..., priority: _Optional[int] = ..., request_id: _Optional[str] = ..., last_sequence: _Optional[int] = ..., parent_run_id: _Optional[str] = ..., parent_node_id: _Optional[str] = ..., retry_of_run_id: _Optional[str] = ..., started_by: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...
