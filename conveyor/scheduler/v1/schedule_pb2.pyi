import datetime

from conveyor.executor.v1 import run_pb2 as _run_pb2
from conveyor.kernel.v1 import json_pb2 as _json_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_SKIP: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ONE: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ALL: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_CANCEL_OTHER: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW_ALL: _ClassVar[OverlapPolicy]

class CatchupMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATCHUP_MODE_UNSPECIFIED: _ClassVar[CatchupMode]
    CATCHUP_MODE_COALESCE: _ClassVar[CatchupMode]
    CATCHUP_MODE_ALL: _ClassVar[CatchupMode]

class ActionOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_OUTCOME_UNSPECIFIED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_PENDING: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_BUFFERED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_STARTED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_SKIPPED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_MISSED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_COALESCED: _ClassVar[ActionOutcome]
    ACTION_OUTCOME_ERROR: _ClassVar[ActionOutcome]
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy
OVERLAP_POLICY_BUFFER_ALL: OverlapPolicy
OVERLAP_POLICY_CANCEL_OTHER: OverlapPolicy
OVERLAP_POLICY_ALLOW_ALL: OverlapPolicy
CATCHUP_MODE_UNSPECIFIED: CatchupMode
CATCHUP_MODE_COALESCE: CatchupMode
CATCHUP_MODE_ALL: CatchupMode
ACTION_OUTCOME_UNSPECIFIED: ActionOutcome
ACTION_OUTCOME_PENDING: ActionOutcome
ACTION_OUTCOME_BUFFERED: ActionOutcome
ACTION_OUTCOME_STARTED: ActionOutcome
ACTION_OUTCOME_SKIPPED: ActionOutcome
ACTION_OUTCOME_MISSED: ActionOutcome
ACTION_OUTCOME_COALESCED: ActionOutcome
ACTION_OUTCOME_ERROR: ActionOutcome

class OnceSpec(_message.Message):
    __slots__ = ("run_time",)
    RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    run_time: _timestamp_pb2.Timestamp
    def __init__(self, run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IntervalSpec(_message.Message):
    __slots__ = ("every",)
    EVERY_FIELD_NUMBER: _ClassVar[int]
    every: _duration_pb2.Duration
    def __init__(self, every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CronSpec(_message.Message):
    __slots__ = ("expression",)
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    expression: str
    def __init__(self, expression: _Optional[str] = ...) -> None: ...

class ScheduleSpec(_message.Message):
    __slots__ = ("once", "interval", "cron", "time_zone", "start_time", "end_time", "jitter")
    ONCE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    once: OnceSpec
    interval: IntervalSpec
    cron: CronSpec
    time_zone: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    jitter: _duration_pb2.Duration
    def __init__(self, once: _Optional[_Union[OnceSpec, _Mapping]] = ..., interval: _Optional[_Union[IntervalSpec, _Mapping]] = ..., cron: _Optional[_Union[CronSpec, _Mapping]] = ..., time_zone: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jitter: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SchedulePolicies(_message.Message):
    __slots__ = ("overlap", "catchup_window", "catchup_mode", "pause_after_failures")
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_MODE_FIELD_NUMBER: _ClassVar[int]
    PAUSE_AFTER_FAILURES_FIELD_NUMBER: _ClassVar[int]
    overlap: OverlapPolicy
    catchup_window: _duration_pb2.Duration
    catchup_mode: CatchupMode
    pause_after_failures: int
    def __init__(self, overlap: _Optional[_Union[OverlapPolicy, str]] = ..., catchup_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., catchup_mode: _Optional[_Union[CatchupMode, str]] = ..., pause_after_failures: _Optional[int] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("schedule_id", "job_id", "description", "spec", "policies", "paused", "note", "next_run_time", "consecutive_failures", "last_run_id", "create_time", "update_time", "updated_by", "parameters_json")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    job_id: str
    description: str
    spec: ScheduleSpec
    policies: SchedulePolicies
    paused: bool
    note: str
    next_run_time: _timestamp_pb2.Timestamp
    consecutive_failures: int
    last_run_id: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    updated_by: str
    parameters_json: str
    def __init__(self, schedule_id: _Optional[str] = ..., job_id: _Optional[str] = ..., description: _Optional[str] = ..., spec: _Optional[_Union[ScheduleSpec, _Mapping]] = ..., policies: _Optional[_Union[SchedulePolicies, _Mapping]] = ..., paused: _Optional[bool] = ..., note: _Optional[str] = ..., next_run_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_failures: _Optional[int] = ..., last_run_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class ScheduleAction(_message.Message):
    __slots__ = ("schedule_id", "nominal_time", "due_time", "take_time", "outcome", "run_id", "run_state", "first_step_start_time", "lag", "message", "manual", "scheduler")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_TIME_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    TAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    FIRST_STEP_START_TIME_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    nominal_time: _timestamp_pb2.Timestamp
    due_time: _timestamp_pb2.Timestamp
    take_time: _timestamp_pb2.Timestamp
    outcome: ActionOutcome
    run_id: str
    run_state: _run_pb2.RunState
    first_step_start_time: _timestamp_pb2.Timestamp
    lag: _duration_pb2.Duration
    message: str
    manual: bool
    scheduler: str
    def __init__(self, schedule_id: _Optional[str] = ..., nominal_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., take_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[ActionOutcome, str]] = ..., run_id: _Optional[str] = ..., run_state: _Optional[_Union[_run_pb2.RunState, str]] = ..., first_step_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lag: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., message: _Optional[str] = ..., manual: _Optional[bool] = ..., scheduler: _Optional[str] = ...) -> None: ...
