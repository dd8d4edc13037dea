"""Translator: validate + compile a generated 10,000-node workflow; time and peak memory.

The workflow is 10,000 nodes in layers of 100 (each node depends on two nodes of the layer
before, templates reference an upstream step and a parameter, a condition per layer, a
foreach with a body every tenth layer), so every check (graph, cycles, templates, references,
reachability) does real work.

    python -m bench.translator [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from bench.report import write_section
from conveyor.translator.domain import compile_workflow

NODES = 10_000
WIDTH = 100


def document(nodes: int = NODES, width: int = WIDTH) -> str:
    """The generated workflow as JSON text."""
    out: list[dict[str, Any]] = [{"id": "start", "type": "trigger.manual", "data": {}}]
    edges: list[dict[str, Any]] = []
    layers = (nodes - 1) // width
    previous = ["start"]
    for layer in range(layers):
        current = []
        for i in range(width):
            node_id = f"n{layer}_{i}"
            up = previous[i % len(previous)]
            if layer % 10 == 5 and i == 0:
                node = {
                    "id": node_id,
                    "type": "logic.foreach",
                    "data": {"items": "params.hosts", "concurrency": 4},
                }
            elif i == 1:
                node = {
                    "id": node_id,
                    "type": "logic.condition",
                    "data": {"expression": "params.level > 2"},
                }
            else:
                node = {
                    "id": node_id,
                    "type": "action.command",
                    "data": {
                        "argv": [
                            "echo",
                            "{{ params.name }} {{ run.id }}",
                            "{{ steps." + up + ".stdout }}",
                        ]
                    },
                }
            out.append(node)
            edges.append({"source": up, "target": node_id, "sourceHandle": None})
            other = previous[(i + 1) % len(previous)]
            if other != up:
                edges.append({"source": other, "target": node_id})
            current.append(node_id)
        previous = [n for n in current if not n.endswith("_1")]  # conditions branch: skip them
    while len(out) < nodes:
        out.append(
            {
                "id": f"body{len(out)}",
                "type": "action.command",
                "parentId": "n5_0",
                "data": {"argv": ["echo", "{{ item }} {{ index }}"]},
            }
        )
    return json.dumps(
        {
            "schema": "conveyor/v1",
            "name": "bench-10k",
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "level": {"type": "integer"},
                    "hosts": {"type": "array"},
                },
            },
            "nodes": [{**n, "position": {"x": 0, "y": 0}} for n in out],
            "edges": edges,
        }
    )


def measure(text: str, repeat: int) -> tuple[list[float], float, int]:
    """Wall seconds per compile, peak traced MiB of one compile, and the plan's node count."""
    times = []
    planned = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result = compile_workflow(text)
        times.append(time.perf_counter() - start)
        if not result.ok or result.plan is None:
            raise SystemExit(f"the generated document does not compile: {result.diagnostics[:3]}")
        planned = len(result.plan["nodes"])
    tracemalloc.start()
    compile_workflow(text)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return times, peak / (1024 * 1024), planned


def main() -> None:
    """Measure and write the `translator` section of docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = document()
    times, peak_mib, planned = measure(text, args.repeat)
    doc = json.loads(text)
    body = f"""## Translator: validate + compile 10,000 nodes

Measured {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")} on {platform.machine()},
Python {platform.python_version()}, {args.repeat} runs (`python -m bench.translator`).
Document: {len(doc["nodes"])} nodes, {len(doc["edges"])} edges, {len(text) / 1024:.0f} KiB
(layers of {WIDTH} with templates, conditions and a foreach body); plan: {planned} nodes.

| figure | value |
|---|---|
| median wall time | {statistics.median(times):.3f} s |
| fastest / slowest | {min(times):.3f} s / {max(times):.3f} s |
| peak Python memory of one compile (tracemalloc) | {peak_mib:.1f} MiB |

Goal: under 1 s. The machine is shared; compare runs on the same machine only.
"""
    print(write_section("translator", body))


if __name__ == "__main__":
    main()
