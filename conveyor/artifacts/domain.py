"""Pure rules of the artifact service: names, object keys, kinds, byte ranges.

Object keys are made here from ids the service trusts (run, node, attempt) and a fresh
uuid; a user-supplied name is metadata only and never reaches a storage path. Names are
still validated, since they are shown and used as relative paths by clients.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from conveyor.kernel.errors import InvalidArgument, Violation

MAX_NAME = 1024
MAX_PATTERNS = 100
MAX_DEPTH = 32
_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_KEY = re.compile(r"^runs/[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+/[0-9]+/[0-9a-f]{32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable relative artifact name, or None when it is."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if _CONTROL.search(name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.split("/")
    if any(p == ".." for p in parts):
        return "contains '..'"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' path segment"
    if len(parts) > MAX_DEPTH:
        return f"is nested deeper than {MAX_DEPTH} folders"
    return None


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


@dataclass(frozen=True)
class ByteRange:
    """A resolved range: `length` bytes from `offset`."""

    offset: int
    length: int


class RangeNotSatisfiable(ValueError):
    """The requested range starts past the end of the artifact."""


def resolve_range(size: int, offset: int, length: int) -> ByteRange:
    """Clamp a request (length 0 = to the end) to the artifact; offset past the end fails.

    An offset equal to the size is allowed for an empty artifact only.
    """
    if offset < 0 or length < 0:
        raise ValueError("offset and length must not be negative")
    if offset > size or (offset == size and size > 0):
        raise RangeNotSatisfiable(f"offset {offset} is past the end ({size} bytes)")
    end = size if length == 0 else min(size, offset + length)
    return ByteRange(offset, end - offset)


def parse_http_range(header: str, size: int) -> ByteRange | None:
    """One `bytes=` range of an HTTP Range header; None means the whole artifact.

    Raises RangeNotSatisfiable for a range outside the artifact and ValueError for a
    malformed header or several ranges.
    """
    header = header.strip()
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        raise ValueError(f"unsupported Range header: {header[:80]!r}")
    if "," in spec:
        raise ValueError("multiple ranges are not supported")
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        raise ValueError(f"malformed Range header: {header[:80]!r}")
    if first == "":
        if last == "":
            raise ValueError(f"malformed Range header: {header[:80]!r}")
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("empty suffix range")
        start = max(0, size - suffix)
        return ByteRange(start, size - start)
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, the artifact has {size} bytes")
    end = size - 1 if last == "" else min(int(last), size - 1)
    if end < start:
        raise ValueError(f"range end before its start: {header[:80]!r}")
    return ByteRange(start, end - start + 1)
