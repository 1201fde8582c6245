from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import RecordedRendition
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.store.redis import RedisStore
from tests.http.conftest import API_KEY, AUTH, INGEST_KEY, PUSH, AiohttpClient, Service
from tests.store.redis_support import RedisServer


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


async def test_what_no_route_takes_is_a_counted_json_error(service: Service) -> None:
    """No middleware runs (packager.http.edge wraps each route): the catch-all route answers
    unknown paths with JSON, and wrong methods on known paths with 405 and Allow."""
    missing = await service.client.get("/no/such/thing")
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"
    assert "Access-Control-Allow-Origin" not in missing.headers  # not a playback path
    under_rec = await service.client.get("/rec/demo/x/y")
    assert under_rec.status == 404 and under_rec.headers["Access-Control-Allow-Origin"] == "*"
    wrong = await service.client.delete("/healthz")
    assert wrong.status == 405 and (await wrong.json())["error"] == "method_not_allowed"
    assert set(wrong.headers["Allow"].split(",")) >= {"GET", "HEAD"}
    text = await (await service.client.get("/metrics")).text()
    requests = "packager_http_requests_total"
    assert _value(text, requests, route="unmatched", method="GET", status="404") == 2
    assert _value(text, requests, route="unmatched", method="DELETE", status="405") == 1


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


async def test_a_redis_that_goes_away_is_503_with_retry_after_not_500(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    ladder: list[RecordedRendition],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store's backend down (a Redis restarting, failing over) is the server's trouble,
    not a bug: every request says so with 503 and when to retry, and nothing crashes."""
    redis = RedisServer(tmp_path / "redis")
    store = RedisStore.from_url(redis.url, clock, 1 << 30)
    config = Config(api_keys=(API_KEY,), ingest_key=INGEST_KEY, data_dir=tmp_path)
    try:
        client = await aiohttp_client(create_app(config, clock=clock, timers=False, store=store))
        assert (await client.get("/streams", headers=AUTH)).status == 200
        redis.stop()
        caplog.set_level(logging.INFO)
        for method, path, headers, body in [
            ("GET", "/streams", AUTH, b""),
            ("GET", "/rec/demo/rec_" + "0" * 32 + "_master.m3u8", {}, b""),
            ("PUT", "/ingest/demo/0/init_0.mp4", PUSH, ladder[0].init),
        ]:
            resp = await client.request(method, path, headers=headers, data=body)
            assert resp.status == 503, (path, await resp.text())
            assert (await resp.json())["error"] == "store_unavailable"
            assert int(resp.headers["Retry-After"]) > 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        # The timer loop waits the outage out (it had died on its first failed read) ...
        timers = asyncio.create_task(client.app[SERVICES].timers.run())
        await asyncio.sleep(0.3)
        assert not timers.done()
        # ... and works again once Redis is back.
        redis = RedisServer(tmp_path / "redis-again", port=redis.port)
        resp = await client.post("/streams", json={"id": "back"}, headers=AUTH)
        assert resp.status == 201, await resp.text()
        assert not timers.done()
        timers.cancel()
    finally:
        redis.stop()
        await store.close()
