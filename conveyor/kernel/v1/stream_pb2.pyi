from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
STREAM_POSITION_FIELD_NUMBER: _ClassVar[int]
stream_position: _descriptor.FieldDescriptor
RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
resume_after: _descriptor.FieldDescriptor
STREAM_BATCH_FIELD_NUMBER: _ClassVar[int]
stream_batch: _descriptor.FieldDescriptor
EVENT_KIND_FIELD_NUMBER: _ClassVar[int]
event_kind: _descriptor.FieldDescriptor
