"""Integration fixtures: the same tests run against the embedded and the distributed mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.cli.client import Client
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
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
    c = Client(stack["grpc"], token=stack["token"])
    yield c
    c.close()


@pytest.fixture
def http(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    """An HTTP client of the stack's gateway, authenticated as its admin token."""
    with harness.http_client(stack) as c:
        yield c


@pytest.fixture
def tmp_marker_dir(tmp_path: Path) -> Path:
    """A folder where an injected command would leave a file."""
    return tmp_path


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind the executor runs on: SQLite, and a fresh
    PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'conveyor.db'}")
        upgrade(database)
        yield database
        database.dispose()
        return
    with harness.postgres_database(POSTGRES_URL) as url:
        database = Database(url)
        upgrade(database)
        yield database
        database.dispose()
