"""Declared files (`data.artifacts`): uploaded after the step, nested paths, empty globs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor.artifacts.client import ArtifactClient
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.integration import harness
from tests.integration import workflows as wf

MAKE_FILES = (
    "mkdir -p out nested/x/y && printf a > out/a.txt && printf bb > out/b.txt"
    " && printf deep > nested/x/y/deep.bin && printf '<html/>' > report.html"
    " && printf skip > out/c.log"
)


def test_declared_files_are_uploaded(stack: dict[str, Any], client: Client, tmp_path: Path) -> None:
    document = wf.doc(
        "declared-files",
        [
            {
                "id": "build",
                "type": "action.command",
                "data": {
                    "command": MAKE_FILES,
                    "shell": True,
                    "cwd": "{{ params.dir }}",  # relative to the attempt's working directory
                    "artifacts": ["out/*.txt", "nested/**/*.bin", "missing/*.zip", "report.html"],
                },
            }
        ],
        [],
        parameters={"type": "object", "properties": {"dir": {"type": "string"}}},
    )
    job = client.create_job(document).job
    run = client.start_run(job.job_id, {"dir": "work"})
    for _ in client.watch(run.run_id):
        pass
    done = client.get_run(run.run_id)
    assert done.state == run_pb2.RUN_STATE_SUCCEEDED, done
    outputs = json.loads(done.steps[0].outputs_json)
    assert outputs["artifact_warnings"] == ["pattern 'missing/*.zip' matched no file"]
    artifacts = ArtifactClient(stack["grpc"], channel=harness.grpc_channel(stack))
    try:
        found = {a.name: a for a in artifacts.list(run.run_id, node_id="build")}
        assert set(found) == {"out/a.txt", "out/b.txt", "nested/x/y/deep.bin", "report.html"}
        contents = {name: b"".join(artifacts.download(a.artifact_id)) for name, a in found.items()}
    finally:
        artifacts.close()
    assert contents == {
        "out/a.txt": b"a",
        "out/b.txt": b"bb",
        "nested/x/y/deep.bin": b"deep",
        "report.html": b"<html/>",
    }
    assert found["report.html"].content_type == "text/html"
    assert sorted(a["name"] for a in outputs["artifacts"]) == sorted(found)
