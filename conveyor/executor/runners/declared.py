"""Declared files: after a step ends, upload what its ``data.artifacts`` patterns match.

Patterns are globs relative to the step's working directory (``**`` matches folders at
any depth); each matching regular file is uploaded as a FILE artifact named by its path
relative to that directory. A pattern that matches nothing is a warning on the step, not a
failure; a match that resolves outside the working directory (through a symlink) is skipped
with a warning. Files are streamed in 1 MiB chunks, never read whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from conveyor.executor.runners.base import (
    ErrorCategory,
    StepContext,
    StepOutcome,
)
from conveyor.shared.artifact_names import name_problem

log = structlog.get_logger(__name__)

CHUNK = 1024 * 1024


def find_files(root: Path, patterns: list[str], *, limit: int) -> tuple[list[Path], list[str]]:
    """Files under `root` matching `patterns` (in order, each once) and the warnings."""
    found: dict[Path, None] = {}
    warnings: list[str] = []
    for pattern in patterns:
        problem = name_problem(pattern)
        if problem is not None:  # the translator refuses these; a stale plan may not have
            warnings.append(f"pattern {pattern!r} {problem}; skipped")
            continue
        matched = 0
        for path in sorted(root.glob(pattern)):
            if not path.is_file():
                continue
            real = path.resolve()
            if not real.is_relative_to(root):
                warnings.append(f"{path.relative_to(root).as_posix()} leaves the working directory")
                continue
            matched += 1
            if path not in found and len(found) >= limit:
                warnings.append(f"more than {limit} files declared; the rest are not uploaded")
                return list(found), warnings
            found.setdefault(path, None)
        if matched == 0:
            warnings.append(f"pattern {pattern!r} matched no file")
    return list(found), warnings


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            yield block


def upload_declared(
    node: Mapping[str, Any], ctx: StepContext, outcome: StepOutcome, *, root: Path
) -> StepOutcome:
    """Upload the node's declared files under `root` (the step's working directory, while it
    still exists); the outcome gains their records and any warnings.

    A failed upload fails the step (category INFRA): the files it promised are missing.
    """
    patterns = (node.get("data") or {}).get("artifacts")
    if not patterns or not isinstance(patterns, list):
        return outcome
    root = root.resolve()
    files, warnings = find_files(root, [str(p) for p in patterns], limit=ctx.max_declared_files)
    records: list[dict[str, Any]] = []
    for path in files:
        name = path.relative_to(root).as_posix()
        writer = ctx.artifacts.open(ctx.run_id, ctx.node_id, ctx.attempt, name, kind="FILE")
        try:
            for block in _read(path):
                writer.write(block)
            records.append(writer.close())
        except Exception as exc:
            writer.abort()
            outputs = {**outcome.outputs, "artifacts": records}
            return replace(
                outcome,
                succeeded=False,
                outputs=outputs,
                error_category=ErrorCategory.INFRA,
                error_message=f"could not upload declared file {name}: {exc}",
            )
    for warning in warnings:
        log.warning("declared artifacts", run_id=ctx.run_id, step_id=ctx.node_id, problem=warning)
    outputs = {
        **outcome.outputs,
        "artifacts": [
            {k: r[k] for k in ("name", "uri", "size", "sha256") if k in r} for r in records
        ],
    }
    if warnings:
        outputs["artifact_warnings"] = warnings
    return replace(outcome, outputs=outputs, artifacts=[*outcome.artifacts, *records])
