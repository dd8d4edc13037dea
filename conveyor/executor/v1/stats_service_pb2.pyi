import datetime

from conveyor.auth.v1 import auth_pb2 as _auth_pb2
from conveyor.executor.v1 import run_pb2 as _run_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetJobRunStatsRequest(_message.Message):
    __slots__ = ("job", "window_start_time", "window_end_time")
    JOB_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    job: str
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    def __init__(self, job: _Optional[str] = ..., window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunStateTally(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: _run_pb2.RunState
    count: int
    def __init__(self, state: _Optional[_Union[_run_pb2.RunState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ErrorCategoryTally(_message.Message):
    __slots__ = ("category", "count")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    category: _run_pb2.ErrorCategory
    count: int
    def __init__(self, category: _Optional[_Union[_run_pb2.ErrorCategory, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetJobRunStatsResponse(_message.Message):
    __slots__ = ("job_id", "job_name", "runs_by_state", "success_rate", "p50_duration", "p95_duration", "mean_attempts", "top_error_categories")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_DURATION_FIELD_NUMBER: _ClassVar[int]
    P95_DURATION_FIELD_NUMBER: _ClassVar[int]
    MEAN_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TOP_ERROR_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_name: str
    runs_by_state: _containers.RepeatedCompositeFieldContainer[RunStateTally]
    success_rate: float
    p50_duration: _duration_pb2.Duration
    p95_duration: _duration_pb2.Duration
    mean_attempts: float
    top_error_categories: _containers.RepeatedCompositeFieldContainer[ErrorCategoryTally]
    def __init__(self, job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., runs_by_state: _Optional[_Iterable[_Union[RunStateTally, _Mapping]]] = ..., success_rate: _Optional[float] = ..., p50_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mean_attempts: _Optional[float] = ..., top_error_categories: _Optional[_Iterable[_Union[ErrorCategoryTally, _Mapping]]] = ...) -> None: ...

class GetRunKpisRequest(_message.Message):
    __slots__ = ("window_start_time", "window_end_time", "bucket")
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    bucket: _duration_pb2.Duration
    def __init__(self, window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RunKpiBucket(_message.Message):
    __slots__ = ("start_time", "runs_started", "runs_succeeded", "runs_failed", "mean_queue_wait", "p95_queue_wait", "queued_steps", "busy_slot_seconds")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RUNS_STARTED_FIELD_NUMBER: _ClassVar[int]
    RUNS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    P95_QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_STEPS_FIELD_NUMBER: _ClassVar[int]
    BUSY_SLOT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    runs_started: int
    runs_succeeded: int
    runs_failed: int
    mean_queue_wait: _duration_pb2.Duration
    p95_queue_wait: _duration_pb2.Duration
    queued_steps: int
    busy_slot_seconds: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., runs_started: _Optional[int] = ..., runs_succeeded: _Optional[int] = ..., runs_failed: _Optional[int] = ..., mean_queue_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95_queue_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., queued_steps: _Optional[int] = ..., busy_slot_seconds: _Optional[float] = ...) -> None: ...

class JobRunKpi(_message.Message):
    __slots__ = ("job_id", "job_name", "runs", "succeeded", "failed", "success_rate", "mean_duration", "p95_duration")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_DURATION_FIELD_NUMBER: _ClassVar[int]
    P95_DURATION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_name: str
    runs: int
    succeeded: int
    failed: int
    success_rate: float
    mean_duration: _duration_pb2.Duration
    p95_duration: _duration_pb2.Duration
    def __init__(self, job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., runs: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., success_rate: _Optional[float] = ..., mean_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetRunKpisResponse(_message.Message):
    __slots__ = ("buckets", "jobs", "sampled")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[RunKpiBucket]
    jobs: _containers.RepeatedCompositeFieldContainer[JobRunKpi]
    sampled: bool
    def __init__(self, buckets: _Optional[_Iterable[_Union[RunKpiBucket, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[JobRunKpi, _Mapping]]] = ..., sampled: _Optional[bool] = ...) -> None: ...

class GetQueueBacklogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueBacklog(_message.Message):
    __slots__ = ("queue", "queued_steps", "oldest_queue_time")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_STEPS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_QUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    queue: str
    queued_steps: int
    oldest_queue_time: _timestamp_pb2.Timestamp
    def __init__(self, queue: _Optional[str] = ..., queued_steps: _Optional[int] = ..., oldest_queue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetQueueBacklogResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueBacklog]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueBacklog, _Mapping]]] = ...) -> None: ...

class ListEndedRunsRequest(_message.Message):
    __slots__ = ("end_time_from", "page_size")
    END_TIME_FROM_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    end_time_from: _timestamp_pb2.Timestamp
    page_size: int
    def __init__(self, end_time_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ...) -> None: ...

class EndedRun(_message.Message):
    __slots__ = ("run_id", "job_id", "job_name", "state", "end_time")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    job_name: str
    state: _run_pb2.RunState
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., state: _Optional[_Union[_run_pb2.RunState, str]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListEndedRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[EndedRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[EndedRun, _Mapping]]] = ...) -> None: ...

class ListRunningStepsRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class RunningStep(_message.Message):
    __slots__ = ("run_id", "node_id", "job_id", "job_name", "start_time")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: str
    job_id: str
    job_name: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRunningStepsResponse(_message.Message):
    __slots__ = ("steps",)
    STEPS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[RunningStep]
    def __init__(self, steps: _Optional[_Iterable[_Union[RunningStep, _Mapping]]] = ...) -> None: ...

class AttemptKey(_message.Message):
    __slots__ = ("run_id", "node_id", "attempt")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: str
    attempt: int
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class AttemptDescription(_message.Message):
    __slots__ = ("key", "job_name", "node_type", "wall")
    KEY_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WALL_FIELD_NUMBER: _ClassVar[int]
    key: AttemptKey
    job_name: str
    node_type: str
    wall: _duration_pb2.Duration
    def __init__(self, key: _Optional[_Union[AttemptKey, _Mapping]] = ..., job_name: _Optional[str] = ..., node_type: _Optional[str] = ..., wall: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DescribeAttemptsRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[AttemptKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[AttemptKey, _Mapping]]] = ...) -> None: ...

class DescribeAttemptsResponse(_message.Message):
    __slots__ = ("descriptions",)
    DESCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    descriptions: _containers.RepeatedCompositeFieldContainer[AttemptDescription]
    def __init__(self, descriptions: _Optional[_Iterable[_Union[AttemptDescription, _Mapping]]] = ...) -> None: ...
