"""Workflow documents used by the integration tests."""

from __future__ import annotations

import json
from typing import Any


def doc(
    name: str,
    nodes: list[dict[str, Any]],
    edges: list[tuple[str, str] | tuple[str, str, str]],
    parameters: dict[str, Any] | None = None,
) -> str:
    """A workflow document as JSON text."""
    return json.dumps(
        {
            "schema": "conveyor/v1",
            "name": name,
            "parameters": parameters or {"type": "object", "properties": {}},
            "nodes": [{"position": {"x": 0, "y": 0}, **n} for n in nodes],
            "edges": [
                {
                    "id": f"e{i}",
                    "source": e[0],
                    "target": e[1],
                    **({"sourceHandle": e[2]} if len(e) == 3 else {}),
                }
                for i, e in enumerate(edges)
            ],
        }
    )


def cmd(node_id: str, argv: list[str], **data: Any) -> dict[str, Any]:
    """An action.command node."""
    return {"id": node_id, "type": "action.command", "data": {"argv": argv, **data}}


OUTPUT_PASSING = doc(
    "it-output-passing",
    [
        cmd(
            "produce",
            ["python3", "-c", "import json; print(json.dumps({'n': 41, 'who': 'ops'}))"],
            output="json",
        ),
        cmd(
            "consume",
            [
                "python3",
                "-c",
                "import sys; print(int(sys.argv[1]) + 1, sys.argv[2])",
                "{{ steps.produce.output.n }}",
                "{{ steps.produce.output.who }}",
            ],
        ),
        cmd("lines", ["printf", "a\\nb\\nc\\n"], output="lines"),
    ],
    [("produce", "consume"), ("consume", "lines")],
)

CONDITION_JOIN = doc(
    "it-condition-join",
    [
        cmd("check", ["sh", "-c", "exit 0"]),
        {
            "id": "ok",
            "type": "logic.condition",
            "data": {"expression": "steps.check.exit_code == 0"},
        },
        cmd("yes", ["echo", "taken"]),
        cmd("no", ["echo", "not taken"]),
        cmd("join", ["echo", "joined"]),
    ],
    [
        ("check", "ok"),
        ("ok", "yes", "true"),
        ("ok", "no", "false"),
        ("yes", "join"),
        ("no", "join"),
    ],
)

FAILING = doc(
    "it-failing",
    [
        cmd("good", ["true"]),
        cmd("bad", ["sh", "-c", "echo boom >&2; exit 3"]),
        cmd("after", ["echo", "never"]),
    ],
    [("good", "bad"), ("bad", "after")],
)

TIMEOUT = doc(
    "it-timeout",
    [
        cmd(
            "slow",
            ["sh", "-c", 'sleep 30 & echo $! > "$PIDFILE"; wait'],
            timeout_s=1,
            env={"PIDFILE": "{{ params.pidfile }}"},
        )
    ],
    [],
    parameters={
        "type": "object",
        "properties": {"pidfile": {"type": "string"}},
        "required": ["pidfile"],
    },
)

INJECTION = doc(
    "it-injection",
    [
        cmd("argv", ["echo", "{{ params.text }}"]),
        {"id": "split", "type": "action.command", "data": {"command": "echo {{ params.text }}"}},
        {
            "id": "shell",
            "type": "action.command",
            "data": {"command": "echo {{ params.text }}", "shell": True},
        },
    ],
    [],
    parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
)

SLEEPER = doc(
    "it-sleeper",
    [cmd("nap", ["sleep", "30"]), cmd("after", ["echo", "after"])],
    [("nap", "after")],
)

CHATTY = doc(
    "it-chatty",
    [cmd(f"s{i}", ["true"]) for i in range(12)],
    [(f"s{i}", f"s{i + 1}") for i in range(11)],
)

INVALID = json.dumps(
    {
        "schema": "conveyor/v1",
        "name": "it-invalid",
        "nodes": [
            {"id": "a", "type": "action.command", "data": {"argv": ["true"]}},
            {"id": "a", "type": "action.command", "data": {"argv": ["true"]}},
            {"id": "b", "type": "action.teleport", "data": {}},
            {
                "id": "c",
                "type": "action.command",
                "data": {"argv": ["echo", "{{ steps.nowhere.output }}"]},
            },
        ],
        "edges": [{"id": "dangling", "source": "a", "target": "ghost"}],
    }
)
