"""The same work done with Prefect 3: a flow of tasks that each run `true` as a child process.

Runs inside the benchmark's own Prefect environment (`bench.compare` makes it), never in the
project's: Prefect is not a dependency of Conveyor. Ephemeral mode (no PREFECT_API_URL: Prefect
starts its own temporary server on SQLite), a thread pool of 4 like the Conveyor worker.
Prints one JSON object of wall times in seconds.

    .bench/prefect/bin/python bench/prefect_flows.py --chain 100 --fanout 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner


@task
def run_true(_: int = 0) -> int:
    """Run `true` as a child process, as a Conveyor action.command step does."""
    return subprocess.run(["true"], check=False).returncode


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=False)
def chain_flow(length: int) -> int:
    """`length` tasks one after the other, each waiting for the previous."""
    total = 0
    for _ in range(length):
        total += run_true()
    return total


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=False)
def fanout_flow(width: int) -> int:
    """One task, `width` tasks in parallel, then a join task waiting for all of them."""
    first = run_true.submit()
    first.wait()
    futures = run_true.map(range(width))
    done = run_true.submit(wait_for=futures)
    return done.result()


def timed(fn: Any, *args: Any) -> float:
    """Seconds one flow run takes, from the call to its return."""
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    """Warm up (the temporary server starts on the first flow), then time each shape."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    chain_flow(3)
    result = {
        "chain": [timed(chain_flow, opts.chain) for _ in range(opts.repeat)],
        "fanout": [timed(fanout_flow, opts.fanout) for _ in range(opts.repeat)],
    }
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
