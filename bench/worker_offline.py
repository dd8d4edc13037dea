"""How fast a killed worker shows offline (ListWorkers) and reaches a webhook (alert).

Distributed mode on PostgreSQL and Redis; N workers are killed one by one with SIGKILL on
their process group. Run: `python -m bench.worker_offline [--workers 3]`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_section
from conveyor.monitor.v1 import (
    alert_service_pb2,
    alert_service_pb2_grpc,
    insight_service_pb2,
    insight_service_pb2_grpc,
)
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.integration import harness

POLL_S = 0.05


def _receiver() -> tuple[http.server.ThreadingHTTPServer, dict[str, float]]:
    arrivals: dict[str, float] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["state"] == "FIRING":
                arrivals.setdefault(body["subject"], time.monotonic())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrivals


def measure(workers: int) -> dict[str, list[float]]:
    """Seconds from SIGKILL to OFFLINE in ListWorkers and to the webhook, per worker."""
    server, arrivals = _receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    offline_s: list[float] = []
    webhook_s: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        harness.distributed(Path(tmp), POSTGRES_URL, REDIS_URL, workers=workers) as info,
    ):
        channel = harness.grpc_channel(info)
        insight = insight_service_pb2_grpc.InsightServiceStub(channel)
        alerts = alert_service_pb2_grpc.AlertServiceStub(channel)
        alerts.CreateAlertRule(
            alert_service_pb2.CreateAlertRuleRequest(
                rule=alert_service_pb2.AlertRule(
                    display_name="bench offline",
                    kind=alert_service_pb2.ALERT_KIND_WORKER_OFFLINE,
                    webhook_urls=[url],
                    enabled=True,
                )
            )
        )

        def states() -> dict[str, int]:
            reply = insight.ListWorkers(insight_service_pb2.ListWorkersRequest())
            return {w.hostname.split("@")[0]: w.state for w in reply.workers}

        online = insight_service_pb2.WORKER_STATE_ONLINE
        while sum(1 for s in states().values() if s == online) < workers:
            time.sleep(0.2)
        time.sleep(12)  # past the monitor's warm-up, so offline alerts are raised
        for i in range(workers):
            proc = next(p for p in info["procs"] if f"worker{i}@%h" in p.args)
            name = f"worker{i}"
            killed = time.monotonic()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            while states().get(name) == online:
                time.sleep(POLL_S)
            offline_s.append(time.monotonic() - killed)
            full = None
            while full is None:
                full = next((h for h in list(arrivals) if h.startswith(name + "@")), None)
                time.sleep(0 if full else POLL_S)
            webhook_s.append(arrivals[full] - killed)
        channel.close()
    server.shutdown()
    return {"offline": offline_s, "webhook": webhook_s}


def main() -> None:
    """Measure and write the section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    figures = measure(args.workers)
    rows = "\n".join(
        f"| {what} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |"
        for what, v in (
            ("SIGKILL → OFFLINE in ListWorkers", figures["offline"]),
            ("SIGKILL → worker-offline alert at a webhook", figures["webhook"]),
        )
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""## Worker offline detection

`python -m bench.worker_offline --workers {args.workers}` ({when}, {platform.machine()},
{os.cpu_count()} CPUs shared with other work; distributed mode, Redis broker). Each worker is
killed with SIGKILL; heartbeat period 1 s, offline after 3 missed periods, alerts evaluated
every 2 s.

| seconds | min | median | max |
|---|---|---|---|
{rows}
"""
    print(write_section("worker-offline", body))


if __name__ == "__main__":
    main()
