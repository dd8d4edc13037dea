"""A Redis restart and a PostgreSQL outage mid-load: every run finishes as it should and no
committed write is answered with an error.

The machine's own servers are shared, so neither is touched: the broker and event bus are a
private redis-server killed with -9 and started again (no persistence: every queued message
is lost), and PostgreSQL is reached through a TCP proxy that the test cuts and restores.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.chaos.load import Load, long_mode
from tests.chaos.stack import Stack, chaos_stack

pytestmark = [pytest.mark.chaos, pytest.mark.distributed, pytest.mark.timeout(3600)]

# Lost messages are re-sent by the sweeper after CONVEYOR_REQUEUE_AFTER_S; shortened here so
# the short version fits its time (the default is 30 s).
ENV = {"CONVEYOR_REQUEUE_AFTER_S": "5"}


def _outages(stack: Stack, rounds: int, rng: random.Random, done: list[str]) -> None:
    for _ in range(rounds):
        time.sleep(rng.uniform(4, 8))
        stack.restart_redis(down_s=rng.uniform(2, 4))
        done.append("redis restart")
        time.sleep(rng.uniform(4, 8))
        assert stack.db_proxy is not None
        stack.db_proxy.cut()
        stack.kills.append(("postgres", time.time()))
        time.sleep(rng.uniform(5, 10))
        stack.db_proxy.restore()
        done.append("postgres outage")


def test_redis_restart_and_postgres_outage_mid_load(tmp_path: Path) -> None:
    runs, rounds = (120, 4) if long_mode() else (21, 1)
    rng = random.Random(9)
    with chaos_stack(
        tmp_path, workers=2, db_proxy=True, private_redis=True, extra_env=ENV
    ) as stack:
        load = Load(stack, tmp_path / "marks.log", tmp_path / "flags")
        faults: list[str] = []
        try:
            load.create_jobs()
            load.start_approver()
            chaos = threading.Thread(
                target=_outages, args=(stack, rounds, rng, faults), daemon=True
            )
            chaos.start()
            load.submit_over(runs, rounds * 25)
            chaos.join()
            states = load.wait_all(timeout_s=400 if long_mode() else 150)
            load.report(states, faults=len(faults), name="redis restart + postgres outage")
        finally:
            load.close()
