from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.http.conftest import PUSH, Service


def _value(text: str, name: str, **labels: str) -> float:
    """A sample read with Prometheus' own parser of the exposition format."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in metrics")


async def test_metrics_count_requests_bytes_ingest_and_memory(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    seg = await service.client.get(f"/rec/demo/rec_{clip['id']}_media_1_360_seg0.m4s")
    size = len(await seg.read())
    await service.client.get(f"/rec/demo/rec_{clip['id']}_media_1_360_seg0.m4s")
    await service.client.get("/rec/demo/rec_" + "0" * 32 + "_master.m3u8")
    await service.client.put("/ingest/demo/0/bad.m4s", data=b"junk", headers=PUSH)
    mp4 = await service.client.get(f"/rec/demo/rec_{clip['id']}_master.mp4")
    assert mp4.status == 200 and len(await mp4.read()) > 0
    resp = await service.client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    seg_route = "/rec/{stream_id}/{segment}"
    requests = "packager_http_requests_total"
    assert _value(text, requests, route=seg_route, method="GET", status="200") == 2
    assert _value(text, "packager_http_response_bytes_total", route=seg_route) == 2 * size
    m3u8 = "/rec/{stream_id}/{m3u8}"
    assert _value(text, requests, route=m3u8, method="GET", status="404") == 1
    assert _value(text, "packager_ingest_files_total", kind="rejected") == 1
    stats = await service.store.stats()
    assert _value(text, "packager_memory_bytes", holder="dvr") == stats.dvr_bytes
    assert _value(text, "packager_active_clips") == 1
    assert _value(text, "packager_memory_budget_bytes") == 1 << 30
    assert _value(text, "packager_mp4_layout_seconds_count") == 1  # built once, at completion
    assert "packager_http_request_seconds_bucket" in text
    assert "packager_dvr_evictions_total" in text


async def test_health_and_readiness(service: Service) -> None:
    assert (await service.client.get("/healthz")).status == 200
    ready = await service.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"


async def test_a_malformed_request_is_logged_at_info_without_traceback(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """A client's bad header is its own mistake: aiohttp answers 400, we log one INFO line."""
    caplog.set_level(logging.DEBUG)
    port = service.client.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\nConnection: close\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status.split()[1] == b"400", status
    await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert records, "the bad request was not logged at all"
    assert all(r.levelno <= logging.INFO for r in records), [r.getMessage() for r in records]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in records)
    assert any("400" in r.getMessage() for r in records)
