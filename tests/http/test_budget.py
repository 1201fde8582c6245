from __future__ import annotations

from pathlib import Path

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.http.app import create_app
from packager.http.keys import SERVICES
from tests.conftest import MakeStore, feed_past
from tests.http.conftest import API_KEY, AUTH, AiohttpClient


async def test_full_budget_refuses_clips_with_507_and_the_dvr_keeps_serving(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
    make_store: MakeStore,
) -> None:
    loop_bytes = sum(len(s) for r in ladder for s in r.segments)  # 12 s of the ladder
    config = Config(api_keys=(API_KEY,), memory_budget=loop_bytes, data_dir=tmp_path)
    app = create_app(config, clock=clock, timers=False, store=make_store(loop_bytes))
    feed = DemoFeed(app[SERVICES].ingest, ladder, clock)
    origin = await feed_past(feed, clock, 6)
    client = await aiohttp_client(app)
    url = "/streams/demo/clip_recording"
    first = await client.post(url, json={"duration": 8, "start": origin}, headers=AUTH)
    assert first.status == 201
    refused = await client.post(url, json={"duration": 30, "start": origin}, headers=AUTH)
    assert refused.status == 507
    body = await refused.json()
    assert body["error"] == "memory_budget_exceeded" and "budget" in body["detail"]
    # The DVR rolls on within the budget, serving new clips and the old one.
    for k in range(6, 12):
        clock.advance(2)
        await feed.push(k, feed.segment_start(k, origin))
    stats = await (await client.get("/stats", headers=AUTH)).json()
    assert stats["memory"]["held_bytes"] <= loop_bytes
    assert stats["evicted_segments"] > 0
    recent = await client.post(url, json={"duration": 2, "start": clock() - 3}, headers=AUTH)
    assert recent.status == 201
    old = (await first.json())["id"]
    assert (await client.get(f"/rec/demo/rec_{old}_media_3_1080_seg0.m4s")).status == 200
    assert (await app[SERVICES].store.stats()).held_bytes <= loop_bytes
