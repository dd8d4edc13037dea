"""Commands that need no server start without loading the RPC, broker or database stacks."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import main

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("grpc", "celery", "sqlalchemy", "kombu", "redis", "google.protobuf")

PROBE = """
import json, runpy, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["conveyor", *json.loads(sys.argv[1])]
code = None
try:
    runpy.run_module("conveyor", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("\\nLOADED " + json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def loaded_after(*args: str) -> dict[str, object]:
    """Run `conveyor ARGS` in a fresh interpreter; its exit code and the heavy modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED "))
    result: dict[str, object] = json.loads(line.removeprefix("LOADED "))
    return result


@pytest.mark.parametrize(
    "args", [["--help"], ["validate", "examples/hello.json"], ["validate", "--help"]]
)
def test_offline_commands_load_no_rpc_broker_or_database(args: list[str]) -> None:
    assert loaded_after(*args) == {"code": 0, "heavy": []}


def test_a_group_loads_its_rpc_stack_only_when_invoked() -> None:
    # The probe does see what a command loads: a group's help imports the group's module.
    found = loaded_after("runs", "--help")
    assert found["code"] == 0
    assert "grpc" in found["heavy"]  # type: ignore[operator]


def test_root_help_lists_every_group_with_its_own_help() -> None:
    for name, module, attr, help_text in main.GROUPS:
        group = getattr(importlib.import_module(module), attr)
        assert group.info.help == help_text, name
    shown = CliRunner().invoke(main.app, ["--help"], terminal_width=200).output
    for name, _module, _attr, help_text in main.GROUPS:
        assert name in shown
        assert help_text in shown


def test_a_lazy_group_parses_and_runs_its_commands() -> None:
    shown = CliRunner().invoke(main.app, ["runs", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "List recent runs." in shown.output
    wrong = CliRunner().invoke(main.app, ["runs", "list", "--state", "nope"])
    assert wrong.exit_code == 2  # the group's own option parsing and validation ran
