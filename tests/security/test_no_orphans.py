"""No orphans in the distributed mode: SIGKILL the worker process running a step, and no
process of that step survives it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from tests.conftest import POSTGRES_URL, REDIS_URL, open_to_steps
from tests.integration import harness
from tests.integration import workflows as wf


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("orphans")
    with harness.distributed(tmp, POSTGRES_URL, REDIS_URL, workers=1) as info:
        yield info


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def wait_until(predicate: Any, seconds: float = 120) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_sigkilled_worker_leaves_no_process_of_its_step(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    open_to_steps(tmp_path)
    pidfile = tmp_path / "pgid"
    script = (
        f"sleep 300 & sh -c 'sleep 300' & echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; wait"
    )
    doc = wf.doc("orphans", [wf.cmd("long", ["sh", "-c", script], retries={"max": 0})], [])
    client = Client(stack["grpc"], token=stack["token"])
    try:
        job = client.create_job(doc).job
        client.start_run(job.job_id, {})
        assert wait_until(pidfile.exists)
        pgid = int(pidfile.read_text())
        assert wait_until(lambda: len(group_members(pgid)) >= 3)
        # The step's leader was started by the process that runs the step.
        worker_pid = parent_of(pgid)
        os.kill(worker_pid, signal.SIGKILL)
        assert wait_until(lambda: not group_members(pgid)), group_members(pgid)
    finally:
        client.close()
