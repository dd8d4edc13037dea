"""`--param name=value` options, shared by the commands that take run parameters."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

EXIT_INVALID = 2


def parse_pairs(
    pairs: list[str], err: Console, into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """name=value pairs as a dict (a value that parses as JSON is JSON); exit 2 on a bad pair."""
    params: dict[str, Any] = {} if into is None else into
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            err.print(f"error: --param {pair!r} must look like name=value", markup=False)
            raise typer.Exit(EXIT_INVALID)
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params
