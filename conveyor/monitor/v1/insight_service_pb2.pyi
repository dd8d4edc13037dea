import datetime

from conveyor.auth.v1 import auth_pb2 as _auth_pb2
from conveyor.executor.v1 import run_pb2 as _run_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgeSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGE_SOURCE_UNSPECIFIED: _ClassVar[AgeSource]
    AGE_SOURCE_DATABASE: _ClassVar[AgeSource]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_ONLINE: _ClassVar[WorkerState]
    WORKER_STATE_OFFLINE: _ClassVar[WorkerState]
AGE_SOURCE_UNSPECIFIED: AgeSource
AGE_SOURCE_DATABASE: AgeSource
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_ONLINE: WorkerState
WORKER_STATE_OFFLINE: WorkerState

class GetQueueStatsRequest(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queues: _Optional[_Iterable[str]] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("queue", "depth", "oldest_age", "oldest_age_source", "consumers", "rate_in", "rate_out")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    RATE_IN_FIELD_NUMBER: _ClassVar[int]
    RATE_OUT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    depth: int
    oldest_age: _duration_pb2.Duration
    oldest_age_source: AgeSource
    consumers: int
    rate_in: float
    rate_out: float
    def __init__(self, queue: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., oldest_age_source: _Optional[_Union[AgeSource, str]] = ..., consumers: _Optional[int] = ..., rate_in: _Optional[float] = ..., rate_out: _Optional[float] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("queues", "broker", "notes")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueStats]
    broker: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueStats, _Mapping]]] = ..., broker: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("hostname", "queues", "concurrency", "active_steps", "last_heartbeat_time", "state", "processed", "software_version", "running")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_STEPS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    active_steps: int
    last_heartbeat_time: _timestamp_pb2.Timestamp
    state: WorkerState
    processed: int
    software_version: str
    running: _containers.RepeatedCompositeFieldContainer[RunningAttempt]
    def __init__(self, hostname: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., active_steps: _Optional[int] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[WorkerState, str]] = ..., processed: _Optional[int] = ..., software_version: _Optional[str] = ..., running: _Optional[_Iterable[_Union[RunningAttempt, _Mapping]]] = ...) -> None: ...

class RunningAttempt(_message.Message):
    __slots__ = ("run_id", "node_id", "attempt", "start_time")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    node_id: str
    attempt: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, run_id: _Optional[str] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "next_page_token")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    next_page_token: str
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetJobStatsRequest(_message.Message):
    __slots__ = ("job_id", "window")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    window: _duration_pb2.Duration
    def __init__(self, job_id: _Optional[str] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RunStateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: _run_pb2.RunState
    count: int
    def __init__(self, state: _Optional[_Union[_run_pb2.RunState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ErrorCategoryCount(_message.Message):
    __slots__ = ("category", "count")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    category: _run_pb2.ErrorCategory
    count: int
    def __init__(self, category: _Optional[_Union[_run_pb2.ErrorCategory, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetJobStatsResponse(_message.Message):
    __slots__ = ("job_id", "job_name", "window_start_time", "window_end_time", "total_runs", "runs_by_state", "success_rate", "p50_duration", "p95_duration", "mean_attempts", "top_error_categories")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RUNS_FIELD_NUMBER: _ClassVar[int]
    RUNS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_DURATION_FIELD_NUMBER: _ClassVar[int]
    P95_DURATION_FIELD_NUMBER: _ClassVar[int]
    MEAN_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TOP_ERROR_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_name: str
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    total_runs: int
    runs_by_state: _containers.RepeatedCompositeFieldContainer[RunStateCount]
    success_rate: float
    p50_duration: _duration_pb2.Duration
    p95_duration: _duration_pb2.Duration
    mean_attempts: float
    top_error_categories: _containers.RepeatedCompositeFieldContainer[ErrorCategoryCount]
    def __init__(self, job_id: _Optional[str] = ..., job_name: _Optional[str] = ..., window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_runs: _Optional[int] = ..., runs_by_state: _Optional[_Iterable[_Union[RunStateCount, _Mapping]]] = ..., success_rate: _Optional[float] = ..., p50_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mean_attempts: _Optional[float] = ..., top_error_categories: _Optional[_Iterable[_Union[ErrorCategoryCount, _Mapping]]] = ...) -> None: ...

class GetKpisRequest(_message.Message):
    __slots__ = ("window", "bucket")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    bucket: _duration_pb2.Duration
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bucket: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class KpiBucket(_message.Message):
    __slots__ = ("start_time", "runs_started", "runs_succeeded", "runs_failed", "mean_queue_wait", "p95_queue_wait", "queued_steps", "busy_slot_seconds", "worker_utilization")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RUNS_STARTED_FIELD_NUMBER: _ClassVar[int]
    RUNS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    P95_QUEUE_WAIT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_STEPS_FIELD_NUMBER: _ClassVar[int]
    BUSY_SLOT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKER_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    runs_started: int
    runs_succeeded: int
    runs_failed: int
    mean_queue_wait: _duration_pb2.Duration
    p95_queue_wait: _duration_pb2.Duration
    queued_steps: int
    busy_slot_seconds: float
    worker_utilization: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., runs_started: _Optional[int] = ..., runs_succeeded: _Optional[int] = ..., runs_failed: _Optional[int] = ..., mean_queue_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95_queue_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., queued_steps: _Optional[int] = ..., busy_slot_seconds: _Optional[float] = ..., worker_utilization: _Optional[float] = ...) -> None: ...

class JobKpi(_message.Message):
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

class GetKpisResponse(_message.Message):
    __slots__ = ("window_start_time", "window_end_time", "bucket", "buckets", "jobs", "worker_slots", "sampled")
    WINDOW_START_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    WORKER_SLOTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    window_start_time: _timestamp_pb2.Timestamp
    window_end_time: _timestamp_pb2.Timestamp
    bucket: _duration_pb2.Duration
    buckets: _containers.RepeatedCompositeFieldContainer[KpiBucket]
    jobs: _containers.RepeatedCompositeFieldContainer[JobKpi]
    worker_slots: int
    sampled: bool
    def __init__(self, window_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[KpiBucket, _Mapping]]] = ..., jobs: _Optional[_Iterable[_Union[JobKpi, _Mapping]]] = ..., worker_slots: _Optional[int] = ..., sampled: _Optional[bool] = ...) -> None: ...
