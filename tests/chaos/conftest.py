"""Chaos tests run only when asked: `make chaos` (CONVEYOR_CHAOS=1), the long version with
CONVEYOR_CHAOS_LONG=1. A plain `make test` skips them."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip chaos tests unless CONVEYOR_CHAOS is set."""
    if os.environ.get("CONVEYOR_CHAOS", "") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="chaos suite: run with `make chaos` (CONVEYOR_CHAOS=1)")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)
