"""Byte ranges of a stored object: a download's offset/length and an HTTP `Range` header."""

from __future__ import annotations

from dataclasses import dataclass


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
