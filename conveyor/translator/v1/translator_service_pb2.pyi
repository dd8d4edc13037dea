from conveyor.auth.v1 import auth_pb2 as _auth_pb2
from conveyor.kernel.v1 import json_pb2 as _json_pb2
from conveyor.translator.v1 import translator_pb2 as _translator_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateWorkflowRequest(_message.Message):
    __slots__ = ("workflow_json",)
    WORKFLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    workflow_json: str
    def __init__(self, workflow_json: _Optional[str] = ...) -> None: ...

class ValidateWorkflowResponse(_message.Message):
    __slots__ = ("valid", "diagnostics")
    VALID_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    diagnostics: _containers.RepeatedCompositeFieldContainer[_translator_pb2.Diagnostic]
    def __init__(self, valid: _Optional[bool] = ..., diagnostics: _Optional[_Iterable[_Union[_translator_pb2.Diagnostic, _Mapping]]] = ...) -> None: ...

class TranslateWorkflowRequest(_message.Message):
    __slots__ = ("workflow_json",)
    WORKFLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    workflow_json: str
    def __init__(self, workflow_json: _Optional[str] = ...) -> None: ...

class TranslateWorkflowResponse(_message.Message):
    __slots__ = ("diagnostics", "plan")
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    diagnostics: _containers.RepeatedCompositeFieldContainer[_translator_pb2.Diagnostic]
    plan: _translator_pb2.Plan
    def __init__(self, diagnostics: _Optional[_Iterable[_Union[_translator_pb2.Diagnostic, _Mapping]]] = ..., plan: _Optional[_Union[_translator_pb2.Plan, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("workflow_json", "update_existing", "request_id")
    WORKFLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_json: str
    update_existing: bool
    request_id: str
    def __init__(self, workflow_json: _Optional[str] = ..., update_existing: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job", "diagnostics", "version_created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    VERSION_CREATED_FIELD_NUMBER: _ClassVar[int]
    job: _translator_pb2.Job
    diagnostics: _containers.RepeatedCompositeFieldContainer[_translator_pb2.Diagnostic]
    version_created: bool
    def __init__(self, job: _Optional[_Union[_translator_pb2.Job, _Mapping]] = ..., diagnostics: _Optional[_Iterable[_Union[_translator_pb2.Diagnostic, _Mapping]]] = ..., version_created: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "version")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    version: int
    def __init__(self, job_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _translator_pb2.Job
    def __init__(self, job: _Optional[_Union[_translator_pb2.Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "name_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    name_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_translator_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_translator_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
