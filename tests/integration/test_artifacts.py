"""Step output in the artifact service, in the embedded and the distributed mode.

A step writes 200 MiB to stdout: the run completes while the worker's memory stays far
below the output size, the head is inline, and the artifact downloads byte-identical over
gRPC and HTTP (with byte ranges). Bad requests get clear errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest

from conveyor.artifacts.client import ArtifactClient
from conveyor.artifacts.v1 import artifact_pb2, artifacts_service_pb2
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.grpcserver import error_details
from tests.integration import harness
from tests.integration import workflows as wf

MIB = 1024 * 1024
BLOCKS = 200
# Block i is 1 MiB: the 8-digit block number repeated, ending in a newline.
WRITER = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    "for i in range(int(sys.argv[1])):\n"
    "    w((b'%08d' % i) * (1048576 // 8 - 1) + b'1234567\\n')\n"
)
# The bound for the worker's memory growth while the step streams 200 MiB. In the embedded
# mode the measured process also hosts the artifact service (with S3, one multipart part of
# 8 MiB being assembled and sent), so its bound is larger; both are far below the output.
RSS_LIMIT = {"distributed": 64 * MIB, "embedded": 96 * MIB}


def _direct(stack: dict[str, Any]) -> ArtifactClient:
    """The artifact service itself (not through the gateway), as an internal caller."""
    return ArtifactClient(
        stack["artifacts"], channel=harness.internal_channel(stack, stack["artifacts"])
    )


def block(i: int) -> bytes:
    return (b"%08d" % i) * (MIB // 8 - 1) + b"1234567\n"


def expected_sha(blocks: int) -> str:
    digest = hashlib.sha256()
    for i in range(blocks):
        digest.update(block(i))
    return digest.hexdigest()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class RssSampler(threading.Thread):
    """The highest resident set size of a process seen while running (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.start_rss, self.peak = pid, rss(pid), 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def growth(self) -> int:
        self.halt.set()
        self.join()
        return self.peak - self.start_rss


def worker_pid(stack: dict[str, Any]) -> int:
    if stack["mode"] == "embedded":
        return os.getpid()
    procs = [p for p in stack["procs"] if "worker" in p.args]
    return int(procs[0].pid)


def run_to_end(client: Client, document: str, params: dict[str, Any] | None = None) -> Any:
    job = client.create_job(document).job
    run = client.start_run(job.job_id, params or {})
    for _ in client.watch(run.run_id):
        pass
    return client.get_run(run.run_id)


def artifacts_client(stack: dict[str, Any]) -> Iterator[ArtifactClient]:
    c = ArtifactClient(stack["grpc"], channel=harness.grpc_channel(stack))
    yield c
    c.close()


@pytest.fixture
def artifacts(stack: dict[str, Any]) -> Iterator[ArtifactClient]:
    yield from artifacts_client(stack)


@pytest.fixture(scope="module")
def big_run(stack: dict[str, Any]) -> dict[str, Any]:
    """One run whose step printed 200 MiB, with the worker's memory growth meanwhile."""
    client = Client(stack["grpc"], token=stack["token"])
    sampler = RssSampler(worker_pid(stack))
    sampler.start()
    try:
        done = run_to_end(
            client,
            wf.doc("big-output", [wf.cmd("p", ["python3", "-c", WRITER, str(BLOCKS)])], []),
        )
    finally:
        growth = sampler.growth()
        client.close()
    return {"run": done, "rss_growth": growth, "rss_limit": RSS_LIMIT[stack["mode"]]}


def test_big_output_streams_with_bounded_worker_memory(
    big_run: dict[str, Any], artifacts: ArtifactClient
) -> None:
    run = big_run["run"]
    assert run.state == run_pb2.RUN_STATE_SUCCEEDED
    assert big_run["rss_growth"] < big_run["rss_limit"], big_run["rss_growth"]
    step = run.steps[0]
    assert step.stdout_uri.startswith("artifact://")
    found = list(artifacts.list(run.run_id, node_id="p"))
    assert [(a.kind, a.name, a.attempt) for a in found] == [
        (artifact_pb2.ARTIFACT_KIND_STDOUT, "stdout", 1)
    ]
    artifact = found[0]
    assert step.stdout_uri == f"artifact://{artifact.artifact_id}"
    assert artifact.size_bytes == BLOCKS * MIB
    want = expected_sha(BLOCKS)
    assert artifact.sha256 == want
    digest = hashlib.sha256()
    size = 0
    for chunk in artifacts.download(artifact.artifact_id, run_id=run.run_id):
        digest.update(chunk)
        size += len(chunk)
    assert (size, digest.hexdigest()) == (BLOCKS * MIB, want)


def test_head_is_inline(big_run: dict[str, Any], client: Client) -> None:
    run = client.get_run(big_run["run"].run_id)
    outputs = json.loads(run.steps[0].outputs_json)
    assert outputs["stdout_truncated"] is True
    head = block(0)[: 64 * 1024].decode()
    assert outputs["stdout"].startswith(head)
    assert f"full {BLOCKS * MIB} bytes in artifact stdout" in outputs["stdout"]


def test_http_list_and_ranged_download(big_run: dict[str, Any], stack: dict[str, Any]) -> None:
    run_id = big_run["run"].run_id
    auth = harness.http_headers(stack)
    anonymous = httpx.get(f"{stack['http']}/v1/runs/{run_id}/artifacts", timeout=30)
    assert anonymous.status_code == 401
    listed = httpx.get(
        f"{stack['http']}/v1/runs/{run_id}/artifacts", headers=auth, timeout=30
    ).json()
    (artifact,) = listed["artifacts"]
    url = f"{stack['http']}/v1/runs/{run_id}/artifacts/{artifact['artifact_id']}/content"
    start = 5 * MIB - 3
    assert httpx.get(url, headers={"Range": "bytes=0-9"}, timeout=30).status_code == 401
    got = httpx.get(url, headers={"Range": f"bytes={start}-{start + 9}", **auth}, timeout=30)
    assert got.status_code == 206
    assert got.headers["content-range"] == f"bytes {start}-{start + 9}/{BLOCKS * MIB}"
    assert got.content == (block(4) + block(5))[MIB - 3 : MIB + 7]
    tail = httpx.get(url, headers={"Range": "bytes=-8", **auth}, timeout=30)
    assert (tail.status_code, tail.content) == (206, b"1234567\n")
    past = httpx.get(url, headers={"Range": f"bytes={BLOCKS * MIB}-", **auth}, timeout=30)
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{BLOCKS * MIB}"
    digest = hashlib.sha256()
    with httpx.stream("GET", url, headers=auth, timeout=120) as whole:
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(BLOCKS * MIB)
        for chunk in whole.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == artifact["sha256"]


def test_cli_lists_and_gets(big_run: dict[str, Any], stack: dict[str, Any], tmp_path: Any) -> None:
    run_id = big_run["run"].run_id
    cli = [sys.executable, "-m", "conveyor"]
    listed = subprocess.run(
        [
            *cli,
            "artifacts",
            "list",
            run_id,
            "--node",
            "p",
            "--output",
            "json",
            "--server",
            stack["grpc"],
        ],
        capture_output=True,
        env={**os.environ, "CONVEYOR_TOKEN": stack["token"]},
        check=True,
        timeout=60,
    )
    (item,) = json.loads(listed.stdout)
    assert set(item) >= {
        "artifact_id",
        "node_id",
        "attempt",
        "kind",
        "name",
        "size_bytes",
        "sha256",
        "content_type",
    }
    assert (item["node_id"], item["kind"], item["size_bytes"]) == ("p", "STDOUT", BLOCKS * MIB)
    target = tmp_path / "stdout.bin"
    subprocess.run(
        [
            *cli,
            "artifacts",
            "get",
            item["artifact_id"],
            "-o",
            str(target),
            "--server",
            stack["grpc"],
        ],
        capture_output=True,
        env={**os.environ, "CONVEYOR_TOKEN": stack["token"]},
        check=True,
        timeout=120,
    )
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == item["sha256"]


def test_runs_logs_prints_past_the_live_cap(stack: dict[str, Any], client: Client) -> None:
    # 12 MiB: more than the 8 MiB live-log cap.
    blocks = 12
    run = run_to_end(
        client, wf.doc("logs-past-cap", [wf.cmd("p", ["python3", "-c", WRITER, str(blocks)])], [])
    )
    assert run.state == run_pb2.RUN_STATE_SUCCEEDED
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "runs",
            "logs",
            run.run_id,
            "p",
            "--server",
            stack["grpc"],
        ],
        capture_output=True,
        env={**os.environ, "CONVEYOR_TOKEN": stack["token"]},
        check=True,
        timeout=120,
    )
    assert len(shown.stdout) == blocks * MIB
    assert hashlib.sha256(shown.stdout).hexdigest() == expected_sha(blocks)


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    return err.code(), error_details(err)[0]  # type: ignore[attr-defined]


def test_bad_requests(
    big_run: dict[str, Any], artifacts: ArtifactClient, stack: dict[str, Any]
) -> None:
    run = big_run["run"]
    (artifact,) = list(artifacts.list(run.run_id))
    assert _code(lambda: artifacts.get("0" * 32))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: artifacts.get(artifact.artifact_id, run_id="other"))[0] == (
        grpc.StatusCode.NOT_FOUND
    )
    past = _code(lambda: list(artifacts.download(artifact.artifact_id, offset=BLOCKS * MIB)))
    assert past == (grpc.StatusCode.INVALID_ARGUMENT, "RANGE_NOT_SATISFIABLE")
    other = httpx.get(
        f"{stack['http']}/v1/runs/other/artifacts/{artifact.artifact_id}/content",
        headers=harness.http_headers(stack),
        timeout=30,
    )
    assert other.status_code == 404
    # Uploads are internal: the public gateway does not serve them at all.
    assert (
        _code(
            lambda: artifacts.upload(
                run_id="r", node_id="n", attempt=1, kind="FILE", name="x", chunks=[b"x"]
            )
        )[0]
        == grpc.StatusCode.UNIMPLEMENTED
    )


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd", "a/../../b", "bad\x00name", "line\nbreak", "", "a//b"]
)
def test_upload_refuses_bad_names(stack: dict[str, Any], name: str) -> None:
    direct = ArtifactClient(
        stack["artifacts"], channel=harness.internal_channel(stack, stack["artifacts"])
    )
    try:
        code, reason = _code(
            lambda: direct.upload(
                run_id="r1", node_id="n1", attempt=1, kind="FILE", name=name, chunks=[b"data"]
            )
        )
    finally:
        direct.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert reason == "INVALID_ARGUMENT"


def test_direct_upload_roundtrip_and_delete(stack: dict[str, Any]) -> None:
    direct = ArtifactClient(
        stack["artifacts"], channel=harness.internal_channel(stack, stack["artifacts"])
    )
    try:
        stored = direct.upload(
            run_id="r-up",
            node_id="n1",
            attempt=2,
            kind="FILE",
            name="out/report.html",
            chunks=[b"<html>", b"</html>"],
            content_type="text/html",
        )
        assert stored.storage_key.startswith("runs/r-up/n1/2/")
        assert "report" not in stored.storage_key
        assert b"".join(direct.download(stored.artifact_id, offset=6, length=3)) == b"</h"
        direct.stub.DeleteArtifact(
            artifacts_service_pb2.DeleteArtifactRequest(artifact_id=stored.artifact_id)
        )
        assert _code(lambda: direct.get(stored.artifact_id))[0] == grpc.StatusCode.NOT_FOUND
    finally:
        direct.close()


def test_list_pages_with_opaque_tokens(stack: dict[str, Any]) -> None:
    direct = ArtifactClient(
        stack["artifacts"], channel=harness.internal_channel(stack, stack["artifacts"])
    )
    try:
        names = [f"f{i}.txt" for i in range(5)]
        for name in names:
            direct.upload(
                run_id="r-pages",
                node_id="n",
                attempt=1,
                kind="FILE",
                name=name,
                chunks=[name.encode()],
            )
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            reply = direct.stub.ListArtifacts(
                artifacts_service_pb2.ListArtifactsRequest(
                    run_id="r-pages", page_size=2, page_token=token
                )
            )
            seen += [a.name for a in reply.artifacts]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert (seen, pages) == (names, 3)
        code, _ = _code(
            lambda: direct.stub.ListArtifacts(
                artifacts_service_pb2.ListArtifactsRequest(run_id="r-pages", page_token="nope!")
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        direct.close()


def test_upload_needs_one_header_first(stack: dict[str, Any]) -> None:
    direct = ArtifactClient(
        stack["artifacts"], channel=harness.internal_channel(stack, stack["artifacts"])
    )
    header = artifacts_service_pb2.UploadHeader(
        run_id="r", node_id="n", attempt=1, kind=artifact_pb2.ARTIFACT_KIND_FILE, name="x"
    )
    try:
        data_first = [artifacts_service_pb2.UploadArtifactRequest(data=b"x")]
        twice = [artifacts_service_pb2.UploadArtifactRequest(header=header)] * 2
        for messages in (data_first, twice):
            code, _ = _code(lambda m=messages: direct.stub.UploadArtifact(iter(m)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        direct.close()
