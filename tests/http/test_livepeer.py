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
    assert asset["type"] == "video" and asset["source"] == {"type": "clip", "playbackId": "demo"}
    assert asset["playbackUrl"] == clip["hls_master"]
    assert asset["downloadUrl"] == clip["mp4_master"]
    assert asset["createdAt"] == round(now * 1000)
    assert asset["status"]["phase"] == "ready"
    spec = asset["videoSpec"]
    assert spec["format"] == "mp4"
    assert spec["duration"] == pytest.approx(clip["duration_precise"])
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
    assert resp.status == 200  # Livepeer's SDK takes nothing else
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
    error = await resp.json()
    assert error["field"] == field
    (message,) = error["errors"]  # Livepeer's shape, which its SDK reads
    assert message.startswith(f"{field}: ")


@pytest.mark.parametrize("prefix", ["", "/api"])
@pytest.mark.parametrize("streams", ["stream", "streams"])
async def test_livepeer_paths_as_its_sdk_calls_them(
    service: Service, prefix: str, streams: str
) -> None:
    """`GET /stream/{id}/clips` (singular, as the SDK sends it) and `POST /clip`, with and
    without the `/api` its default server URL ends in."""
    now_ms = service.clock() * 1000
    body = {"playbackId": "demo", "startTime": now_ms - 10_000, "endTime": now_ms - 4_000}
    made = await service.client.post(f"{prefix}/clip", json=body, headers=AUTH)
    assert made.status == 200
    asset = (await made.json())["asset"]
    listed = await service.client.get(f"{prefix}/{streams}/demo/clips", headers=AUTH)
    assert listed.status == 200
    assert [a["id"] for a in await listed.json()] == [asset["id"]]
    missing = await service.client.get(f"{prefix}/{streams}/nope/clips", headers=AUTH)
    assert missing.status == 404
    assert (await missing.json())["errors"] == ["no stream 'nope'"]
    denied = await service.client.get(f"{prefix}/{streams}/demo/clips")
    assert denied.status == 401
    (message,) = (await denied.json())["errors"]
    assert "apikey" in message


async def test_livepeer_error_shape_stays_on_livepeer_routes(service: Service) -> None:
    for path in ("/api/nothing", "/api/clip/extra"):
        resp = await service.client.get(path, headers=AUTH)
        assert resp.status == 404 and (await resp.json())["errors"] == ["Not Found"]
    wrong_method = await service.client.get("/clip", headers=AUTH)
    assert wrong_method.status == 405 and (await wrong_method.json())["errors"]
    gcore = await service.client.get("/streams/nope/clip_recording", headers=AUTH)
    assert gcore.status == 404 and "errors" not in await gcore.json()


async def test_livepeer_routes_need_a_key(service: Service) -> None:
    assert (await service.client.get("/streams/demo/clips")).status == 401
    assert (await service.client.post("/clip", json={})).status == 401
    assert (await service.client.post("/api/clip", json={})).status == 401


async def test_stats_show_bytes_held_by_dvr_and_clips(service: Service) -> None:
    assert (await service.client.get("/stats")).status == 401
    before = await (await service.client.get("/stats", headers=AUTH)).json()
    memory = before["memory"]
    assert memory["budget_bytes"] == 1 << 30
    assert memory["dvr_bytes"] + memory["init_bytes"] == memory["held_bytes"] > 0
    assert 3 * len(service.feed.ladder[0].init) < memory["init_bytes"] < 1 << 20
    assert memory["pinned_bytes"] == 0 and before["clips"] == 0
    await service.create_clip(duration=4, start=service.clock() - 10)
    after = await (await service.client.get("/stats", headers=AUTH)).json()
    assert after["clips"] == 1 and after["memory"]["pinned_bytes"] > 0
    assert after["memory"]["held_bytes"] == memory["held_bytes"]  # shared, not copied
