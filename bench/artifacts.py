"""Artifact throughput through the service vs the raw minio client, and worker memory.

Distributed mode on PostgreSQL and Redis with the S3 backend on moto's standalone server
(its own process). Measured in one run on the same moto server:

- upload and download MB/s of an N MiB artifact through the ArtifactService (client ->
  gRPC -> service -> minio -> moto), and the same bytes with the raw minio client
  (multipart, same part size);
- the worker process's resident memory while one step streams 1 GiB to stdout.

Run: `python -m bench.artifacts [--mib 256] [--step-mib 1024]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from minio import Minio

from bench.report import write_section
from conveyor.artifacts.client import ArtifactClient
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness
from tests.integration import workflows as wf

MIB = 1024 * 1024
PART = 8 * MIB
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
WRITER = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    "b = b'x' * 1048575 + b'\\n'\n"
    "for _ in range(int(sys.argv[1])): w(b)\n"
)


class _Reader:
    """A read(n) file over `total` bytes of one repeated block (no big buffer)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def read(self, size: int = -1) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return b"x" * n


def _chunks(total: int) -> Iterator[bytes]:
    block = b"x" * MIB
    for _ in range(total // MIB):
        yield block


def _moto() -> tuple[subprocess.Popen[bytes], str]:
    port = harness.free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **KEYS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("moto did not start")


def _rate(total: int, seconds: float) -> float:
    return total / MIB / seconds


def _service(address: str, total: int) -> tuple[float, float]:
    client = ArtifactClient(address)
    try:
        start = time.perf_counter()
        stored = client.upload(
            run_id="bench", node_id="n", attempt=1, kind="FILE", name="blob", chunks=_chunks(total)
        )
        up = time.perf_counter() - start
        start = time.perf_counter()
        got = sum(len(c) for c in client.download(stored.artifact_id))
        down = time.perf_counter() - start
        assert got == total
    finally:
        client.close()
    return _rate(total, up), _rate(total, down)


def _raw(endpoint: str, total: int) -> tuple[float, float]:
    client = Minio(
        endpoint.removeprefix("http://"), "bench", "bench", secure=False, region="us-east-1"
    )
    if not client.bucket_exists("raw"):
        client.make_bucket("raw")
    start = time.perf_counter()
    client.put_object(
        "raw",
        "blob",
        _Reader(total),
        length=-1,
        part_size=PART,  # type: ignore[arg-type]
        num_parallel_uploads=1,
    )
    up = time.perf_counter() - start
    start = time.perf_counter()
    response: Any = client.get_object("raw", "blob")
    got = sum(len(c) for c in response.stream(MIB))
    response.close()
    response.release_conn()
    down = time.perf_counter() - start
    assert got == total
    return _rate(total, up), _rate(total, down)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _step_rss(info: dict[str, Any], step_mib: int) -> tuple[float, float, float]:
    """(RSS before, peak RSS during, seconds) of the worker while a step prints step_mib MiB."""
    worker = next(p for p in info["procs"] if "worker" in p.args)
    client = Client(info["grpc"])
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss(worker.pid))
            time.sleep(0.02)

    try:
        job = client.create_job(
            wf.doc("bench-output", [wf.cmd("p", ["python3", "-c", WRITER, str(step_mib)])], [])
        ).job
        before = _rss(worker.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        run = client.start_run(job.job_id, {})
        for _ in client.watch(run.run_id):
            pass
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        assert client.get_run(run.run_id).state == run_pb2.RUN_STATE_SUCCEEDED
    finally:
        client.close()
    return before / MIB, peak[0] / MIB, seconds


def main() -> None:
    """Measure and write the section into docs/performance.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256, help="Artifact size for throughput.")
    parser.add_argument("--step-mib", type=int, default=1024, help="Step output for RSS.")
    opts = parser.parse_args()
    moto, endpoint = _moto()
    try:
        env = {"CONVEYOR_ARTIFACTS_URL": f"s3://bench?endpoint={endpoint}", **KEYS}
        with (
            tempfile.TemporaryDirectory() as tmp,
            harness.distributed(Path(tmp), POSTGRES_URL, REDIS_URL, extra_env=env) as info,
        ):
            total = opts.mib * MIB
            raw_up, raw_down = _raw(endpoint, total)
            svc_up, svc_down = _service(info["artifacts"], total)
            before, peak, seconds = _step_rss(info, opts.step_mib)
    finally:
        moto.terminate()
        moto.wait()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""
## Artifacts: throughput and worker memory

`python -m bench.artifacts --mib {opts.mib} --step-mib {opts.step_mib}` ({when},
{platform.machine()}, {os.cpu_count()} CPUs shared with other work; distributed mode, S3
backend on moto's standalone server, which keeps objects in its own memory — a real S3 or
MinIO has different absolute figures). One {opts.mib} MiB object, the same moto server:

| MB/s | upload | download |
|---|---|---|
| raw `minio` client (8 MiB parts, one in flight) | {raw_up:.0f} | {raw_down:.0f} |
| through the ArtifactService (gRPC → service → minio) | {svc_up:.0f} | {svc_down:.0f} |

A step printing {opts.step_mib} MiB to stdout (streamed to the artifact service while it
runs) took {seconds:.1f} s end to end; the worker process's resident memory was
{before:.0f} MiB before and at most {peak:.0f} MiB during the step (sampled every 20 ms).
"""
    print(write_section("artifacts", body))


if __name__ == "__main__":
    main()
