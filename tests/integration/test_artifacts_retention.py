"""Retention (with a run still going), dry run, archive-before-delete, export and import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from conveyor.artifacts.client import ArtifactClient, kind_name
from conveyor.artifacts.v1 import artifacts_service_pb2
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.integration import harness
from tests.integration import workflows as wf

# 100 KiB of output: more than the inline cap, so each run has a STDOUT artifact.
PRINT = "import sys; sys.stdout.write('x' * 102400)"
WAIT = (
    "import os, sys, time\n"
    "deadline = time.time() + 90\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < deadline: time.sleep(0.05)\n"
)


def ended(client: Client, run_id: str) -> run_pb2.Run:
    for _ in client.watch(run_id):
        pass
    return client.get_run(run_id)


def history(client: Client, run_id: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(e) for e in client.watch(run_id, history_only=True)]


def cli(stack: dict[str, Any], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", *args, "--server", stack["grpc"]],
        capture_output=True,
        env={**os.environ, "CONVEYOR_TOKEN": stack["token"]},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done


def test_retention_export_import(stack: dict[str, Any], client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job_a = client.create_job(
        wf.doc(
            f"keep-two-{stack['mode']}",
            [
                wf.cmd("p", ["python3", "-c", PRINT]),
                wf.cmd("w", ["python3", "-c", WAIT, "{{ params.gate }}"]),
            ],
            [("p", "w")],
            parameters={"type": "object", "properties": {"gate": {"type": "string"}}},
        )
    ).job
    job_b = client.create_job(
        wf.doc(f"untouched-{stack['mode']}", [wf.cmd("p", ["python3", "-c", PRINT])], [])
    ).job
    gate.touch()
    old = [
        ended(client, client.start_run(job_a.job_id, {"gate": str(gate)}).run_id) for _ in range(3)
    ]
    other = ended(client, client.start_run(job_b.job_id, {}).run_id)
    assert all(r.state == run_pb2.RUN_STATE_SUCCEEDED for r in [*old, other])
    # A run still going: the newest of job A, it must survive every sweep.
    going = client.start_run(job_a.job_id, {"gate": str(tmp_path / "later")})
    expired = [r.run_id for r in old[:2]]
    before = {
        r: (json_format.MessageToDict(client.get_run(r)), history(client, r)) for r in expired
    }

    artifacts = ArtifactClient(stack["grpc"], channel=harness.grpc_channel(stack))
    try:
        cli(stack, "retention", "set", "--job", job_a.job_id, "--keep-last", "2", "--archive")
        listed = json.loads(cli(stack, "retention", "list").stdout)
        assert [(p["job_id"], p["keep_last_runs"], p["archive"]) for p in listed] == [
            (job_a.job_id, 2, True)
        ]
        dry = json.loads(cli(stack, "retention", "sweep", "--dry-run").stdout)
        assert (dry["dry_run"], sorted(dry["run_ids"]), dry["artifacts"]) == (
            True,
            sorted(expired),
            2,
        )
        assert client.get_run(expired[0]).run_id == expired[0]  # nothing deleted

        export = tmp_path / "runs.jsonl"
        cli(stack, "runs", "export", "--job", job_a.job_id, "-o", str(export))
        exported = {
            json.loads(line)["row"].get("id")
            for line in export.read_text().splitlines()
            if json.loads(line)["table"] == "job_runs"
        }
        assert exported == {r.run_id for r in old}

        swept = json.loads(cli(stack, "retention", "sweep").stdout)
        assert sorted(swept["run_ids"]) == sorted(expired)
        assert (swept["archived"], swept["artifacts"]) == (2, 2)
        for run_id in expired:
            with pytest.raises(grpc.RpcError) as gone:
                client.get_run(run_id)
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            with pytest.raises(grpc.RpcError) as no_events:
                history(client, run_id)
            assert no_events.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            (archive,) = list(artifacts.list(run_id))
            assert kind_name(archive.kind) == "ARCHIVE"
            lines = b"".join(artifacts.download(archive.artifact_id)).decode().splitlines()
            tables = {json.loads(line)["table"] for line in lines}
            assert tables >= {
                "job_runs",
                "job_run_steps",
                "job_executions",
                "run_events",
                "job_artifacts",
            }
        # Everything else is still there, the running run included.
        for kept in (old[2].run_id, other.run_id):
            assert client.get_run(kept).state == run_pb2.RUN_STATE_SUCCEEDED
            assert [kind_name(a.kind) for a in artifacts.list(kept)] == ["STDOUT"]
        assert client.get_run(going.run_id).state == run_pb2.RUN_STATE_RUNNING
        again = json.loads(cli(stack, "retention", "sweep").stdout)
        assert again["run_ids"] == []

        first = json.loads(cli(stack, "runs", "import", str(export)).stdout)
        assert (first["imported_runs"], first["skipped_runs"]) == (2, 1)
        for run_id, (run, events) in before.items():
            assert json_format.MessageToDict(client.get_run(run_id)) == run
            assert history(client, run_id) == events
        second = json.loads(cli(stack, "runs", "import", str(export)).stdout)
        assert (second["imported_runs"], second["skipped_runs"], second["events"]) == (0, 3, 0)
    finally:
        (tmp_path / "later").touch()
        artifacts.stub.DeleteRetentionPolicy(
            artifacts_service_pb2.DeleteRetentionPolicyRequest(job_id=job_a.job_id)
        )
        artifacts.close()
    assert ended(client, going.run_id).state == run_pb2.RUN_STATE_SUCCEEDED
