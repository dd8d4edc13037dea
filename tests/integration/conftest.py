"""Integration fixtures: the same tests run against the embedded and the distributed mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A running Conveyor in one of its two modes."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        with harness.embedded(tmp) as addresses:
            yield {"mode": "embedded", **addresses}
    else:
        with harness.distributed(tmp, POSTGRES_URL, REDIS_URL, workers=1) as info:
            yield {"mode": "distributed", **info}


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[Client]:
    """A gRPC client of the stack's gateway."""
    c = Client(stack["grpc"])
    yield c
    c.close()


@pytest.fixture
def tmp_marker_dir(tmp_path: Path) -> Path:
    """A folder where an injected command would leave a file."""
    return tmp_path


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
