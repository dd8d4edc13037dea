"""Celery's own control commands (`celery inspect`, what Flower uses) reach Conveyor workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness

pytestmark = pytest.mark.distributed


def test_inspect_ping_and_active_queues_answer(tmp_path: Path) -> None:
    with harness.distributed(tmp_path, POSTGRES_URL, REDIS_URL, workers=1) as info:
        broker = info["env"]["CONVEYOR_BROKER_URL"]
        celery = [sys.executable, "-m", "celery", "-b", broker]
        ping = subprocess.run(
            [*celery, "inspect", "ping", "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "pong" in ping.stdout
        assert "worker0@" in ping.stdout
        queues = subprocess.run(
            [*celery, "inspect", "active_queues", "--timeout", "10"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert queues.returncode == 0, queues.stdout + queues.stderr
        assert "'default'" in queues.stdout or '"default"' in queues.stdout
        worker_log = (info["logs"] / "worker0.log").read_text()
        assert "Traceback" not in worker_log
