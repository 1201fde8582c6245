from __future__ import annotations

import pytest

from tests.http.conftest import AUTH, Service


async def test_livepeer_list_shows_the_same_clips_as_assets(service: Service) -> None:
    now = service.clock()
    clip = await service.create_clip(duration=6, start=now - 10)
    resp = await service.client.get("/streams/demo/clips", headers=AUTH)
    assert resp.status == 200
    (asset,) = await resp.json()
    assert asset["id"] == clip["id"] and asset["playbackId"] == clip["id"]
    assert asset["playbackUrl"] == clip["hls_master"]
    assert asset["downloadUrl"] == clip["mp4_master"]
    assert asset["createdAt"] == round(now * 1000)
    assert asset["status"]["phase"] == "ready"
    spec = asset["videoSpec"]
    assert spec["format"] == "mp4" and spec["duration"] == pytest.approx(clip["duration"])
    assert 1_000_000 < spec["bitrate"] < 1_400_000  # the 1080p rung: ~1157 kb/s
    video, audio = spec["tracks"]
    assert (video["type"], video["codec"], video["width"], video["height"]) == (
        "video",
        "h264",
        1920,
        1080,
    )
    assert video["fps"] == pytest.approx(30)
    assert (audio["type"], audio["codec"], audio["channels"], audio["sampleRate"]) == (
        "audio",
        "aac",
        2,
        48000,
    )
    assert video["bitrate"] + audio["bitrate"] <= spec["bitrate"]


async def test_growing_clip_is_uploading(service: Service) -> None:
    await service.create_clip(duration=10)
    (asset,) = await (await service.client.get("/streams/demo/clips", headers=AUTH)).json()
    assert asset["status"]["phase"] == "uploading"


async def test_post_clip_takes_livepeers_body(service: Service) -> None:
    now_ms = service.clock() * 1000
    body = {
        "playbackId": "demo",
        "startTime": now_ms - 10_000,
        "endTime": now_ms - 4_000,
        "name": "goal",
    }
    resp = await service.client.post("/clip", json=body, headers=AUTH)
    assert resp.status == 201
    result = await resp.json()
    asset = result["asset"]
    assert result["task"]["id"]
    assert asset["name"] == "goal"
    assert asset["videoSpec"]["duration"] == pytest.approx(6)
    listed = await (await service.client.get("/streams/demo/clip_recording", headers=AUTH)).json()
    assert [c["id"] for c in listed] == [asset["id"]]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"startTime": 0, "endTime": 1}, "playbackId"),
        ({"playbackId": "demo", "endTime": 1}, "startTime"),
        ({"playbackId": "demo", "startTime": "x", "endTime": 1}, "startTime"),
        ({"playbackId": "demo", "startTime": 5000, "endTime": 1000}, "endTime"),
    ],
)
async def test_post_clip_names_bad_fields(
    service: Service, body: dict[str, object], field: str
) -> None:
    resp = await service.client.post("/clip", json=body, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_livepeer_routes_need_a_key(service: Service) -> None:
    assert (await service.client.get("/streams/demo/clips")).status == 401
    assert (await service.client.post("/clip", json={})).status == 401


async def test_stats_show_bytes_held_by_dvr_and_clips(service: Service) -> None:
    assert (await service.client.get("/stats")).status == 401
    before = await (await service.client.get("/stats", headers=AUTH)).json()
    memory = before["memory"]
    assert memory["budget_bytes"] == 1 << 30
    assert memory["dvr_bytes"] == memory["held_bytes"] > 0
    assert memory["pinned_bytes"] == 0 and before["clips"] == 0
    await service.create_clip(duration=4, start=service.clock() - 10)
    after = await (await service.client.get("/stats", headers=AUTH)).json()
    assert after["clips"] == 1 and after["memory"]["pinned_bytes"] > 0
    assert after["memory"]["held_bytes"] == memory["held_bytes"]  # shared, not copied
