"""Every orchestration workload side by side: Conveyor (distributed and embedded), raw Celery,
Prefect 3; one table in docs/performance.md.

    python -m bench.compare [--quick] [--repeat N] [--fanout N] [--runs N] [--skip-prefect]

Conveyor's distributed mode is every service its own process on PostgreSQL and Redis, with
worker processes of 4 threads each; the embedded mode is `conveyor dev`'s suite (SQLite,
in-process broker and bus, 4 worker threads). Raw Celery is one worker with 4 threads on the
same Redis; Prefect 3 runs in its own virtual environment under `.bench/` (made here with
pip, never a project dependency) in ephemeral mode with a pool of 4 threads. Every step of
every system runs `true` as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import chain, chord, group
from sqlalchemy import bindparam, create_engine, text

from bench import event_latency, schedule_accuracy
from bench.report import write_section
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
PREFECT_VENV = BENCH_DIR / "prefect"
PREFECT_SPEC = "prefect>=3,<4"
CHAIN_LEN = 100
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


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


def chain_doc(length: int) -> str:
    """A chain of `length` `true` steps."""
    nodes = [true_node(f"s{i}") for i in range(length)]
    return workflow("bench-chain", nodes, [(f"s{i}", f"s{i + 1}") for i in range(length - 1)])


def fanout_doc(width: int) -> str:
    """One step, `width` steps after it, one join after all of them."""
    nodes = [true_node("start"), *[true_node(f"f{i}") for i in range(width)], true_node("join")]
    edges = [("start", f"f{i}") for i in range(width)] + [(f"f{i}", "join") for i in range(width)]
    return workflow("bench-fanout", nodes, edges)


ONE_STEP_DOC = workflow("bench-one", [true_node("only")], [])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    return event_latency.pct(values, int(q)) if values else float("nan")


# --- Conveyor ------------------------------------------------------------------------------


def timed_run(client: Client, job_id: str) -> float:
    """Seconds from StartRun to the terminal event on WatchRun."""
    started = time.perf_counter()
    run = client.start_run(job_id, {})
    for _ in client.watch(run.run_id):
        pass
    elapsed = time.perf_counter() - started
    if client.get_run(run.run_id).state != run_pb2.RUN_STATE_SUCCEEDED:
        raise RuntimeError(f"benchmark run {run.run_id} did not succeed")
    return elapsed


def submit_to_start(client: Client, job_id: str, samples: int) -> list[float]:
    """Seconds from just before StartRun to the recorded start of the run's one step."""
    lags = []
    for _ in range(samples):
        before = time.time()
        run = client.start_run(job_id, {})
        for _ in client.watch(run.run_id):
            pass
        step = client.get_run(run.run_id).steps[0]
        lags.append(step.start_time.ToDatetime(tzinfo=UTC).timestamp() - before)
    return lags


def throughput(
    address: str, token: str, job_id: str, count: int, clients: int, database_url: str
) -> dict[str, float]:
    """`count` one-step runs started by `clients` concurrent gateway clients.

    Submissions/s: runs over the time until the last StartRun returned. Completions/s: runs
    over the time from the first submission to the last run's recorded end.
    """
    errors: list[str] = []
    per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def submit(n: int) -> None:
        client = Client(address, token=token)
        barrier.wait()
        try:
            for _ in range(n):
                client.start_run(job_id, {})
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=submit, args=(n,)) for n in per]
    for t in threads:
        t.start()
    barrier.wait()
    began_wall, began = time.time(), time.perf_counter()
    for t in threads:
        t.join()
    submitted_s = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"submissions failed: {errors[:3]}")
    engine = create_engine(database_url)
    query = text(
        "SELECT count(*), max(ended_at) FROM job_runs WHERE job_id = :job AND state IN :states"
    ).bindparams(bindparam("job", job_id), bindparam("states", list(TERMINAL), expanding=True))
    deadline = time.monotonic() + 60 + count / 5
    done, last = 0, None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done, last = conn.execute(query).one()
        if done >= count:
            break
        time.sleep(0.5)
    engine.dispose()
    if done < count or last is None:
        raise RuntimeError(f"only {done} of {count} runs ended")
    ended = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
    if ended.tzinfo is None:
        ended = ended.replace(tzinfo=UTC)
    return {
        "runs": count,
        "clients": clients,
        "submissions_per_s": count / submitted_s,
        "completions_per_s": count / (ended.timestamp() - began_wall),
    }


def conveyor_distributed(opts: argparse.Namespace) -> dict[str, Any]:
    """Every Conveyor workload in the distributed mode, throughput with 1, 2, 4 workers."""
    result: dict[str, Any] = {}
    for workers in opts.workers:
        with (
            tempfile.TemporaryDirectory() as tmp,
            harness.distributed(Path(tmp), POSTGRES_URL, REDIS_URL, workers=workers) as info,
        ):
            client = Client(info["grpc"], token=info["token"])
            one = client.create_job(ONE_STEP_DOC).job.job_id
            if workers == opts.workers[0]:
                result.update(orchestration(client, opts))
                result["submit_to_start"] = submit_to_start(client, one, opts.latency_samples)
                gates = event_latency.gate_dir(Path(tmp))
                rows = asyncio.run(event_latency.measure(20, [100], ["grpc"], gates, info))
                result["events_100"] = {"p50": rows[0]["p50"], "p99": rows[0]["p99"]}
            stats = throughput(
                info["grpc"], info["token"], one, opts.runs, opts.clients, info["database_url"]
            )
            result[f"throughput_w{workers}"] = stats
            print(f"distributed, {workers} worker(s): {stats}", flush=True)
            client.close()
    return result


def orchestration(client: Client, opts: argparse.Namespace) -> dict[str, list[float]]:
    """Chain and fan-out wall times (one warm-up chain first)."""
    chain_job = client.create_job(chain_doc(CHAIN_LEN)).job.job_id
    fan_job = client.create_job(fanout_doc(opts.fanout)).job.job_id
    timed_run(client, chain_job)
    figures = {
        "chain": [timed_run(client, chain_job) for _ in range(opts.repeat)],
        "fanout": [timed_run(client, fan_job) for _ in range(opts.repeat)],
    }
    print(f"orchestration: {figures}", flush=True)
    return figures


def conveyor_embedded(opts: argparse.Namespace) -> dict[str, Any]:
    """Chain, fan-out and submit -> start in the embedded mode."""
    with tempfile.TemporaryDirectory() as tmp, harness.embedded(Path(tmp)) as info:
        client = Client(info["grpc"], token=info["token"])
        result: dict[str, Any] = orchestration(client, opts)
        one = client.create_job(ONE_STEP_DOC).job.job_id
        result["submit_to_start"] = submit_to_start(client, one, opts.latency_samples)
        client.close()
        return result


# --- raw Celery ----------------------------------------------------------------------------


@contextmanager
def raw_worker(broker: str) -> Iterator[Any]:
    """A raw Celery worker (4 threads) on `broker`; yields the bench.raw_celery module."""
    env = {**os.environ, "BENCH_RAW_BROKER": broker}
    worker = subprocess.Popen(
        [
            sys.executable,
            *("-m", "celery", "-A", "bench.raw_celery", "worker", "--pool=threads"),
            *("--concurrency=4", "--loglevel=WARNING", "--without-mingle", "--without-gossip"),
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["BENCH_RAW_BROKER"] = broker
    from bench import raw_celery

    raw_celery.app.conf.broker_url = broker
    raw_celery.app.conf.result_backend = broker
    try:
        raw_celery.run_true.delay().get(timeout=60)  # waits for the worker, warms it up
        yield raw_celery
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def raw_figures(opts: argparse.Namespace) -> dict[str, Any]:
    """The same workloads as a raw Celery chain, chord, one-task sends and start latency."""
    with harness.redis_database(REDIS_URL) as broker, raw_worker(broker) as raw:

        def run_chain() -> float:
            t = time.perf_counter()
            chain(*[raw.run_true.si() for _ in range(CHAIN_LEN)]).apply_async().get(timeout=600)
            return time.perf_counter() - t

        def run_fan() -> float:
            t = time.perf_counter()
            raw.run_true.si().apply_async().get(timeout=60)
            chord(group(raw.run_true.si() for _ in range(opts.fanout)))(raw.join.s()).get(
                timeout=900
            )
            return time.perf_counter() - t

        lags = []
        for _ in range(opts.latency_samples):
            before = time.time()
            lags.append(raw.started_at.delay().get(timeout=60) - before)
        began = time.perf_counter()
        pending = [raw.run_true.delay() for _ in range(opts.runs)]
        sent_s = time.perf_counter() - began
        for r in pending:
            r.get(timeout=600)
        done_s = time.perf_counter() - began
        return {
            "chain": [run_chain() for _ in range(opts.repeat)],
            "fanout": [run_fan() for _ in range(opts.repeat)],
            "submit_to_start": lags,
            "throughput": {
                "submissions_per_s": opts.runs / sent_s,
                "completions_per_s": opts.runs / done_s,
            },
        }


# --- Prefect 3 -----------------------------------------------------------------------------


def prefect_python() -> Path:
    """The benchmark's own Prefect environment, made on first use."""
    python = PREFECT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PREFECT_SPEC], check=True)
    return python


class PrefectFailed(RuntimeError):
    """The Prefect flows did not report figures (the end of their stderr is the message)."""


def prefect_or_failure(opts: argparse.Namespace, tries: int = 2) -> dict[str, Any]:
    """`prefect_figures`, tried again when the flows fail (Prefect's ephemeral server has
    answered 503 under load here); after the last try, the failure instead of figures, so
    the rest of the comparison is still written."""
    for attempt in range(1, tries + 1):
        try:
            return prefect_figures(opts)
        except PrefectFailed as failed:
            last = str(failed).strip().splitlines()[-1:] or ["no output"]
            print(f"Prefect flows failed (try {attempt} of {tries}): {last[0]}", flush=True)
    return {"error": last[0][:300]}


def prefect_figures(opts: argparse.Namespace) -> dict[str, Any]:
    """Chain and fan-out wall times from bench/prefect_flows.py, plus Prefect's version."""
    python = prefect_python()
    home = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=BENCH_DIR))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_LOGGING_LEVEL": "ERROR",
    }
    args = ["--chain", str(CHAIN_LEN), "--fanout", str(opts.fanout), "--repeat", str(opts.repeat)]
    proc = subprocess.run(
        [str(python), str(ROOT / "bench" / "prefect_flows.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise PrefectFailed(proc.stderr[-2000:])
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
    version = subprocess.run(
        [str(python), "-c", "import prefect; print(prefect.__version__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result["version"] = version.stdout.strip()
    return result


# --- CLI -----------------------------------------------------------------------------------


def cli_times(repeat: int) -> dict[str, list[float]]:
    """Wall times of the installed `conveyor` command, each in a fresh process."""
    exe = Path(sys.executable).parent / "conveyor"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "conveyor"]
    cases = {
        "help": [*base, "--help"],
        "validate": [*base, "validate", str(ROOT / "examples" / "hello.json")],
    }
    out: dict[str, list[float]] = {}
    for name, argv in cases.items():
        subprocess.run(argv, capture_output=True, check=True)  # warm the page cache
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        out[name] = times
    return out


# --- report --------------------------------------------------------------------------------


def step_ms(seconds: list[float], steps: int) -> float:
    """Median milliseconds per step."""
    return 1000 * statistics.median(seconds) / steps


def ratio(a: float, b: float) -> str:
    """a / b with two decimals ('-' when either is missing)."""
    return f"{a / b:.2f}" if a == a and b == b and b else "-"


def render(data: dict[str, Any], opts: argparse.Namespace) -> str:
    """The markdown section."""
    dist, emb, raw = data["distributed"], data.get("embedded", {}), data["raw_celery"]
    pf = data.get("prefect") or {}
    nan = float("nan")
    fan_steps = opts.fanout + 2

    def ms(side: dict[str, Any], key: str, steps: int) -> float:
        return step_ms(side[key], steps) if side.get(key) else nan

    def fmt(v: float, unit: str = "") -> str:
        return "-" if v != v else f"{v:.1f}{unit}"

    rows = []
    for label, key, steps in (
        (f"chain of {CHAIN_LEN} `true`, ms per step", "chain", CHAIN_LEN),
        (f"{opts.fanout}-way fan-out + join, ms per step", "fanout", fan_steps),
    ):
        c, e = ms(dist, key, steps), ms(emb, key, steps)
        r, p = ms(raw, key, steps), ms(pf, key, steps)
        rows.append(
            f"| {label} | {fmt(c)} | {fmt(e)} | {fmt(r)} | {fmt(p)} | {ratio(c, r)} / "
            f"{ratio(e, r)} | {ratio(p, c)} / {ratio(p, e)} |"
        )
    fan_make = statistics.median(dist["fanout"])
    raw_make = statistics.median(raw["fanout"])
    pf_make = statistics.median(pf["fanout"]) if pf.get("fanout") else nan
    emb_make = statistics.median(emb["fanout"]) if emb.get("fanout") else nan
    rows.append(
        f"| {opts.fanout}-way fan-out + join, makespan s | {fan_make:.2f} | {fmt(emb_make)} | "
        f"{raw_make:.2f} | {fmt(pf_make)} | {ratio(fan_make, raw_make)} / "
        f"{ratio(emb_make, raw_make)} | {ratio(pf_make, fan_make)} / {ratio(pf_make, emb_make)} |"
    )

    def lag(side: dict[str, Any]) -> str:
        v = [1000 * x for x in side.get("submit_to_start") or []]
        return f"{pct(v, 50):.1f} / {pct(v, 99):.1f}" if v else "-"

    rows.append(
        f"| submit -> first step start, p50 / p99 ms | {lag(dist)} | {lag(emb)} | {lag(raw)} "
        "| - | | |"
    )
    ev = dist["events_100"]
    rows.append(
        f"| status event -> 100 gRPC watchers via the gateway, p50 / p99 ms | "
        f"{ev['p50']:.1f} / {ev['p99']:.1f} | - | - | - | | |"
    )
    cron = data.get("cron") or []
    if cron:
        ms_cron = [1000 * x for x in cron]
        rows.append(
            f"| cron fire -> step start, p50 / p99 ms ({len(cron)} fires) | "
            f"{pct(ms_cron, 50):.1f} / {pct(ms_cron, 99):.1f} | - | - | - | | |"
        )
    tp = dist.get(f"throughput_w{opts.workers[0]}")
    rtp = raw["throughput"]
    rows.append(
        f"| {opts.runs} one-step runs, {opts.clients} clients, 1 worker: submissions/s, "
        f"completions/s | {tp['submissions_per_s']:.0f}, {tp['completions_per_s']:.0f} | - | "
        f"{rtp['submissions_per_s']:.0f}, {rtp['completions_per_s']:.0f} (one client) | - | | |"
    )
    cli = data["cli"]
    rows.append(
        f"| `conveyor --help`, `conveyor validate examples/hello.json`, s | "
        f"{statistics.median(cli['help']):.2f}, {statistics.median(cli['validate']):.2f} "
        "| | | | | |"
    )
    scale = [
        f"| {w} | {dist[f'throughput_w{w}']['submissions_per_s']:.0f} | "
        f"{dist[f'throughput_w{w}']['completions_per_s']:.0f} |"
        for w in opts.workers
        if f"throughput_w{w}" in dist
    ]
    load = data["load"]
    sizes = (
        f"--repeat {opts.repeat} --fanout {opts.fanout} --runs {opts.runs} --clients "
        f"{opts.clients} --latency-samples {opts.latency_samples} --fires {opts.fires}"
    )
    lines = [
        "## Side by side: Conveyor, raw Celery, Prefect 3",
        "",
        f"Measured {data['when']} by `make bench` (`python -m bench.compare {sizes}`) on "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work, Python "
        f"{platform.python_version()}, Prefect {pf.get('version', '(not run)')}; medians of "
        f"{opts.repeat} repeats after a warm-up. Load average (1, 5, 15 min) before: "
        f"{load['before']}, after: {load['after']}. Took {data['took_s'] / 60:.1f} min.",
        "",
        "Distributed: every service its own process, PostgreSQL, Redis broker and events, one"
        " worker process with 4 threads. Embedded: the `conveyor dev` suite in one process"
        " (SQLite, in-process broker and bus, 4 worker threads). Raw Celery: one worker with 4"
        " threads on the same Redis, a `chain` and a `chord`. Prefect 3: ephemeral mode (its"
        " own temporary server on SQLite), a thread pool of 4, tasks called in order (chain) or"
        " `.map` then a task waiting for all (fan-out). Every step runs `true` as a child"
        " process. Ratios: Conveyor / Celery (distributed / embedded), Prefect / Conveyor"
        " (distributed / embedded; above 1 means Conveyor is faster).",
        "",
        "| workload | Conveyor distributed | Conveyor embedded | raw Celery | Prefect 3 |"
        " Conveyor / Celery | Prefect / Conveyor |",
        "|---|---|---|---|---|---|---|",
        *rows,
        *(
            ["", f"Prefect 3 did not finish in this run (two tries): `{pf['error']}`."]
            if pf.get("error")
            else []
        ),
        "",
        "Scale-out, one-step runs through the gateway (distributed mode, worker processes of"
        " 4 threads each):",
        "",
        "| worker processes | submissions/s | completions/s |",
        "|---|---|---|",
        *scale,
        "",
        ANALYSIS,
        "",
        SCALE_OUT,
        "",
        "Raw figures: " + json.dumps(data, default=str),
    ]
    return "\n".join(lines)


ANALYSIS = """\
### What dominates

This round (2026-12-08) measured where a fan-out step's time goes against a chain step's,
on a machine about twice as fast as 2026-12-04's (`bench.translator` 0.69 s against 1.22 s):

- CPU per step summed from `/proc` (the worker with its step children, PostgreSQL), one
  run at a time in the distributed harness: a chain of 1,000 `true` steps 4.1-5.0 ms in
  the worker and 0.7-1.7 ms in PostgreSQL; a 1,000-way fan-out 9.2-12.3 ms and 3.3-4.6 ms.
  Wall per step varied between runs of the same code by a third (chain 6.1-10.2 ms, fan-out
  10.5-14.4 ms), so single runs here say little; the table's medians are of 5.
- Sampling the worker with `py-spy --gil`: a chain step hands its successor off in its own
  end's transaction, so it has no claim and no Celery message. A fan-out branch pays its
  own claim transaction (about 1.2 ms holding the GIL), Celery's consumer (1.4 ms) and the
  root's 1,000 sends (0.6 ms per step), and its end counts the join's parents.
- PostgreSQL's statement log over one fan-out (durations include lock waits): the two
  statements that take the run row's lock (the claim's `UPDATE job_runs ... event_seq`,
  2.9 ms on average, and the end's `SELECT ... FOR UPDATE`, 1.3 ms) summed 11.7 s in a
  run of 11.2 s: the four worker threads wait on one run's row most of the time. The join's
  count of its parents took 0.42 ms per branch end, the commit 0.42 ms.
- Changed: a wide join's counted edges stay a count of edges by status and the trigger rule
  decides on the counts (4.6 us a decision at 1,000 parents, against 59 us for a list of
  1,000 statuses); the upstream check of a step's template scope walks the graph only for
  the steps its templates read, and stops when it has found them (before, every step of a
  chain walked all its ancestors: 0.46 ms per step at the end of a 1,000-step chain). An
  A/B of the fan-out, old code against new, interleaved, was within the noise (13.2-13.5
  against 12.2-14.2 ms per step).
- Tried and left: a GIL switch interval of 0.5 ms in the worker (against 5 ms), to hand the
  GIL back sooner to a thread holding the run lock: no difference.

The previous round's figures (2026-12-03), CPU per unit of work, summed from `/proc` over
every process (the services, the worker, PostgreSQL, Redis), before and after that round's
changes, on the same machine and day:
chains of 100 `true` steps, 200-way fan-outs, and 1,000 one-step runs through the gateway
(8 clients, one worker process).

| ms of CPU | chain step, before | after | fan-out step, before | after | run, before | after |
|---|---:|---:|---:|---:|---:|---:|
| worker (claim, step process, end, Celery) | 12.73 | 9.10 | 23.61 | 16.46 | 17.96 | 13.91 |
| PostgreSQL | 2.00 | 2.13 | 3.79 | 3.51 | 4.15 | 5.48 |
| monitor (event stream, metrics, WatchRun) | 2.50 | 2.57 | 3.19 | 2.90 | 2.15 | 2.42 |
| gateway (token check, proxy, the watch) | 1.17 | 1.13 | 1.31 | 1.16 | 2.79 | 3.31 |
| executor (StartRun, sweeps) | 0.73 | 0.73 | 0.82 | 0.67 | 6.88 | 6.76 |
| translator (GetJob) | 0.17 | 0.13 | 0.12 | 0.10 | 3.13 | 3.74 |
| scheduler, artifacts | 0.26 | 0.23 | 0.47 | 0.32 | 0.38 | 0.33 |
| Redis | - | 0.30 | - | 0.64 | 0.70 | 0.77 |
| all | 19.6 | 16.3 | 33.3 | 25.8 | 38.1 | 36.7 |

Wall time per step on that machine: chain 16.9-17.3 -> 12.7-14.7 ms, 200-way fan-out
24.1-27.6 -> 17.5-18.9 ms ("run": a one-step run).

The worker's step transactions were SQLAlchemy's unit of work and many small statements:
the end of a chain step and the claim of its successor took 8 statements and 5.9 ms of CPU
in a loop without Celery (7.6 ms wall); a fan-out step's claim and end 12 statements. Now:

- What a transaction leaves to write at commit - changed run and step rows, new runs,
  steps and attempt rows, the outbox's events, the run feed's numbered rows, the close of
  an attempt - is written by `conveyor/executor/onewrite.py` instead of the ORM's flush:
  on PostgreSQL one statement of data-modifying CTEs whose parts each bind their rows as
  one JSON array (`json_populate_recordset`), so the text is the same for every
  transaction of a shape and psycopg converts it once (it caches no query of more than 50
  parameters; the first version, a parameter per value, spent 10 % of the worker's CPU in
  psycopg's query parser) and the server prepares it; on SQLite a statement per table and
  set of columns. Anything else (a deleted object, more than 64 rows of a kind) is left to
  the ORM, whole; a row gone fails the commit as in the ORM.
- A counted join's tally no longer flushes first (the transaction's own changes are moved
  in the tally), and StartRun no longer flushes: a small run's start is one statement.
- The statements every claim and end runs are built once with bound parameters: a
  statement built anew cost its construction and its cache key, about 0.15 ms each.

In the claim/finish loop: a chain boundary 8 -> 3 statements, 7.6 -> 2.8 ms wall, 5.9 ->
1.7 ms CPU on PostgreSQL and 3.3 -> 1.0 ms on SQLite; a fan-out step 12 -> 9 statements,
18-28 -> 6 ms wall on PostgreSQL and 5.4-7.0 -> 1.9 ms on SQLite; a one-step run's start,
claim and end 10 -> 7 statements, the start 2.6 -> 1.3 ms of CPU.

What is left per chain step is mostly not the database: the step's process (`true` through
`setpriv`, 2.5-3.5 ms, steps run as an unprivileged user when the worker is root), Python
around it in the worker (live log, heartbeats, structured logs, the event publish to
Redis), the monitor's share (about 2.4 ms per step: reading the event stream, metrics, the
watchers' WatchRun) and the gateway relaying the watch. Raw Celery runs `true` as the same
kind of child process but records nothing anyone can query, watch, retry or resume.

In the 2026-12-03 12:33 UTC run on that round's machine (loaded: load average 5.2 when it
began) Conveyor / raw Celery was 1.93 distributed and 1.64 embedded on the chain, 2.98 and
2.63 on the 1,000-way fan-out, and Prefect 3 ran 74 ms per chain step and the fan-out in
15.8 s.

This run (2026-12-08) is on a faster machine than 2026-12-04's (`bench.translator`: 0.69 s
for the 10,000-step chain against 1.22 s), quiet when it began (load average 0.0). Raw
Celery ran 2.9 ms per chain step here (6.1 on 2026-12-04), so the ratios to it are no
better than before although every Conveyor figure is lower. The distributed chain's 5
repeats spread from 8.9 to 11.8 ms per step, and Prefect's chain from 11 to 80 ms per step
(median 21.7): single figures on this shared machine move by a third or more between runs.

Met in this run: at least 3x ahead of Prefect 3 per step in the embedded mode (3.7x chain,
3.3x fan-out), ahead of it in the distributed mode too (2.1x chain, 2.5x fan-out: short of
3x); submit -> first step start p50 <= 20 ms (13.5 ms distributed, 8.6 ms embedded); CLI
cold start <= 0.3 s for `--help` (0.18 s). Not met: the ratio to raw Celery (targets 1.5,
then 1.0: 3.57 / 2.06 chain, 3.64 / 2.69 fan-out); event p99 <= 25 ms at 100 watchers
(89 ms); 500 one-step runs/s (108 submissions/s, 50 completions/s); `conveyor validate`
at 0.31 s (typer's parameter handling imports pydantic, about 0.1 s of it).
What stands in the way, in the order it would pay: the run row's lock, which every
transaction that changes a run takes to number its events, so the 4 threads of a worker
running one fan-out wait on each other (above); the worker's CPU per step outside the
database (the step's process through `setpriv`, Python around it, Celery's consumer
for every message of a fan-out or one-step run; one interpreter per worker process); the
StartRun path of a one-step run (gateway token check, GetJob, the start transaction,
publishing the events and the Celery message); PostgreSQL's CPU per one-step run; events
to many watchers, which on 2 cores queue behind each other in grpc.aio's per-message work.
The machine is shared: compare the figures of one run
only.
"""

SCALE_OUT = """\
### Running many worker machines

Workers hold no state: any number of worker processes on any machines consume the same
queues, and the table above shows how one machine's figures move with the number of worker
processes (`--workers 1,2,4` by default; the sizes actually run are in the command line
above). On these 2 cores more processes only compete for the same CPU with PostgreSQL, Redis
and the services (and submissions, not workers, are the bottleneck: about 100 StartRun/s
through the gateway), so the figures say little about a real cluster. Reasoned, not
measured, for one:

- Broker: Redis is enough while one Redis core keeps up (a few tens of thousands of
  messages/s, far above what the executor's database can record); RabbitMQ adds
  per-queue durability and flow control and is the choice when brokers must be replicated
  (quorum queues). Both are Celery transports; nothing in Conveyor depends on which.
- PostgreSQL is the limit: every step is two short transactions that lock its run's row
  (one with hand-off), plus outbox inserts. Steps of different runs do not contend; steps
  of one wide run do, on the run row.
- Connections: each worker thread holds a pooled connection; with many machines put
  PgBouncer in transaction mode in front of PostgreSQL (every unit of work is one
  transaction and uses no session state, so transaction pooling is safe), which keeps
  PostgreSQL's backends at a few dozen however many workers there are. psycopg prepares a
  statement it ran five times: use PgBouncer 1.21 or later with `max_prepared_statements`
  set, or turn preparing off (`prepare_threshold=None`; in the claim/finish loop here that
  made a one-step run's database work about 10 % slower).
- The events table (`run_events`) grows with every state change and is read by watchers by
  (run, sequence): partition it by time (monthly, for retention by dropping partitions) or
  by hash of the run id for write spread; the outbox's per-run sequence stays gap-free
  either way because it is taken under the run's row lock.
- Read traffic (GetRun, ListRuns, the dashboard) can go to a streaming replica; the
  executor's writes cannot."""


def main() -> None:
    """Run everything and write the `compare` section of docs/performance.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--fanout", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-samples", type=int)
    parser.add_argument("--fires", type=int)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--render", type=Path, help="only re-render a saved compare.json")
    opts = parser.parse_args()
    defaults = (
        {"repeat": 2, "fanout": 200, "runs": 1000, "latency_samples": 30, "fires": 20}
        if opts.quick
        else {"repeat": 5, "fanout": 1000, "runs": 10000, "latency_samples": 100, "fires": 120}
    )
    for key, value in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    opts.workers = opts.workers or [1, 2, 4]
    if opts.render:
        print(write_section("compare", render(json.loads(opts.render.read_text()), opts)))
        return
    BENCH_DIR.mkdir(exist_ok=True)
    started = time.perf_counter()
    data: dict[str, Any] = {"load": {"before": [round(x, 2) for x in os.getloadavg()]}}
    data["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("cli", lambda: cli_times(10)),
        ("distributed", lambda: conveyor_distributed(opts)),
        ("raw_celery", lambda: raw_figures(opts)),
    ]
    if not opts.skip_embedded:
        steps.append(("embedded", lambda: conveyor_embedded(opts)))
    if not opts.skip_prefect:
        steps.append(("prefect", lambda: prefect_or_failure(opts)))
    if opts.fires:
        steps.append(("cron", lambda: schedule_accuracy.measure(opts.fires)[0]))
    for name, step in steps:
        print(f"-- {name}", flush=True)
        data[name] = step()
        # What is measured so far survives a later step's crash (`--render` writes it).
        (BENCH_DIR / "compare.json").write_text(json.dumps(data, default=str, indent=1))
    data["load"]["after"] = [round(x, 2) for x in os.getloadavg()]
    data["took_s"] = time.perf_counter() - started
    (BENCH_DIR / "compare.json").write_text(json.dumps(data, default=str, indent=1))
    body = render(data, opts)
    write_section("compare", body)
    print(body)


if __name__ == "__main__":
    main()
