"""Artifact names, object keys and byte ranges."""

from __future__ import annotations

import pytest

from conveyor.artifacts.domain import (
    ByteRange,
    RangeNotSatisfiable,
    check_key,
    check_name,
    name_problem,
    object_key,
    parse_http_range,
    resolve_range,
)
from conveyor.kernel.errors import InvalidArgument


@pytest.mark.parametrize("name", ["stdout", "out/a.txt", "a/b/c/report.html", "out/**/*.gz"])
def test_good_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("../x", "contains '..'"),
        ("a/../../x", "contains '..'"),
        ("/etc/passwd", "is an absolute path"),
        ("a\\b", "contains a backslash"),
        ("bad\x00", "contains a control character"),
        ("new\nline", "contains a control character"),
        ("a//b", "has an empty or '.' path segment"),
        ("./a", "has an empty or '.' path segment"),
        ("x" * 1025, "is longer than 1024 characters"),
        ("/".join(["d"] * 33), "is nested deeper than 32 folders"),
    ],
)
def test_bad_names(name: str, problem: str) -> None:
    assert name_problem(name) == problem
    with pytest.raises(InvalidArgument):
        check_name(name)


def test_keys_are_made_from_ids_not_names() -> None:
    key = object_key("run1", "node-a", 3)
    assert key.startswith("runs/run1/node-a/3/")
    check_key(key)
    assert object_key("run1", "node-a", 3) != key
    for bad in ("../x", "runs/../../etc/passwd", "runs/a/b/1/../../x", "/abs"):
        with pytest.raises(ValueError, match="service-made"):
            check_key(bad)
    with pytest.raises(InvalidArgument):
        object_key("../r", "n", 1)
    with pytest.raises(InvalidArgument):
        object_key("r", "n", 0)


def test_resolve_range() -> None:
    assert resolve_range(10, 0, 0) == ByteRange(0, 10)
    assert resolve_range(10, 4, 3) == ByteRange(4, 3)
    assert resolve_range(10, 8, 100) == ByteRange(8, 2)
    assert resolve_range(0, 0, 0) == ByteRange(0, 0)
    with pytest.raises(RangeNotSatisfiable):
        resolve_range(10, 10, 0)
    with pytest.raises(RangeNotSatisfiable):
        resolve_range(10, 11, 1)
    with pytest.raises(ValueError, match="negative"):
        resolve_range(10, -1, 0)


def test_http_ranges() -> None:
    assert parse_http_range("", 100) is None
    assert parse_http_range("bytes=0-9", 100) == ByteRange(0, 10)
    assert parse_http_range("bytes=90-", 100) == ByteRange(90, 10)
    assert parse_http_range("bytes=90-500", 100) == ByteRange(90, 10)
    assert parse_http_range("bytes=-5", 100) == ByteRange(95, 5)
    assert parse_http_range("bytes=-500", 100) == ByteRange(0, 100)
    for past in ("bytes=100-", "bytes=200-300", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_http_range(past, 100)
    for bad in ("items=0-1", "bytes=0-1,5-6", "bytes=a-b", "bytes=5-2", "bytes=-", "bytes"):
        with pytest.raises(ValueError):
            parse_http_range(bad, 100)
