"""Run the benchmarks and write docs/performance.md.

Conveyor runs in the distributed mode (each service its own process, one worker process with
4 threads, PostgreSQL, Redis broker and Redis Streams events); raw Celery runs one worker
process with 4 threads on the same Redis. Both execute `true` as a child process per step.

    python -m bench.run [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import chain, chord, group

from bench.report import write_section
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness

ROOT = Path(__file__).resolve().parent.parent
CHAIN_LEN = 100
FAN_OUT = 200


def workflow(name: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> str:
    """A workflow document as JSON text."""
    return json.dumps(
        {
            "schema": "conveyor/v1",
            "name": name,
            "nodes": [{**n, "position": {"x": 0, "y": 0}} for n in nodes],
            "edges": [{"id": f"e{i}", "source": s, "target": t} for i, (s, t) in enumerate(edges)],
        }
    )


def true_node(node_id: str) -> dict[str, Any]:
    """An action.command node running `true`."""
    return {"id": node_id, "type": "action.command", "data": {"argv": ["true"]}}


CHAIN_DOC = workflow(
    "bench-chain",
    [true_node(f"s{i}") for i in range(CHAIN_LEN)],
    [(f"s{i}", f"s{i + 1}") for i in range(CHAIN_LEN - 1)],
)
FAN_DOC = workflow(
    "bench-fanout",
    [true_node("start"), *[true_node(f"f{i}") for i in range(FAN_OUT)], true_node("join")],
    [*[("start", f"f{i}") for i in range(FAN_OUT)], *[(f"f{i}", "join") for i in range(FAN_OUT)]],
)


def time_conveyor(client: Client, job_id: str) -> float:
    """Seconds from StartRun to the run's terminal event."""
    started = time.perf_counter()
    run = client.start_run(job_id, {})
    for _ in client.watch(run.run_id):
        pass
    elapsed = time.perf_counter() - started
    final = client.get_run(run.run_id)
    if final.state != run_pb2.RUN_STATE_SUCCEEDED:
        raise RuntimeError(f"benchmark run {run.run_id} ended {final.state}")
    return elapsed


def conveyor_figures(repeat: int) -> dict[str, list[float]]:
    """Wall times of each workflow in the distributed mode."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.distributed(
            Path(tmp),
            POSTGRES_URL,
            REDIS_URL,
            workers=1,
            extra_env={"CONVEYOR_WORKER_CONCURRENCY": "4"},
        ) as info,
    ):
        client = Client(info["grpc"], token=info["token"])
        jobs = {
            "chain": client.create_job(CHAIN_DOC).job.job_id,
            "fanout": client.create_job(FAN_DOC).job.job_id,
        }
        time_conveyor(client, jobs["chain"])  # warm-up: connections, imports
        result = {k: [time_conveyor(client, j) for _ in range(repeat)] for k, j in jobs.items()}
        client.close()
        return result


def raw_figures(repeat: int) -> dict[str, list[float]]:
    """Wall times of the same work as a raw Celery chain and chord."""
    with harness.redis_database(REDIS_URL) as broker:
        return _raw_figures(broker, repeat)


def _raw_figures(broker: str, repeat: int) -> dict[str, list[float]]:
    env = {**os.environ, "BENCH_RAW_BROKER": broker}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.raw_celery",
            "worker",
            "--pool=threads",
            "--concurrency=4",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["BENCH_RAW_BROKER"] = broker
    from bench import raw_celery

    try:
        raw_celery.run_true.delay().get(timeout=60)  # waits for the worker, warms it up

        def run_chain() -> float:
            t = time.perf_counter()
            chain(*[raw_celery.run_true.si() for _ in range(CHAIN_LEN)]).apply_async().get(
                timeout=600
            )
            return time.perf_counter() - t

        def run_fan() -> float:
            t = time.perf_counter()
            raw_celery.run_true.si().apply_async().get(timeout=60)
            chord(group(raw_celery.run_true.si() for _ in range(FAN_OUT)))(raw_celery.join.s()).get(
                timeout=600
            )
            return time.perf_counter() - t

        return {
            "chain": [run_chain() for _ in range(repeat)],
            "fanout": [run_fan() for _ in range(repeat)],
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


ANALYSIS = [
    "What dominates (py-spy on the worker during the chain, and a claim/finish loop against",
    "PostgreSQL without Celery): per step the worker runs two transactions under the run's row",
    "lock — claim (lock, step row, execution row, outbox event, the template scope) and finish",
    "(lock, execution row, outbox event, the children and their parents, the open-step count) —",
    "about 7 ms of the step's time on this machine, most of it SQLAlchemy ORM work and round",
    "trips; then it publishes the events to the Redis stream. Raw Celery does one result write",
    "and one message per task. For the fan-out, the 200 finishing steps serialise on the run",
    "lock, and every other service of the suite shares the same 2 cores.",
    "Done: run plans are cached per process, a join's parents are read as plain state tuples",
    "(the 200-way join read 200 full rows per finish: 17.8 -> 9.0 ms/step of database work in",
    "the loop without Celery), and hand-off: the transaction that records a step's end also",
    "claims a successor it made ready on the same queue, and the worker thread runs it without",
    "a broker round trip (chain: 18.1 -> 12.3 ms/step). Next: Core statements instead of ORM",
    "units of work on this path, and a shorter run-lock hold for wide joins.",
]


def write_report(conveyor: dict[str, list[float]], raw: dict[str, list[float]], repeat: int) -> str:
    """Render the performance section and write it into docs/performance.md."""
    steps = {"chain": CHAIN_LEN, "fanout": FAN_OUT + 2}
    label = {
        "chain": f"chain of {CHAIN_LEN} `true` steps",
        "fanout": f"{FAN_OUT}-way fan-out + join ({FAN_OUT + 2} steps)",
    }
    rows = []
    for key in ("chain", "fanout"):
        c = statistics.median(conveyor[key])
        r = statistics.median(raw[key])
        rows.append(
            f"| {label[key]} | {c:.2f} s | {1000 * c / steps[key]:.1f} | {r:.2f} s | "
            f"{1000 * r / steps[key]:.1f} | {c / r:.2f} |"
        )
    body = "\n".join(
        [
            "## Orchestration overhead: Conveyor vs raw Celery",
            "",
            f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `make bench` "
            f"(`python -m bench.run --repeat {repeat}`) on {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; median of {repeat} runs after a warm-up.",
            "Conveyor: distributed mode (separate translator, executor, monitor and gateway "
            "processes, one worker process with 4 threads, PostgreSQL, Redis broker, Redis Streams "
            "events), timed from StartRun to the terminal event on WatchRun. "
            "Raw Celery: one worker "
            "with 4 threads on the same Redis, a `chain` and a `chord` of tasks "
            "that each run `true` "
            "as a child process, timed from apply_async to the result.",
            "",
            "| workload | Conveyor | ms/step | raw Celery | ms/step | ratio |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            *ANALYSIS,
            "",
            "Raw figures (s): " + json.dumps({"conveyor": conveyor, "raw_celery": raw}),
        ]
    )
    write_section("orchestration", body)
    return body


def main() -> None:
    """Run both sides and write the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    conveyor = conveyor_figures(opts.repeat)
    raw = raw_figures(opts.repeat)
    print(write_report(conveyor, raw, opts.repeat))


if __name__ == "__main__":
    main()
