"""One reading of update masks for every Update RPC."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2

from conveyor.kernel.errors import InvalidArgument
from conveyor.kernel.fieldmask import update_paths

EDITABLE = ("description", "policies", "policies.overlap")


def test_paths_come_back_in_order_without_repeats() -> None:
    mask = field_mask_pb2.FieldMask(paths=["policies.overlap", "description", "description"])
    assert update_paths(mask, EDITABLE) == ["policies.overlap", "description"]


def test_an_empty_mask_is_refused_not_read_as_every_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        update_paths(field_mask_pb2.FieldMask(), EDITABLE)
    [violation] = caught.value.violations
    assert (violation.field, violation.reason) == ("update_mask", "REQUIRED")


def test_each_unknown_or_read_only_path_is_named() -> None:
    mask = field_mask_pb2.FieldMask(paths=["description", "created_at", "nope"])
    with pytest.raises(InvalidArgument) as caught:
        update_paths(mask, EDITABLE)
    assert [(v.field, v.reason) for v in caught.value.violations] == [
        ("update_mask.paths[1]", "INVALID_MASK"),
        ("update_mask.paths[2]", "INVALID_MASK"),
    ]
    assert "created_at" in caught.value.message
