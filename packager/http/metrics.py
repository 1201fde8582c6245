"""Prometheus metrics: request counters and latencies here; store gauges read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from packager.http.errors import Handler
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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "packager_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.bytes_served = Counter(
            "packager_http_response_bytes",
            "Body bytes sent, by route",
            ["route"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "packager_http_request_seconds",
            "Time to handle a request (to the end of a streamed body)",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
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


def _route(request: web.Request) -> str:
    if ROUTE_KEY in request:
        return request[ROUTE_KEY]
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    resp = await handler(request)
    route = _route(request)
    metrics.latency.labels(route).observe(time.perf_counter() - started)
    metrics.requests.labels(route, request.method, str(resp.status)).inc()
    sent = resp.body_length if resp.prepared else (resp.content_length or 0)
    if request.method != "HEAD" and sent:
        metrics.bytes_served.labels(route).inc(sent)
    return resp


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].render(await request.app[SERVICES].store.stats())
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
