"""Size limits, and bounded conversion of untrusted input to plain JSON values.

Everything here is iterative: a document nested 100,000 levels deep is
reported as too deep, never a RecursionError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.shared.diagnostics import pointer

__all__ = ["DEFAULT_LIMITS", "Limits", "PlainResult", "json_text_depth_exceeds", "to_plain"]


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one document may cause; exceeding one is LIMIT_EXCEEDED."""

    max_nodes: int = 10_000
    max_edges: int = 50_000
    max_document_bytes: int = 4 * 1024 * 1024
    max_template_bytes: int = 64 * 1024
    max_foreach_items: int = 10_000
    max_depth: int = 64


#: The limits used when a caller gives none.
DEFAULT_LIMITS = Limits()


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")


def json_text_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `max_depth`, checked before parsing.

    Strings are blanked out, then innermost bracket pairs are removed one level
    per pass: each pass is a C-speed regex over the text, and the work stops
    after `max_depth` + 1 passes whatever the input.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(max_depth):
        reduced = _INNERMOST_PAIR.sub("", brackets)
        if reduced == brackets:
            break
        brackets = reduced
    else:
        # Something left that still reduces means one more level than allowed.
        if _INNERMOST_PAIR.search(brackets) is not None:
            return True
    # What remains of malformed text: a parser descends through at most one run
    # of consecutive openers before it meets a closer it cannot match.
    return re.search(r"[\[{]{" + str(max_depth + 1) + "}", brackets) is not None


@dataclass
class PlainResult:
    """Plain JSON data converted from input, plus where conversion failed."""

    value: Any
    too_deep: bool = False
    bad_values: list[str] = field(default_factory=list)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _leaf(value: Any, *, whole_floats: bool = False) -> tuple[Any, bool]:
    """The JSON form of a scalar, and whether it is acceptable."""
    if value is None or isinstance(value, str | bool | int):
        return value, True
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, False
        if whole_floats:
            return value, True
        # Protobuf Struct carries every number as a double: 3.0 means 3.
        return (int(value), True) if value.is_integer() else (value, True)
    return None, False


# A path is kept as a linked list of (parent, key) and only spelled out for a bad value.
_Trail = tuple[Any, Any] | None


def _spell(trail: _Trail) -> str:
    keys: list[Any] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    return pointer(*reversed(keys))


_SCALARS = (str, int, bool, type(None))


def to_plain(root: Any, *, max_depth: int, whole_floats: bool = False) -> PlainResult:
    """Copy `root` into dicts, lists and JSON scalars, bounded by `max_depth` levels.

    Any Mapping or Sequence is accepted (protobuf Struct and ListValue included),
    integral floats become ints unless `whole_floats` keeps them (for values that came as
    JSON text, where `1.0` was written as a float), and values JSON cannot hold (NaN, bytes,
    objects) are replaced by None and listed by JSON pointer in `bad_values`.
    """
    result = PlainResult(None)
    if not isinstance(root, Mapping) and not _is_sequence(root):
        value, ok = _leaf(root, whole_floats=whole_floats)
        result.value = value
        if not ok:
            result.bad_values.append("")
        return result
    top: Any = {} if isinstance(root, Mapping) else []
    result.value = top
    bad: list[_Trail] = []
    stack: list[tuple[Any, Any, int, _Trail]] = [(root, top, 1, None)]
    while stack:
        source, target, depth, trail = stack.pop()
        if depth > max_depth:
            return PlainResult(None, too_deep=True)
        is_dict = isinstance(target, dict)
        items = source.items() if is_dict else enumerate(source)
        for key, item in items:
            kind = type(item)
            if kind in _SCALARS:
                copy: Any = item
            elif kind is dict or (kind is not list and isinstance(item, Mapping)):
                copy = {}
                stack.append((item, copy, depth + 1, (trail, key)))
            elif kind is list or _is_sequence(item):
                copy = []
                stack.append((item, copy, depth + 1, (trail, key)))
            else:
                copy, ok = _leaf(item, whole_floats=whole_floats)
                if not ok:
                    bad.append((trail, key))
            if is_dict:
                target[key if type(key) is str else str(key)] = copy
            else:
                target.append(copy)
    result.bad_values = sorted(_spell(t) for t in bad)
    return result
