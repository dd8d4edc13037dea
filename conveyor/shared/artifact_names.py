"""Artifact names: what a stored artifact may be called and a step may declare.

The artifact service refuses other names; the translator checks a node's `data.artifacts`
patterns with the same rules, and the worker skips a pattern of a stale plan that breaks them.
A name is metadata only (object keys are made by the artifact service), but clients use it
as a relative path.
"""

from __future__ import annotations

import re

MAX_NAME = 1024
MAX_PATTERNS = 100
MAX_DEPTH = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
