"""A frame-accurate clip's life with its re-encodes: waiting for them (503 + Retry-After past the
bound), their bytes against the memory budget until expiry, a clip that grows, a VOD copy,
private links. ffmpeg judges what is served; it runs in a thread, the server on the loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import m3u8
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, load_ladder
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.media.init import parse_init
from packager.media.rewrite import avc_parameter_set_ids
from packager.service import frames as frames_service
from packager.service.compose import Services
from tests.conftest import MakeStore, feed_past
from tests.frames import frame_numbers
from tests.http.conftest import AUTH, AiohttpClient

NUMBERED = Path(__file__).resolve().parents[2] / "fixtures" / "numbered"
FPS = 30


class Numbered:
    def __init__(
        self,
        client: TestClient[web.Request, web.Application],
        app: web.Application,
        clock: ManualClock,
        feed: DemoFeed,
        origin: float,
    ) -> None:
        self.client, self.app, self.clock, self.feed, self.origin = client, app, clock, feed, origin

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    def at(self, frame: int) -> float:
        return self.origin + frame / FPS

    async def push(self, k: int) -> None:
        start = self.feed.segment_start(k, self.origin)
        self.clock.now = max(self.clock.now, start + 2.0)
        await self.feed.push(k, start)

    async def clip(self, **body: Any) -> dict[str, Any]:
        resp = await self.client.post("/streams/demo/clip_recording", json=body, headers=AUTH)
        assert resp.status == 201, await resp.text()
        made: dict[str, Any] = await resp.json()
        return made

    def path(self, clip: dict[str, Any], name: str) -> str:
        return f"/rec/demo/rec_{clip['id']}_{name}"

    def url(self, clip: dict[str, Any], name: str) -> str:
        return str(self.client.make_url(self.path(clip, name)))

    async def frames(self, ffmpeg_exe: str, clip: dict[str, Any], name: str) -> list[int]:
        return await asyncio.to_thread(frame_numbers, ffmpeg_exe, self.url(clip, name))


async def numbered_service(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    make_store: MakeStore,
    segments: int = 6,
    **settings: Any,
) -> Numbered:
    config = Config(api_keys=("test-key",), memory_budget=1 << 30, data_dir=tmp_path, **settings)
    app = create_app(config, clock=clock, timers=False, store=make_store(1 << 30))
    feed = DemoFeed(app[SERVICES].ingest, load_ladder(NUMBERED), clock)
    origin = await feed_past(feed, clock, segments)
    client = await aiohttp_client(app)
    return Numbered(client, app, clock, feed, origin)


@pytest.fixture
async def numbered(
    aiohttp_client: AiohttpClient, clock: ManualClock, tmp_path: Path, make_store: MakeStore
) -> Numbered:
    return await numbered_service(aiohttp_client, clock, tmp_path, make_store)


async def test_a_re_encode_not_ready_in_time_answers_503_with_retry_after(
    numbered: Numbered, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames_service, "WAIT_FOR_ENCODE", 0.2)
    encoder = numbered.services.frames.encoder
    for _ in range(encoder.jobs):  # every encoder slot is busy
        await encoder.slots.acquire()
    clip = await numbered.clip(start=numbered.at(45), duration=3, frame_accurate=True)
    # The playlists answer at once.
    resp = await numbered.client.get(numbered.path(clip, "media_1_180.m3u8"))
    assert resp.status == 200
    resp = await numbered.client.get(numbered.path(clip, "media_1_180_seg0.m4s"))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "not_ready"
    resp = await numbered.client.get(numbered.path(clip, "media_1_180_init0.mp4"))
    assert resp.status == 503
    for _ in range(encoder.jobs):
        encoder.slots.release()
    monkeypatch.setattr(frames_service, "WAIT_FOR_ENCODE", 30.0)
    resp = await numbered.client.get(numbered.path(clip, "media_1_180_seg0.m4s"))
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("public, max-age=")


async def test_re_encoded_segments_count_against_the_budget_until_the_clip_expires(
    numbered: Numbered,
) -> None:
    store = numbered.services.store
    before = await store.stats()
    clip = await numbered.clip(
        start=numbered.at(47), duration=1, frame_accurate=True, expiration=numbered.clock() + 120
    )
    sizes = 0
    for rendition in ("media_1_180", "media_2_360"):
        for name in ("init0.mp4", "seg0.m4s", "init1.mp4", "seg1.m4s"):
            resp = await numbered.client.get(numbered.path(clip, f"{rendition}_{name}"))
            assert resp.status == 200, name
            sizes += len(await resp.read())
    held = await store.stats()
    # Frames 47..76: a partial GOP at each end, re-encoded, each an init and a segment, for
    # each rendition; the clip holds those bytes alone.
    assert held.clip_only_bytes - before.clip_only_bytes == sizes
    assert held.pinned_bytes - before.pinned_bytes >= sizes
    numbered.clock.advance(121)
    await numbered.services.timers.tick()
    after = await store.stats()
    assert after.clip_only_bytes == before.clip_only_bytes
    assert after.pinned_bytes == before.pinned_bytes
    resp = await numbered.client.get(numbered.path(clip, "media_1_180_seg0.m4s"))
    assert resp.status == 404


async def test_the_re_encoded_init_is_the_renditions_codec_with_new_parameter_sets(
    numbered: Numbered,
) -> None:
    clip = await numbered.clip(start=numbered.at(45), duration=3, frame_accurate=True)
    for n, rendition in enumerate(load_ladder(NUMBERED)):
        source = rendition.parsed_init
        name = clip["renditions"][n]
        resp = await numbered.client.get(numbered.path(clip, f"{name}_init0.mp4"))
        assert resp.status == 200
        encoded = parse_init(await resp.read())
        assert encoded.main.codec == source.main.codec  # same profile, constraints, level
        assert (encoded.main.width, encoded.main.height) == (source.main.width, source.main.height)
        assert [t.timescale for t in encoded.tracks] == [t.timescale for t in source.tracks]
        assert [t.edits for t in encoded.tracks] == [t.edits for t in source.tracks]
        assert encoded.audio is not None and source.audio is not None
        assert encoded.audio.stsd == source.audio.stsd
        # Its own SPS/PPS under a new id, and the source's beside them.
        assert avc_parameter_set_ids(encoded.main.stsd) == ({0, 1}, {0, 1})
        resp = await numbered.client.get(numbered.path(clip, f"{name}_init1.mp4"))
        assert await resp.read() == source.data


async def test_a_growing_frame_accurate_clip_decides_its_tail_when_its_end_arrives(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    make_store: MakeStore,
    ffmpeg_exe: str,
) -> None:
    service = await numbered_service(aiohttp_client, clock, tmp_path, make_store, segments=3)
    clip = await service.clip(start=service.at(45), duration=7, frame_accurate=True)
    assert clip["complete"] is False
    assert clip["start_precise"] == pytest.approx(service.at(45), abs=1e-3)
    resp = await service.client.get(service.path(clip, "media_1_180.mp4"))
    assert resp.status == 425
    growing = await (await service.client.get(service.path(clip, "media_1_180.m3u8"))).text()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in growing and "#EXT-X-ENDLIST" not in growing
    assert len(m3u8.loads(growing).segments) == 3  # the head re-encoded, segments 1 and 2
    for k in (3, 4):
        await service.push(k)
    stored = await service.services.store.clip("demo", clip["id"])
    assert stored.complete
    done = await (await service.client.get(service.path(clip, "media_1_180.m3u8"))).text()
    assert done.startswith(growing)  # an EVENT playlist is only appended to
    assert done.rstrip().endswith("#EXT-X-ENDLIST")
    expected = list(range(45, 45 + 7 * FPS))
    assert await service.frames(ffmpeg_exe, clip, "media_1_180.m3u8") == expected
    assert await service.frames(ffmpeg_exe, clip, "media_1_180.mp4") == expected
    resp = await service.client.get("/streams/demo/clip_recording", headers=AUTH)
    (listed,) = [c for c in await resp.json() if c["id"] == clip["id"]]
    assert listed["duration_precise"] == 7.0


async def test_a_frame_accurate_vod_copy_is_the_frame_accurate_mp4(
    numbered: Numbered, ffmpeg_exe: str
) -> None:
    clip = await numbered.clip(
        start=numbered.at(47), duration=2, frame_accurate=True, vod_required=True
    )
    await asyncio.wait_for(asyncio.gather(*list(numbered.services.saver.pending)), timeout=60)
    resp = await numbered.client.get("/streams/demo/clip_recording", headers=AUTH)
    (listed,) = [c for c in await resp.json() if c["id"] == clip["id"]]
    assert listed["video_id"] is not None
    resp = await numbered.client.get(f"/videos/{listed['video_id']}", headers=AUTH)
    video = await resp.json()
    assert video["duration"] == 2000
    url = next(c["mp4_url"] for c in video["converted_videos"] if "180" in json.dumps(c))
    path = "/" + url.split("/", 3)[3]
    saved = str(numbered.client.make_url(path))
    assert await asyncio.to_thread(frame_numbers, ffmpeg_exe, saved) == list(range(47, 107))


async def test_a_private_frame_accurate_clip_plays_through_its_signed_links(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    make_store: MakeStore,
    ffmpeg_exe: str,
) -> None:
    service = await numbered_service(
        aiohttp_client, clock, tmp_path, make_store, playback_secret="a-secret-of-ours"
    )
    clip = await service.clip(start=service.at(47), duration=2, frame_accurate=True, private=True)
    resp = await service.client.get(service.path(clip, "media_1_180_seg0.m4s"))
    assert resp.status == 403  # unsigned
    query = clip["hls_master"].split("?", 1)[1]  # a link signs every file of its clip
    assert "token=" in query
    url = service.url(clip, f"media_1_180.m3u8?{query}")
    assert await asyncio.to_thread(frame_numbers, ffmpeg_exe, url) == list(range(47, 107))


def hevc_ladder(ffmpeg_exe: str, folder: Path) -> Path:
    """Two 2 s HEVC segments from ffmpeg's HLS muxer (fMP4), one rendition."""
    out = folder / "hevc"
    (out / "0").mkdir(parents=True)

    subprocess.run(
        [
            *(ffmpeg_exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30"),
            *("-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "4"),
            *("-c:v", "libx265", "-x265-params", "log-level=error:keyint=60:min-keyint=60"),
            *("-tag:v", "hvc1", "-c:a", "aac", "-f", "hls", "-hls_time", "2"),
            *("-hls_segment_type", "fmp4", "-hls_playlist_type", "vod", "0/index.m3u8"),
        ],
        check=True,
        cwd=out,
    )
    return out


async def test_frame_accurate_needs_video_it_can_re_encode(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    tmp_path: Path,
    make_store: MakeStore,
    ffmpeg_exe: str,
) -> None:
    config = Config(api_keys=("test-key",), memory_budget=1 << 30, data_dir=tmp_path)
    app = create_app(config, clock=clock, timers=False, store=make_store(1 << 30))
    ladder = load_ladder(await asyncio.to_thread(hevc_ladder, ffmpeg_exe, tmp_path))
    origin = await feed_past(DemoFeed(app[SERVICES].ingest, ladder, clock), clock, 2)
    client = await aiohttp_client(app)
    body = {"start": origin + 0.5, "duration": 2, "frame_accurate": True}
    resp = await client.post("/streams/demo/clip_recording", json=body, headers=AUTH)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["field"] == "frame_accurate" and "hvc1" in answer["detail"]
    # Livepeer's clips are frame-accurate where they can be: here, cut on segments instead.
    start_ms = round((origin + 0.5) * 1000)
    livepeer = {"playbackId": "demo", "startTime": start_ms, "endTime": start_ms + 2000}
    resp = await client.post("/clip", json=livepeer, headers=AUTH)
    assert resp.status == 200, await resp.text()
    clip_id = (await resp.json())["asset"]["id"]
    assert not (await app[SERVICES].store.clip("demo", clip_id)).frame_accurate
    resp = await client.post("/clip", json={**livepeer, "frameAccurate": True}, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["errors"]
