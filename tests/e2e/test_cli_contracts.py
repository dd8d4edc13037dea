"""What a new user meets at the CLI: versions, node counts, parameter typos, messages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cli.client import Client
from tests.integration import harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLI = [sys.executable, "-m", "conveyor"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with harness.embedded(tmp_path_factory.mktemp("cli")) as addresses:
        yield dict(addresses)


def cli(stack: dict[str, Any], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_ADDR": stack["grpc"]}
    env.update({"CONVEYOR_TOKEN": stack["token"]} if stack.get("token") else {})
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_unchanged_document_makes_no_new_version(stack: dict[str, Any]) -> None:
    text = (EXAMPLES / "hello.json").read_text()
    client = Client(stack["grpc"], **({"token": stack["token"]} if stack.get("token") else {}))
    try:
        first = client.create_job(text)
        again = client.create_job(text)
        changed = client.create_job(text.replace('"name": "hello"', '"name": "hello"', 1) + " ")
        assert again.job.version == first.job.version
        assert not again.version_created
        # Whitespace is not content: the parsed document is what is compared.
        assert not changed.version_created
        edited = text.replace("hello, ", "hi, ", 1)
        assert edited != text
        newer = client.create_job(edited)
        assert newer.version_created
        assert newer.job.version == first.job.version + 1
    finally:
        client.close()


def test_jobs_list_counts_nodes(stack: dict[str, Any], tmp_path: Path) -> None:
    client = Client(stack["grpc"], **({"token": stack["token"]} if stack.get("token") else {}))
    try:
        saved = client.create_job((EXAMPLES / "hello.json").read_text())
    finally:
        client.close()
    proc = cli(stack, "jobs", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.endswith(" hello"))
    assert f"{saved.job.node_count} nodes" in line
    assert saved.job.node_count == 8


def test_unknown_parameter_is_refused(stack: dict[str, Any], tmp_path: Path) -> None:
    proc = cli(stack, "run", str(EXAMPLES / "hello.json"), "--param", "nme=x", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown parameter 'nme'" in proc.stderr
    assert "/parameters/nme" in proc.stderr


def test_logs_of_an_unknown_node_is_an_error(stack: dict[str, Any], tmp_path: Path) -> None:
    run = cli(stack, "run", str(EXAMPLES / "hello.json"), "--output", "json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    run_id = run.stdout.split('"run_id": "', 1)[1].split('"', 1)[0]
    proc = cli(stack, "runs", "logs", run_id, "no-such-node", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no node 'no-such-node'" in proc.stderr
    assert "greet" in proc.stderr
    ok = cli(stack, "runs", "logs", run_id, "greet", cwd=tmp_path)
    assert ok.returncode == 0
    assert "hello" in ok.stdout


def test_runs_list_has_a_header(stack: dict[str, Any], tmp_path: Path) -> None:
    assert cli(stack, "run", str(EXAMPLES / "hello.json"), cwd=tmp_path).returncode == 0
    proc = cli(stack, "runs", "list", cwd=tmp_path)
    assert proc.returncode == 0
    header = proc.stdout.splitlines()[0].split()
    assert header == ["RUN", "CREATED", "STATE", "JOB"]


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(tmp_path / "data")}
    env.pop("CONVEYOR_DATABASE_URL", None)

    def migrate() -> str:
        proc = subprocess.run(
            [*CLI, "migrate"], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        return proc.stderr

    assert "created the database schema" in migrate()
    assert "database is up to date" in migrate()


def test_embedded_run_prints_no_library_warnings(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CLI, "run", str(EXAMPLES / "hello.json"), "--embedded"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "No hostname was supplied" not in proc.stderr
    assert "warning" not in proc.stderr.lower()
