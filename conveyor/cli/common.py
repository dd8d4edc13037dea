"""What every command shares and that imports no RPC machinery: consoles, exit codes,
options, reading a file, printing a translator's diagnostics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)

DEFAULT_ADDR = "127.0.0.1:50051"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", envvar="CONVEYOR_ADDR", help="Gateway address (default: local conveyor dev)."
    ),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def read_file(path: Path) -> str:
    """A file's text; a missing or unreadable file ends the command (exit 2)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"error: cannot read {path}: {exc}", markup=False)
        raise typer.Exit(EXIT_INVALID) from exc


def print_diagnostics(diagnostics: list[Any], as_json: bool) -> None:
    """The translator's diagnostics, as JSON on stdout or as lines on stderr."""
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "code": d.code,
                        "severity": d.severity,
                        "node_id": d.node_id,
                        "edge_id": d.edge_id,
                        "path": d.path,
                        "message": d.message,
                        "line": d.line,
                        "column": d.column,
                    }
                    for d in diagnostics
                ]
            )
        )
        return
    for d in diagnostics:
        where = (
            f"node {d.node_id!r}"
            if d.node_id
            else (f"edge {d.edge_id!r}" if d.edge_id else "document")
        )
        pos = f" (line {d.line}, column {d.column})" if d.line else ""
        err.print(
            f"{d.severity}: {d.code} at {d.path or '/'} [{where}]{pos}: {d.message}", markup=False
        )
