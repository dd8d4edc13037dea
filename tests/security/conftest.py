"""The hostile-input suite counts what it tried and what got through; see docs/reliability.md."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

#: "<category> tried" and "<category> <failure kind>" counters, filled by the tests.
COUNTS: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the counts, for docs/reliability.md."""
    if not COUNTS:
        return
    terminalreporter.section("hostile inputs")
    for key in sorted(COUNTS):
        terminalreporter.write_line(f"{key}: {COUNTS[key]}")


@pytest.fixture
def counts() -> Counter[str]:
    """The suite's counters."""
    return COUNTS
