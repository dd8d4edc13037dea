import datetime

from conveyor.auth.v1 import auth_pb2 as _auth_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetentionRule(_message.Message):
    __slots__ = ("job_id", "max_age", "keep_last")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    max_age: _duration_pb2.Duration
    keep_last: int
    def __init__(self, job_id: _Optional[str] = ..., max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., keep_last: _Optional[int] = ...) -> None: ...

class SelectExpiredRunsRequest(_message.Message):
    __slots__ = ("rules", "limit")
    RULES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RetentionRule]
    limit: int
    def __init__(self, rules: _Optional[_Iterable[_Union[RetentionRule, _Mapping]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ExpiredRun(_message.Message):
    __slots__ = ("run_id", "job_id", "create_time", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_id: str
    create_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., job_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SelectExpiredRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[ExpiredRun]
    def __init__(self, runs: _Optional[_Iterable[_Union[ExpiredRun, _Mapping]]] = ...) -> None: ...

class PurgeRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PurgeRunsResponse(_message.Message):
    __slots__ = ("deleted_run_ids",)
    DELETED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportRunsRequest(_message.Message):
    __slots__ = ("job_id", "since", "run_ids", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    since: _timestamp_pb2.Timestamp
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_ids: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ExportRunsResponse(_message.Message):
    __slots__ = ("records", "run_ids", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedScalarFieldContainer[str]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[str]] = ..., run_ids: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ImportRunsRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, records: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportRunsResponse(_message.Message):
    __slots__ = ("imported_runs", "skipped_runs")
    IMPORTED_RUNS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_RUNS_FIELD_NUMBER: _ClassVar[int]
    imported_runs: int
    skipped_runs: int
    def __init__(self, imported_runs: _Optional[int] = ..., skipped_runs: _Optional[int] = ...) -> None: ...
