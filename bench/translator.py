"""Translator: validate + compile a generated 10,000-node workflow; time and peak memory.

Two shapes: a chain where every step templates its predecessor's stdout (the longest dependency
path, and a `steps.*` reference to check per node) and a layered DAG (100 layers of 100 nodes,
each node joining two nodes of the previous layer, with a condition every ten layers). The document
is passed as JSON text, as the service receives it. Run: `python -m bench.translator`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from bench.report import write_section
from conveyor.translator.domain import compile_workflow


def _node(node_id: str, node_type: str = "action.command", **data: Any) -> dict[str, Any]:
    if node_type == "action.command" and "argv" not in data:
        data = {"argv": ["true"], **data}
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


def _edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    return {"id": f"{source}->{target}", "source": source, "target": target, "sourceHandle": handle}


def chain_document(count: int) -> dict[str, Any]:
    """`count` command nodes in a line, each echoing the previous one's stdout."""
    nodes = [_node("n0")] + [
        _node(f"n{i}", argv=["echo", f"{{{{ steps.n{i - 1}.stdout }}}}"]) for i in range(1, count)
    ]
    edges = [_edge(f"n{i}", f"n{i + 1}") for i in range(count - 1)]
    return {"schema": "conveyor/v1", "name": "chain", "nodes": nodes, "edges": edges}


def layered_document(layers: int, width: int) -> dict[str, Any]:
    """`layers` x `width` nodes; every node joins two of the previous layer."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    conditions: set[str] = set()
    for layer in range(layers):
        for i in range(width):
            node_id = f"l{layer}_{i}"
            if layer % 10 == 5 and i == 0:
                conditions.add(node_id)
                nodes.append(_node(node_id, "logic.condition", expression="params.go"))
            else:
                argv = ["echo", "{{ params.go }}"]
                if layer:
                    argv.append(f"{{{{ steps.l{layer - 1}_{i}.exit_code }}}}")
                nodes.append(_node(node_id, argv=argv, trigger_rule="all_done"))
            if layer:
                for parent in (f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % width}"):
                    handle = "true" if parent in conditions else None
                    edges.append(_edge(parent, node_id, handle))
    return {
        "schema": "conveyor/v1",
        "name": "layered",
        "parameters": {"type": "object", "properties": {"go": {"type": "boolean"}}},
        "nodes": nodes,
        "edges": edges,
    }


def measure(text: str, repeat: int) -> dict[str, float]:
    """Median wall time of validate + compile, and the peak Python heap of one pass."""
    result = compile_workflow(text)  # warm-up (imports, template cache)
    assert result.ok, result.diagnostics[:3]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = compile_workflow(text)
        times.append(time.perf_counter() - t)
        assert result.ok
    tracemalloc.start()
    compile_workflow(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"median_s": statistics.median(times), "max_s": max(times), "peak_mib": peak / 2**20}


def main() -> None:
    """Measure both shapes and write the section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    shapes = {
        "chain of 10,000 steps, each templating its predecessor": chain_document(10_000),
        "100 layers x 100 nodes, each joining two parents (19,800 edges)": layered_document(
            100, 100
        ),
    }
    rows = []
    raw = {}
    for label, document in shapes.items():
        text = json.dumps(document)
        figures = measure(text, opts.repeat)
        raw[label] = figures
        rows.append(
            f"| {label} | {len(text) / 2**20:.1f} MiB | {figures['median_s']:.2f} s | "
            f"{figures['max_s']:.2f} s | {figures['peak_mib']:.0f} MiB |"
        )
    md = "\n".join(
        [
            "## Translator: validate + compile 10,000 nodes",
            "",
            f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by "
            f"`python -m bench.translator --repeat {opts.repeat}` on {os.cpu_count()} cores, "
            f"Python {platform.python_version()}: `compile_workflow` on the JSON text (parse, "
            "schema and graph checks, template parsing and reference checks, plan), median and "
            "worst of the repeats; peak is the Python heap traced by tracemalloc during one pass "
            "(process RSS is higher). Goal: under 1 s.",
            "",
            "| document | JSON size | median | worst | peak heap |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Raw figures: " + json.dumps(raw),
        ]
    )
    print(write_section("translator", md))


if __name__ == "__main__":
    main()
