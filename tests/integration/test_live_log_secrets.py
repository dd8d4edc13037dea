"""Secrets stay masked in live output, even when a secret is written in two pieces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.cli.client import Client
from conveyor.monitor.v1 import event_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf
from tests.integration.harness import read_artifact

SECRET = "s3cr3t-live-t0ken"
SECRET_ENV = {"CONVEYOR_SECRET_LIVE_TOKEN": SECRET}
# The secret goes out in two writes with a pause, between thousands of lines, so it spans
# two reads of the pipe and the boundary of two live batches.
SPLITTER = (
    "import sys, time\n"
    "s = sys.argv[1]\n"
    "for i in range(3000): print(f'before {i}')\n"
    "sys.stdout.write('token=' + s[:6]); sys.stdout.flush(); time.sleep(0.3)\n"
    "sys.stdout.write(s[6:] + ' end\\n'); sys.stdout.flush()\n"
    "for i in range(3000): print(f'after {i}')\n"
    "print('err ' + s, file=sys.stderr)\n"
)


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def secret_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp(f"secrets-{request.param}")
    if request.param == "embedded":
        saved = {k: os.environ.get(k) for k in SECRET_ENV}
        os.environ.update(SECRET_ENV)  # the embedded worker reads its secrets at start
        try:
            with harness.embedded(tmp) as addresses:
                client = Client(addresses["grpc"], token=addresses["token"])
                yield client
                client.close()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    else:
        with harness.distributed(
            tmp, POSTGRES_URL, REDIS_URL, workers=1, extra_env=SECRET_ENV
        ) as info:
            client = Client(info["grpc"], token=info["token"])
            yield client
            client.close()


def test_a_secret_split_across_writes_is_masked_live_and_in_the_artifact(
    secret_client: Client,
) -> None:
    doc = wf.doc(
        "it-live-secret",
        [wf.cmd("p", ["python3", "-c", SPLITTER, "{{ secrets.LIVE_TOKEN }}"])],
        [],
    )
    job = secret_client.create_job(doc).job
    run = secret_client.start_run(job.job_id, {})
    events = list(secret_client.watch(run.run_id))
    logs: list[Any] = [e.step_log for e in events if e.HasField("step_log")]
    stdout = "".join(c.text for c in logs if c.stream == event_pb2.LOG_STREAM_STDOUT)
    stderr = "".join(c.text for c in logs if c.stream == event_pb2.LOG_STREAM_STDERR)
    assert len([c for c in logs if c.stream == event_pb2.LOG_STREAM_STDOUT]) >= 2
    assert "token=*** end\n" in stdout
    assert stderr == "err ***\n"
    assert all(SECRET[:6] not in c.text and SECRET[6:] not in c.text for c in logs)
    step = secret_client.get_run(run.run_id).steps[0]
    artifact = read_artifact(secret_client.address, step.stdout_uri, secret_client.token)
    assert artifact == stdout
