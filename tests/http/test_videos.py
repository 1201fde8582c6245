from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from packager.config import Config
from packager.http.app import create_app
from tests.http.conftest import API_KEY, AUTH, AiohttpClient, Service

Client = TestClient[web.Request, web.Application]


async def _saved_clip(service: Service) -> dict[str, Any]:
    now = service.clock()
    clip = await service.create_clip(
        duration=6, start=now - 10, expiration=now + 120, vod_required=True
    )
    await service.services.saver.drain()
    return clip


async def test_vod_required_clip_is_saved_with_a_video_id(service: Service) -> None:
    clip = await _saved_clip(service)
    listed = await (await service.client.get("/streams/demo/clip_recording", headers=AUTH)).json()
    video_id = listed[0]["video_id"]
    assert listed[0]["vod_required"] is True and video_id == 1  # Gcore's type: an integer
    resp = await service.client.get(f"/videos/{video_id}", headers=AUTH)
    assert resp.status == 200
    video = await resp.json()
    assert video["id"] == video_id and video["clip_id"] == clip["id"]
    assert video["duration_precise"] == clip["duration_precise"]
    assert [r["name"] for r in video["renditions"]] == clip["renditions"]
    # The saved file is byte-identical to the MP4 the clip serves.
    live = await (await service.client.get(f"/rec/demo/rec_{clip['id']}_master.mp4")).read()
    path = video["mp4_master"].split(str(service.client.port), 1)[1]
    saved = await service.client.get(path)
    assert saved.status == 200 and saved.headers["Access-Control-Allow-Origin"] == "*"
    body = await saved.read()
    assert body == live
    assert hashlib.sha256(body).hexdigest() == video["renditions"][-1]["sha256"]
    assert len(body) == video["renditions"][-1]["size"]
    ranged = await service.client.get(path, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206 and await ranged.read() == body[100:200]


async def test_video_outlives_its_clip(service: Service) -> None:
    clip = await _saved_clip(service)
    (listed,) = await (
        await service.client.get("/streams/demo/clip_recording", headers=AUTH)
    ).json()
    video_id = listed["video_id"]
    service.clock.advance(121)
    await service.tick()
    assert (await service.client.get(f"/rec/demo/rec_{clip['id']}_master.mp4")).status == 404
    resp = await service.client.get(f"/videos/{video_id}", headers=AUTH)
    assert resp.status == 200
    slug = (await resp.json())["slug"]
    for rendition in clip["renditions"]:
        got = await service.client.get(f"/vod/{slug}/{rendition}.mp4")
        assert got.status == 200 and got.content_type == "video/mp4"


async def test_video_answers_in_gcores_video_shape(service: Service) -> None:
    clip = await _saved_clip(service)
    video = await (await service.client.get("/streaming/videos/1", headers=AUTH)).json()
    assert video == await (await service.client.get("/videos/1", headers=AUTH)).json()
    assert (video["id"], video["status"], video["record_type"]) == (1, "ready", "origin")
    assert video["duration"] == round(clip["duration_precise"] * 1000)  # Gcore: milliseconds
    assert video["origin_video_duration"] == video["duration"]
    assert video["stream_id"] is None and video["source_stream_id"] == "demo"  # not an int
    assert video["created_at"].endswith("Z") and video["recording_started_at"].endswith("Z")
    converted = video["converted_videos"]
    assert [(c["id"], c["name"], c["height"]) for c in converted] == [
        (1, "media_1_360", 360),
        (2, "media_2_720", 720),
        (3, "media_3_1080", 1080),
    ]
    assert all(c["status"] == "complete" and c["progress"] == 100 for c in converted)
    assert [c["size"] for c in converted] == [r["size"] for r in video["renditions"]]
    assert video["origin_url"] == video["mp4_master"]  # the highest rendition, as a clip's
    assert video["origin_size"] == converted[-1]["size"]
    for c in converted:
        path = c["mp4_url"].split(str(service.client.port), 1)[1]
        assert path == f"/vod/{video['slug']}/{c['name']}.mp4"
        assert (await service.client.head(path)).status == 200
    assert len(video["slug"]) == 32 and str(video["id"]) not in video["mp4_master"].split("/")


async def test_video_ids_count_up_and_public_links_need_the_slug(service: Service) -> None:
    await _saved_clip(service)
    await _saved_clip(service)
    videos = await (await service.client.get("/streaming/videos", headers=AUTH)).json()
    assert [v["id"] for v in videos] == [1, 2]
    for video in videos:
        # The integer is easy to guess: it opens no download, only the random slug does.
        assert (await service.client.get(f"/vod/{video['id']}/master.mp4")).status == 404
        assert (await service.client.get(f"/vod/{video['slug']}/master.mp4")).status == 200
        by_slug = await service.client.get(f"/videos/{video['slug']}", headers=AUTH)
        assert (await by_slug.json())["id"] == video["id"]
    assert videos[0]["slug"] != videos[1]["slug"]


async def test_livepeer_asset_gets_size_and_hash_once_saved(service: Service) -> None:
    clip = await _saved_clip(service)
    (asset,) = await (await service.client.get("/streams/demo/clips", headers=AUTH)).json()
    assert asset["status"]["phase"] == "ready"
    video = await (await service.client.get("/videos", headers=AUTH)).json()
    master = video[0]["renditions"][-1]
    assert asset["size"] == master["size"]
    assert asset["hash"] == [{"hash": master["sha256"], "algorithm": "sha256"}]
    assert asset["downloadUrl"].endswith(f"/vod/{video[0]['slug']}/master.mp4")
    assert video[0]["clip_id"] == clip["id"]


async def test_unknown_videos_are_404_and_deletable(service: Service) -> None:
    for missing in ("f" * 32, "1", "0", "-1", "9" * 40, "../etc"):
        resp = await service.client.get(f"/videos/{missing}", headers=AUTH)
        assert resp.status == 404, missing
        assert (
            await service.client.get(f"/streaming/videos/{missing}", headers=AUTH)
        ).status == 404
    assert (await resp.json())["error"] in ("video_not_found", "not_found")
    assert (await service.client.get("/vod/" + "f" * 32 + "/master.mp4")).status == 404
    assert (await service.client.get("/videos/x")).status == 401
    assert (await service.client.get("/streaming/videos/1")).status == 401
    await _saved_clip(service)
    (video,) = await (await service.client.get("/videos", headers=AUTH)).json()
    assert (await service.client.get(f"/vod/{video['slug']}/media_9_9.mp4")).status == 404
    assert (await service.client.get(f"/vod/{video['slug']}/master.m3u8")).status == 404
    deleted = await service.client.delete(f"/streaming/videos/{video['id']}", headers=AUTH)
    assert deleted.status == 204
    assert (await service.client.get(f"/videos/{video['id']}", headers=AUTH)).status == 404
    assert (await service.client.get(f"/vod/{video['slug']}/master.mp4")).status == 404
    (listed,) = await (
        await service.client.get("/streams/demo/clip_recording", headers=AUTH)
    ).json()
    assert listed["video_id"] is None  # the clip's copy is gone


async def test_vod_downloads_answer_ranges_and_preconditions_like_clip_mp4s(
    service: Service,
) -> None:
    await _saved_clip(service)
    (video,) = await (await service.client.get("/videos", headers=AUTH)).json()
    path = f"/vod/{video['slug']}/master.mp4"
    full = await service.client.get(path)
    body, etag = await full.read(), full.headers["ETag"]
    assert etag == f'"{video["renditions"][-1]["sha256"][:40]}"'
    for ignored in ("bytes=5-1", "bytes=0-0,2-3", "items=0-1"):
        resp = await service.client.get(path, headers={"Range": ignored})
        assert resp.status == 200 and await resp.read() == body
    past_end = await service.client.get(path, headers={"Range": f"bytes={len(body)}-"})
    assert past_end.status == 416 and past_end.headers["Content-Range"] == f"bytes */{len(body)}"
    assert (await past_end.json())["error"] == "range_not_satisfiable"
    failed = await service.client.get(path, headers={"If-Match": '"other"'})
    assert failed.status == 412 and (await failed.json())["error"] == "precondition_failed"
    assert (await service.client.get(path, headers={"If-Match": etag})).status == 200
    assert (await service.client.get(path, headers={"If-None-Match": etag})).status == 304
    tail = await service.client.get(path, headers={"Range": "bytes=-100"})
    assert tail.status == 206 and await tail.read() == body[-100:]


async def _restarted(service: Service, aiohttp_client: AiohttpClient, tmp_path: Path) -> Client:
    """A new packager process over the same data dir."""
    config = Config(api_keys=(API_KEY,), data_dir=tmp_path)
    return await aiohttp_client(create_app(config, clock=service.clock, timers=False))


async def test_a_damaged_video_answers_a_json_410_and_says_why(
    service: Service, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    await _saved_clip(service)
    (video,) = await (await service.client.get("/videos", headers=AUTH)).json()
    slug = video["slug"]
    (tmp_path / "videos" / slug / "media_1_360.mp4").write_bytes(b"")  # emptied on disk
    client = await _restarted(service, aiohttp_client, tmp_path)
    listed = await (await client.get(f"/videos/{video['id']}", headers=AUTH)).json()
    assert listed["status"] == "error" and listed["state"] == "damaged"
    assert "media_1_360.mp4 holds 0 bytes" in listed["problem"]
    for name in ("master", "media_1_360", "media_2_720"):
        resp = await client.get(f"/vod/{slug}/{name}.mp4")
        assert resp.status == 410
        assert (await resp.json())["error"] == "video_damaged"


async def test_a_file_changed_on_disk_stops_being_served_once_checked(
    service: Service, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    await _saved_clip(service)
    (video,) = await (await service.client.get("/videos", headers=AUTH)).json()
    path = tmp_path / "videos" / video["slug"] / "media_3_1080.mp4"
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF
    path.write_bytes(bytes(body))
    client = await _restarted(service, aiohttp_client, tmp_path)
    for _ in range(100):  # the check runs in the background after start-up
        listed = await (await client.get(f"/videos/{video['id']}", headers=AUTH)).json()
        if listed["state"] == "damaged":
            break
        await asyncio.sleep(0.05)
    assert listed["state"] == "damaged" and "sha256" in listed["problem"]
    assert (await client.get(f"/vod/{video['slug']}/master.mp4")).status == 410
