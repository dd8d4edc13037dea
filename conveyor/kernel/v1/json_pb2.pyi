from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class JsonKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JSON_KIND_UNSPECIFIED: _ClassVar[JsonKind]
    JSON_KIND_OBJECT: _ClassVar[JsonKind]
    JSON_KIND_VALUE: _ClassVar[JsonKind]
JSON_KIND_UNSPECIFIED: JsonKind
JSON_KIND_OBJECT: JsonKind
JSON_KIND_VALUE: JsonKind
JSON_FIELD_NUMBER: _ClassVar[int]
json: _descriptor.FieldDescriptor
