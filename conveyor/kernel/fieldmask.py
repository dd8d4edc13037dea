"""Update masks, read the same way by every Update RPC.

A mask names the fields an update changes; nothing else is touched. An empty mask is refused
rather than read as "every field": a client that forgot it would otherwise reset every field
it did not send to its default. Each path that is not an editable field is named in the error.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from conveyor.kernel.errors import InvalidArgument, Violation


def update_paths(mask: Any, editable: Collection[str], *, field: str = "update_mask") -> list[str]:
    """The mask's paths in order, without repeats; INVALID_ARGUMENT when it is empty or names
    a field that is unknown or read-only (`editable` lists the allowed paths)."""
    paths = list(dict.fromkeys(mask.paths))
    if not paths:
        raise InvalidArgument(
            f"{field} must name the fields to change (one or more of {', '.join(editable)})",
            violations=[Violation(field, "empty: name the fields to change", "REQUIRED")],
        )
    bad = [
        Violation(f"{field}.paths[{i}]", f"not an editable field: {p!r}", "INVALID_MASK")
        for i, p in enumerate(mask.paths)
        if p not in editable
    ]
    if bad:
        raise InvalidArgument(
            f"{field}: {bad[0].description} (editable: {', '.join(editable)})", violations=bad
        )
    return paths
