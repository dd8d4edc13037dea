"""Pure rules of the artifact service: names, object keys, kinds, byte ranges.

The name rules and byte ranges themselves are in `conveyor.shared` (the translator checks
declared patterns and the gateway parses HTTP ranges with the same code).

Object keys are made here from ids the service trusts (run, node, attempt) and a fresh
uuid; a user-supplied name is metadata only and never reaches a storage path. Names are
still validated, since they are shown and used as relative paths by clients.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.shared.artifact_names import MAX_DEPTH, MAX_NAME, MAX_PATTERNS, name_problem
from conveyor.shared.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    parse_http_range,
    resolve_range,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_NAME",
    "MAX_PATTERNS",
    "ByteRange",
    "Kind",
    "RangeNotSatisfiable",
    "State",
    "check_id",
    "check_key",
    "check_name",
    "name_problem",
    "object_key",
    "parse_http_range",
    "resolve_range",
]

_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_KEY = re.compile(r"^runs/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+/[0-9]+/[0-9a-f]{32}$")


class Kind(StrEnum):
    """What an artifact holds (ArtifactKind without the prefix)."""

    STDOUT = "STDOUT"
    STDERR = "STDERR"
    FILE = "FILE"
    ARCHIVE = "ARCHIVE"


class State(StrEnum):
    """An artifact row's life: WRITING until the object is complete, DELETING while it goes."""

    WRITING = "WRITING"
    COMPLETE = "COMPLETE"
    DELETING = "DELETING"


def check_name(name: str, field: str = "header.name") -> None:
    """Raise INVALID_ARGUMENT when `name` is not acceptable."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidArgument(
            f"{field} {problem}", violations=[Violation(field, problem, "INVALID_NAME")]
        )


def check_id(value: str, field: str) -> None:
    """Run and node ids: letters, digits, `_ . -`, at most 200 characters."""
    if not _ID.match(value) or value in (".", ".."):
        raise InvalidArgument(
            f"{field} is not a valid id: {value[:60]!r}",
            violations=[Violation(field, "letters, digits, '_', '.', '-' only", "INVALID_ID")],
        )


def object_key(run_id: str, node_id: str, attempt: int) -> str:
    """`runs/{run}/{node}/{attempt}/{uuid}` from validated ids and a fresh uuid."""
    check_id(run_id, "header.run_id")
    check_id(node_id, "header.node_id")
    if attempt < 1:
        raise InvalidArgument(
            "header.attempt must be at least 1",
            violations=[Violation("header.attempt", f"got {attempt}", "OUT_OF_RANGE")],
        )
    return f"runs/{run_id}/{node_id}/{attempt}/{uuid.uuid4().hex}"


def check_key(key: str) -> None:
    """Backends accept only keys shaped like `object_key` makes them (defence in depth)."""
    if not _KEY.match(key) or "/../" in key or "/./" in key:
        raise ValueError(f"not a service-made object key: {key!r}")
