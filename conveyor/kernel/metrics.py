"""Prometheus metrics: the families every process registers, its /metrics endpoint, and
the gateway's aggregation of several processes into one exposition.

Counters and histograms live in the process that observes them (the monitor derives run and
step figures from the event bus; the scheduler calls `observe_schedule_lag`). The gateway
serves its own registry plus every configured service endpoint, each sample labelled with
`service`, so one scrape of the gateway sees the whole suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

# `*_created` series render as separate gauge families in the text format, which would clash
# with the same histogram's samples when processes are merged; rate() does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

SCRAPE_TIMEOUT_S = 2.0
MAX_SCRAPE_BYTES = 8 * 1024 * 1024
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf"))

RUNS = Counter("conveyor_runs_total", "Runs that reached a final state.", ["job", "state"])
STEPS = Counter(
    "conveyor_steps_total",
    "Steps that reached a final state, by node type and error category.",
    ["type", "state", "category"],
)
STEP_DURATION = Histogram(
    "conveyor_step_duration_seconds",
    "Wall time of each ended step attempt.",
    ["type"],
    buckets=_DURATION_BUCKETS,
)
QUEUE_DEPTH = Gauge("conveyor_queue_depth", "Messages waiting in a Celery queue.", ["queue"])
QUEUE_OLDEST_AGE = Gauge(
    "conveyor_queue_oldest_age_seconds", "Age of the oldest QUEUED step per queue.", ["queue"]
)
WORKERS = Gauge("conveyor_workers", "Celery workers by state (online, offline).", ["state"])
SCHEDULE_LAG = Histogram(
    "conveyor_schedule_lag_seconds",
    "Delay between a schedule's due time and the run being started.",
    buckets=_LATENCY_BUCKETS,
)
EVENT_DELIVERY = Histogram(
    "conveyor_event_delivery_seconds",
    "Time from a run event's commit to its arrival at the monitor.",
    buckets=_LATENCY_BUCKETS,
)


def observe_schedule_lag(seconds: float) -> None:
    """Record how late a scheduled run started (call from the scheduler)."""
    SCHEDULE_LAG.observe(max(0.0, seconds))


def observe_event_delivery(seconds: float) -> None:
    """Record one event's commit-to-monitor latency."""
    EVENT_DELIVERY.observe(max(0.0, seconds))


def serve_metrics(host: str, port: int) -> tuple[Any, int] | None:
    """Serve this process's registry on http://host:port/metrics; None when port is 0."""
    if port <= 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise RuntimeError(f"cannot serve /metrics on {host}:{port}: {exc}") from exc
    return server, int(server.server_address[1])


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _relabel(family: Metric, service: str, into: dict[str, Metric]) -> None:
    merged = into.get(family.name)
    if merged is None:
        merged = into[family.name] = Metric(family.name, family.documentation, family.type)
        merged.unit = family.unit
    if merged.type != family.type:
        return  # a clash between processes: keep the first definition
    for sample in family.samples:
        labels = {**sample.labels, "service": service}
        merged.samples.append(sample._replace(labels=labels))


def aggregate(local: Mapping[str, CollectorRegistry], remote: Mapping[str, str]) -> bytes:
    """One text exposition of local registries and scraped endpoints, labelled by service.

    A target that cannot be scraped shows as `conveyor_scrape_up{service=…} 0`.
    """
    families: dict[str, Metric] = {}
    up = Metric("conveyor_scrape_up", "1 when the service's metrics were scraped.", "gauge")
    for service, registry in local.items():
        for family in registry.collect():
            _relabel(family, service, families)
        up.add_sample("conveyor_scrape_up", {"service": service}, 1.0)
    for service, url in remote.items():
        try:
            response = httpx.get(url, timeout=SCRAPE_TIMEOUT_S)
            response.raise_for_status()
            text = response.text[:MAX_SCRAPE_BYTES]
            parsed = list(text_string_to_metric_families(text))
            log.debug("metrics scraped", service=service, url=url, bytes=len(text))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("metrics scrape failed", service=service, url=url, error=str(exc))
            up.add_sample("conveyor_scrape_up", {"service": service}, 0.0)
            continue
        for family in parsed:
            if not family.name.endswith("_created"):
                _relabel(family, service, families)
        up.add_sample("conveyor_scrape_up", {"service": service}, 1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up]))
    return generate_latest(registry)


def local_exposition() -> bytes:
    """This process's registry in the text format."""
    return generate_latest(REGISTRY)
