"""Shared fixtures: real services come from the environment, defaulting to the local ones."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def open_to_steps(path: Path) -> Path:
    """Let steps use `path`: when the tests run as root, steps run as an unprivileged user
    (CONVEYOR_STEP_USER's default), which needs the folder writable and its parents
    traversable; pytest makes its temporary folders private to the test's user."""
    if os.geteuid() != 0:
        return path
    path.chmod(0o777)
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return path


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's tmp_path, usable by steps (see `open_to_steps`)."""
    return open_to_steps(tmp_path)
