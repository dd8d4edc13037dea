"""The dashboard with a 500-node run: bytes, first paint, first live update, update latency,
and the gateway's memory with 1,000 open live streams.

Conveyor runs in the distributed mode (each service its own process, one worker process
with 4 threads, PostgreSQL, Redis). The job has 500 nodes at editor positions: a trigger, a
gate step that waits for a file, and 498 `sleep 0.2` steps fanned out from the gate, so the
run keeps changing for about half a minute. The gate is opened, then Debian's Chromium
(headless, through Playwright) opens the run's page. A MutationObserver in the page stamps
every node's state change (`data-state`) with the wall clock; a node's update latency is that
stamp minus the step's recorded end time (both on this machine's clock), so it includes the
commit, the event bus, the monitor, the gateway's SSE, the page's 50 ms batching and React's
render. Bytes are what Chromium's network layer received (DevTools `encodedDataLength`).
Memory: 1,000 SSE clients follow another run (kept running by its gate) and the gateway
process's resident set is read before and after they are all connected.

    python -m bench.dashboard [--nodes 500] [--streams 1000] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from bench.report import write_section
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration import harness

COLUMNS = 25

# Stamps every node state change the page draws (wall-clock ms).
OBSERVER = """
window.__changes = [];
new MutationObserver((records) => {
  const t = performance.timeOrigin + performance.now();
  for (const r of records) {
    const el = r.target;
    if (r.type === 'attributes' && el.dataset && el.dataset.state) {
      window.__changes.push({label: el.getAttribute('aria-label'), state: el.dataset.state, t});
    }
    for (const n of r.addedNodes || []) {
      if (n.querySelectorAll) for (const x of n.querySelectorAll('[data-state]'))
        window.__changes.push({label: x.getAttribute('aria-label'), state: x.dataset.state, t,
                               added: true});
    }
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ['data-state']});
"""
# The bench's token, read by the page's sign-in (session storage) and by every client here.
TOKEN: dict[str, str] = {"value": ""}


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN['value']}"}


def workflow(nodes: int, gate: Path, name: str) -> dict[str, Any]:
    """Trigger, gate, and nodes - 2 sleeping steps fanned out from the gate, on a grid."""
    body = [
        {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "data": {}},
        {
            "id": "gate",
            "type": "action.command",
            "position": {"x": 0, "y": 120},
            "data": {"argv": ["sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.05; done']},
        },
    ]
    edges = [{"id": "e-gate", "source": "start", "target": "gate"}]
    for i in range(nodes - 2):
        node_id = f"n{i:03d}"
        body.append(
            {
                "id": node_id,
                "type": "action.command",
                "position": {"x": (i % COLUMNS) * 200, "y": 240 + (i // COLUMNS) * 90},
                "data": {"argv": ["sleep", "0.2"]},
            }
        )
        edges.append({"id": f"e{i}", "source": "gate", "target": node_id})
    return {"schema": "conveyor/v1", "name": name, "nodes": body, "edges": edges}


def _wait(http: httpx.Client, run_id: str, check: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()["run"]
        if check(run):
            return run
        time.sleep(0.2)
    raise TimeoutError(run_id)


def _gate_running(run: dict[str, Any]) -> bool:
    return any(s["node_id"] == "gate" and s["state"] == "STEP_STATE_RUNNING" for s in run["steps"])


def _ms(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def follow_ends(base: str, run_id: str, arrivals: dict[str, float], stop: threading.Event) -> None:
    """A plain SSE client of the run's state events: when each step's success arrives (wall
    clock ms), to tell the server's share of the latency from the page's."""
    url = f"/v1/runs/{run_id}/events"
    params = {"types": "EVENT_TYPE_STEP_STATE_CHANGED"}
    with (
        httpx.Client(base_url=base, timeout=None) as client,
        client.stream("GET", url, params=params, headers=_auth()) as r,
    ):
        for line in r.iter_lines():
            if stop.is_set():
                return
            if not line.startswith("data:"):
                continue
            ev = json.loads(line[5:]).get("event") or {}
            changed = ev.get("step_state_changed") or {}
            if changed.get("state") == "STEP_STATE_SUCCEEDED":
                arrivals.setdefault(changed["node_id"], time.time() * 1000)


def measure_page(base: str, http: httpx.Client, nodes: int, tmp: Path) -> dict[str, Any]:
    """One page load of a 500-node run in progress."""
    gate = tmp / "page-gate"
    job = http.post(
        "/v1/jobs",
        json={"workflow": workflow(nodes, gate, "bench-dashboard"), "update_existing": True},
    ).json()["job"]["job_id"]
    run_id = http.post(f"/v1/jobs/{job}:run", json={"parameters": {}}).json()["run"]["run_id"]
    _wait(http, run_id, _gate_running)
    received: dict[str, int] = {}
    arrivals: dict[str, float] = {}
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_ends, args=(base, run_id, arrivals, stop), daemon=True
    )
    follower.start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 820}, base_url=base)
        context.add_init_script(
            OBSERVER + f"sessionStorage.setItem('conveyor.token', {json.dumps(TOKEN['value'])});"
        )
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        streamed: dict[str, int] = {}

        def on_data(e: dict[str, Any]) -> None:
            streamed[e["requestId"]] = streamed.get(e["requestId"], 0) + e["encodedDataLength"]

        def on_done(e: dict[str, Any]) -> None:
            received[e["requestId"]] = int(e["encodedDataLength"])

        cdp.on("Network.dataReceived", on_data)
        cdp.on("Network.loadingFinished", on_done)

        def total() -> int:
            ids = set(received) | set(streamed)
            return sum(max(received.get(i, 0), streamed.get(i, 0)) for i in ids)

        gate.write_text("open")
        opened = time.time() * 1000
        page.goto(f"/#/runs/{run_id}")
        page.wait_for_function(
            "(n) => document.querySelectorAll('[data-state]').length >= n",
            arg=min(nodes, 100),
            timeout=120_000,
        )
        drawn_ms = time.time() * 1000
        bytes_first = total()
        run = _wait(http, run_id, lambda r: r["state"] == "RUN_STATE_SUCCEEDED")
        page.wait_for_timeout(1500)
        timing = page.evaluate(
            """() => ({
              nav: performance.timeOrigin,
              fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
              changes: window.__changes,
              drawn: document.querySelectorAll('[data-state]').length,
            })"""
        )
        bytes_total = total()
        browser.close()
    stop.set()
    changes = timing["changes"]
    first_drawn = min((c["t"] for c in changes if c.get("added")), default=None)
    live = [c for c in changes if not c.get("added") and first_drawn and c["t"] > first_drawn]
    ends = {
        s["label"] or s["node_id"]: _ms(s["end_time"])
        for s in run["steps"]
        if s.get("end_time") and s["state"] == "STEP_STATE_SUCCEEDED"
    }
    latencies, server, page_share = [], [], []
    for c in live:
        if c["state"] != "succeeded":
            continue
        label = c["label"].removeprefix("Step ").rsplit(": ", 1)[0]
        if label in ends and ends[label] >= timing["nav"]:
            latencies.append(c["t"] - ends[label])
            if label in arrivals:
                server.append(arrivals[label] - ends[label])
                page_share.append(c["t"] - arrivals[label])
    return {
        "nodes": nodes,
        "fcp_ms": timing["fcp"],
        "graph_ms": (first_drawn - timing["nav"]) if first_drawn else None,
        "first_live_ms": (min(c["t"] for c in live) - timing["nav"]) if live else None,
        "drawn_nodes": timing["drawn"],
        "bytes_first": bytes_first,
        "bytes_total": bytes_total,
        "latencies": sorted(latencies),
        "server": sorted(server),
        "page": sorted(page_share),
        "wall_to_drawn_ms": drawn_ms - opened,
    }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _streams(base: str, run_id: str, count: int, connected: asyncio.Event) -> None:
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    ready = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=None) as client:

        async def follow() -> None:
            nonlocal ready
            url = f"/v1/runs/{run_id}/events"
            async with client.stream("GET", url, headers=_auth()) as r:
                first = True
                async for _ in r.aiter_raw():
                    if first:
                        first = False
                        ready += 1
                        if ready == count:
                            connected.set()

        tasks = [asyncio.create_task(follow()) for _ in range(count)]
        await connected.wait()
        await asyncio.sleep(2)  # let the gateway settle before the reading
        measured.set()
        await release.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


measured = asyncio.Event()
release = asyncio.Event()


def measure_memory(
    base: str, http: httpx.Client, gateway_pid: int, count: int, tmp: Path
) -> dict[str, Any]:
    """Gateway RSS before and with `count` open SSE streams of one running run."""
    gate = tmp / "memory-gate"
    job = http.post(
        "/v1/jobs", json={"workflow": workflow(3, gate, "bench-streams"), "update_existing": True}
    ).json()["job"]["job_id"]
    run_id = http.post(f"/v1/jobs/{job}:run", json={"parameters": {}}).json()["run"]["run_id"]
    _wait(http, run_id, _gate_running)
    before = _rss_kib(gateway_pid)
    result: dict[str, Any] = {}

    async def main() -> None:
        connected = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(_streams(base, run_id, count, connected))
        await measured.wait()
        result["connect_s"] = time.monotonic() - started - 2
        result["with_streams"] = _rss_kib(gateway_pid)
        release.set()
        await task

    asyncio.run(main())
    gate.write_text("open")
    time.sleep(1)
    result["before"] = before
    result["after_close"] = _rss_kib(gateway_pid)
    result["streams"] = count
    return result


def _q(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def report(page: dict[str, Any], mem: dict[str, Any], load: tuple[float, float]) -> str:
    """The docs/performance.md section."""
    lat = page["latencies"]
    per_stream = (mem["with_streams"] - mem["before"]) / mem["streams"]
    lines = [
        "## Dashboard: a 500-node run in the browser",
        "",
        f"Measured {datetime.now().date()} by `python -m bench.dashboard` on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work (load average {load[0]:.1f} → "
        f"{load[1]:.1f}); distributed mode, one worker process with 4 threads; headless "
        "Debian Chromium. The run has 500 nodes at editor positions (a gate, then 498 "
        "`sleep 0.2` steps); the page is opened while the steps run.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| bytes received until the graph is drawn (HTML, JS, CSS, API, stream) | "
        f"{page['bytes_first'] / 1024:.0f} KiB |",
        f"| bytes received in total, until the run ended | {page['bytes_total'] / 1024:.0f} KiB |",
        f"| first contentful paint | {page['fcp_ms']:.0f} ms |",
        f"| graph drawn (first node in the page) | {page['graph_ms']:.0f} ms |",
        f"| first live update drawn | {page['first_live_ms']:.0f} ms |",
        f"| nodes drawn | {page['drawn_nodes']} |",
        f"| state change → page, p50 / p95 / max ({len(lat)} steps) | "
        f"{_q(lat, 0.5):.0f} / {_q(lat, 0.95):.0f} / {lat[-1]:.0f} ms |",
        f"| of which: step end → event at a plain SSE client, p50 / p95 | "
        f"{_q(page['server'], 0.5):.0f} / {_q(page['server'], 0.95):.0f} ms |",
        f"| of which: event at a plain SSE client → drawn in the page, p50 / p95 | "
        f"{_q(page['page'], 0.5):.0f} / {_q(page['page'], 0.95):.0f} ms |",
        f"| gateway RSS: idle → {mem['streams']:,} open SSE streams | "
        f"{mem['before'] / 1024:.0f} → {mem['with_streams'] / 1024:.0f} MiB "
        f"({per_stream:.0f} KiB per stream) |",
        f"| gateway RSS after the streams closed | {mem['after_close'] / 1024:.0f} MiB |",
        f"| {mem['streams']:,} streams connected and caught up in | {mem['connect_s']:.1f} s |",
        "",
        "Times are from the navigation start. A state change's latency runs from the step's "
        "recorded end to the page drawing the node's new state: the commit, the event bus, the "
        "monitor's fan-out, the gateway's SSE encoding, then in the page the stream's parsing, "
        "one batch of state events per animation frame and React Flow's render. A plain SSE "
        "client following the same run splits it into the server's share and the page's. The "
        "page's one stream for the run replays the state history first, then follows live, so "
        "a late page catches up with the same code path; the first live update therefore waits "
        "for that replay (three events per step already run) and for the first render of 500 "
        "nodes. A run of more than 100 steps is refetched (attempts, outputs: about 0.5 MB "
        "here) only while a step's panel is open, when a foreach ends and when the run ends: "
        "colours come from the events. The gateway's memory does not drop back after the "
        "streams close (Python's allocator keeps freed arenas); a second batch of streams is "
        "not measured.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.distributed(Path(tmp), POSTGRES_URL, REDIS_URL, workers=1) as info,
    ):
        # Steps run as an unprivileged user when the worker is root: the gate files must be
        # reachable for it.
        Path(tmp).chmod(0o755)
        gateway = next(p for p in info["procs"] if p.args[-1] == "gateway")
        TOKEN["value"] = str(info.get("token") or "")
        with httpx.Client(base_url=info["http"], timeout=60, headers=_auth()) as http:
            page = measure_page(info["http"], http, args.nodes, Path(tmp))
            mem = measure_memory(info["http"], http, gateway.pid, args.streams, Path(tmp))
    counts = {k: len(page[k]) for k in ("latencies", "server", "page")}
    print(json.dumps({**page, **counts}, indent=1), mem)
    body = report(page, mem, (load_start, os.getloadavg()[0]))
    print(body)
    if not args.no_write:
        write_section("dashboard", body)


if __name__ == "__main__":
    main()
