"""Prometheus metrics: request counters and latencies here; store gauges read at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from packager.http.keys import SERVICES
from packager.store.model import StoreStats

# A handler may name its route more precisely (e.g. the playback file kind).
ROUTE_KEY = web.RequestKey("metrics_route", str)


class StoreCollector(Collector):
    """The store's own counters (one source of truth), as read just before each scrape: the
    store answers asynchronously and a collector cannot wait."""

    def __init__(self) -> None:
        self.stats: StoreStats | None = None

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        if s is None:
            return
        held = GaugeMetricFamily(
            "packager_memory_bytes", "Media bytes held, by holder", labels=["holder"]
        )
        held.add_metric(["dvr"], s.dvr_bytes)
        held.add_metric(["clips_only"], s.clip_only_bytes)
        yield held
        yield GaugeMetricFamily(
            "packager_pinned_bytes", "Bytes held by at least one clip", value=s.pinned_bytes
        )
        yield GaugeMetricFamily("packager_memory_budget_bytes", "The memory budget", value=s.budget)
        yield GaugeMetricFamily("packager_active_clips", "Clips not yet expired", value=s.clips)
        yield GaugeMetricFamily(
            "packager_growing_clips", "Clips still receiving segments", value=s.growing_clips
        )
        yield GaugeMetricFamily("packager_streams", "Known streams", value=s.streams)
        yield GaugeMetricFamily(
            "packager_dvr_segments", "Segments in all DVR rings", value=s.dvr_segments
        )
        yield CounterMetricFamily(
            "packager_dvr_evictions", "Segments that left a DVR ring", value=s.evicted_segments
        )
        yield CounterMetricFamily("packager_expired_clips", "Clips expired", value=s.expired_clips)


# Request latency buckets, seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


# A row of RequestStats: the count, the bytes sent, the latency buckets, the latency sum.
_COUNT, _SENT, _FIRST_BUCKET = 0, 1, 2
_ROW = 2 + len(BUCKETS) + 1 + 1


class RequestStats(Collector):
    """Per-request counters kept in plain lists, one row per (route, method, status), summed
    per route at scrape time. prometheus-client's labelled metrics took a lock and built label
    tuples three times a request: a tenth of a cached playlist's whole cost (profiled); a dict
    each for counts, bytes and latency was still three lookups. Same families, same names."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], list[float]] = {}

    def record(self, route: str, method: str, status: int, seconds: float, sent: int) -> None:
        row = self.rows.get((route, method, status))
        if row is None:
            row = self.rows[route, method, status] = [0] * _ROW
        row[_COUNT] += 1
        row[_SENT] += sent
        row[_FIRST_BUCKET + bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "packager_http_requests",
            "HTTP requests by route and status",
            labels=["route", "method", "status"],
        )
        per_route: dict[str, list[float]] = {}
        for (route, method, status), row in list(self.rows.items()):
            requests.add_metric([route, method, str(status)], row[_COUNT])
            total = per_route.setdefault(route, [0] * _ROW)
            for i, value in enumerate(row):
                total[i] += value
        yield requests
        sent = CounterMetricFamily(
            "packager_http_response_bytes", "Body bytes sent, by route", labels=["route"]
        )
        for route, row in per_route.items():
            if row[_SENT]:
                sent.add_metric([route], row[_SENT])
        yield sent
        latency = HistogramMetricFamily(
            "packager_http_request_seconds",
            "Time to handle a request (to the end of a streamed body)",
            labels=["route"],
        )
        bounds = [*(str(b) for b in BUCKETS), "+Inf"]
        for route, row in per_route.items():
            cumulative = list(accumulate(row[_FIRST_BUCKET:-1]))
            latency.add_metric([route], list(zip(bounds, cumulative, strict=True)), row[-1])
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = RequestStats()
        self.registry.register(self.http)
        self.ingest = Counter(
            "packager_ingest_files",
            "Files pushed by encoders, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.ingest_bytes = Counter(
            "packager_ingest_bytes", "Bytes of accepted ingest files", registry=self.registry
        )
        self.remux_seconds = Histogram(
            "packager_mp4_layout_seconds",
            "Time to compute a progressive MP4 layout (moov and sample map)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.store = StoreCollector()
        self.registry.register(self.store)

    def render(self, stats: StoreStats) -> bytes:
        self.store.stats = stats
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].render(await request.app[SERVICES].store.stats())
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
