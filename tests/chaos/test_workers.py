"""kill -9 of random workers, repeatedly, during a mixed load."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from tests.chaos.load import Load, kill_workers, long_mode
from tests.chaos.stack import chaos_stack

pytestmark = [pytest.mark.chaos, pytest.mark.distributed, pytest.mark.timeout(3600)]


def test_worker_kills_during_mixed_load(tmp_path: Path) -> None:
    runs, kills, interval = (200, 15, 8.0) if long_mode() else (21, 3, 6.0)
    rng = random.Random(8)
    with chaos_stack(tmp_path, workers=2) as stack:
        load = Load(stack, tmp_path / "marks.log", tmp_path / "flags")
        try:
            load.create_jobs()
            load.start_approver()
            killer = threading.Thread(
                target=lambda: kill_workers(stack, kills, interval, rng), daemon=True
            )
            killer.start()
            load.submit_over(runs, kills * interval * 0.8)
            killer.join()
            states = load.wait_all(timeout_s=300 if long_mode() else 150)
            load.report(states, faults=kills, name="worker kill -9")
        finally:
            load.close()
