"""The artifact tests again, with the S3 backend on moto's standalone server (real minio client).

moto runs as its own process, so the bytes it keeps in memory never count towards the
memory of the worker being measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.artifacts.client import ArtifactClient
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration.test_artifacts import (  # noqa: F401 - the shared tests and fixtures
    artifacts,
    big_run,
    test_bad_requests,
    test_big_output_streams_with_bounded_worker_memory,
    test_head_is_inline,
    test_http_list_and_ranged_download,
)

BUCKET = "conveyor-it"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free port; its endpoint URL."""
    port = harness.free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **KEYS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto: str
) -> Iterator[dict[str, Any]]:
    """A running Conveyor whose artifact service stores into a (new) moto bucket."""
    tmp = tmp_path_factory.mktemp(f"s3-{request.param}")
    url = f"s3://{BUCKET}-{request.param}?endpoint={moto}"
    if request.param == "embedded":
        with harness.embedded(
            tmp,
            artifacts_url=url,
            artifacts_access_key="testing",
            artifacts_secret_key="testing",
            artifacts_region="us-east-1",
        ) as addresses:
            yield {"mode": "embedded", "moto": moto, **addresses}
    else:
        env = {"CONVEYOR_ARTIFACTS_URL": url, "AWS_REGION": "us-east-1", **KEYS}
        with harness.distributed(tmp, POSTGRES_URL, REDIS_URL, extra_env=env) as info:
            yield {"mode": "distributed", "moto": moto, **info}


def test_objects_are_in_the_bucket_and_presigned_urls_work(
    big_run: dict[str, Any],  # noqa: F811 - the imported fixture
    stack: dict[str, Any],
) -> None:
    client = ArtifactClient(stack["grpc"], channel=harness.grpc_channel(stack))
    try:
        (artifact,) = list(client.list(big_run["run"].run_id))
        found = client.get(artifact.artifact_id)
    finally:
        client.close()
    assert found.artifact.backend == "s3"
    assert found.download_url.startswith(stack["moto"])
    assert found.download_url_expire_time.seconds > time.time()
    got = httpx.get(found.download_url, headers={"Range": "bytes=0-15"}, timeout=30)
    assert got.status_code == 206
    assert got.content == b"0000000000000000"
