"""logic.foreach throughput: items per second running `true` per item, in the embedded mode.

One foreach over N items whose body is one action.command (`true`), at concurrency 1, 4
and 16, compared with the same work as N separate top-level steps (one Celery message,
claim and record each).

    python -m bench.foreach [--items 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_section
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.integration import harness


def foreach_doc(items: int, concurrency: int) -> str:
    """A foreach over range(items) with one `true` per item."""
    nodes: list[dict[str, Any]] = [
        {
            "id": "loop",
            "type": "logic.foreach",
            "data": {"items": f"range({items}) | list", "concurrency": concurrency},
        },
        {"id": "t", "type": "action.command", "parentId": "loop", "data": {"argv": ["true"]}},
    ]
    return json.dumps(
        {"schema": "conveyor/v1", "name": f"bench-foreach-{concurrency}", "nodes": nodes}
    )


def steps_doc(items: int) -> str:
    """The same work as separate parallel top-level steps."""
    nodes = [
        {"id": f"t{i}", "type": "action.command", "data": {"argv": ["true"]}} for i in range(items)
    ]
    return json.dumps({"schema": "conveyor/v1", "name": "bench-steps", "nodes": nodes})


def timed(client: Client, text: str) -> float:
    """Seconds from StartRun to the run's end; the run must succeed."""
    job = client.create_job(text).job
    start = time.perf_counter()
    run = client.start_run(job.job_id, {})
    for _ in client.watch(run.run_id):
        pass
    elapsed = time.perf_counter() - start
    final = client.get_run(run.run_id)
    if final.state != run_pb2.RUN_STATE_SUCCEEDED:
        raise SystemExit(f"benchmark run failed: {final.error_message}")
    return elapsed


def main() -> None:
    """Measure and write the `foreach` section of docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    n = args.items
    rows = []
    with tempfile.TemporaryDirectory() as tmp, harness.embedded(Path(tmp)) as addresses:
        client = Client(addresses["grpc"], token=addresses["token"])
        for concurrency in (1, 4, 16):
            seconds = timed(client, foreach_doc(n, concurrency))
            rows.append((f"foreach, concurrency {concurrency}", seconds))
        seconds = timed(client, steps_doc(n))
        rows.append((f"{n} top-level steps (4 worker threads)", seconds))
        client.close()
    table = "\n".join(f"| {name} | {s:.2f} s | {n / s:.0f} |" for name, s in rows)
    body = f"""## Foreach throughput (embedded mode)

Measured {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} on {platform.machine()},
Python {platform.python_version()} (`python -m bench.foreach --items {n}`): {n} items, each
running `true` as a child process; embedded mode (SQLite, in-memory broker, 4 worker
threads). A foreach runs its items inside one step, so it saves the per-step message,
claim and record of top-level steps.

| shape | wall time | items/s |
|---|---|---|
{table}

The machine is shared (2 cores); compare runs on the same machine only.
"""
    print(write_section("foreach", body))


if __name__ == "__main__":
    main()
