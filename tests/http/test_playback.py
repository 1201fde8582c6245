from __future__ import annotations

import itertools

import m3u8
import pytest

from tests.http.conftest import Service


async def test_hls_links_resolve_to_playlists_init_and_segments(service: Service) -> None:
    clip = await service.create_clip(duration=6, start=service.clock() - 10)
    master_path = clip["hls_master"].split(str(service.client.port), 1)[1]
    resp = await service.client.get(master_path)
    assert resp.status == 200
    assert resp.content_type == "application/vnd.apple.mpegurl"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    master = m3u8.loads(await resp.text())
    assert len(master.playlists) == 3
    base = master_path.rsplit("/", 1)[0]
    stored = await service.stored(clip["id"])
    for variant, cr in zip(master.playlists, stored.renditions, strict=True):
        media_resp = await service.client.get(f"{base}/{variant.uri}")
        assert media_resp.status == 200
        media = m3u8.loads(await media_resp.text())
        init = await service.client.get(f"{base}/{media.segments[0].init_section.uri}")
        assert init.status == 200 and init.content_type == "video/mp4"
        assert await init.read() == (await service.store.init(cr.inits[0])).data
        for seg, stored_seg in zip(media.segments, cr.segments, strict=True):
            got = await service.client.get(f"{base}/{seg.uri}")
            assert got.status == 200
            assert await got.read() == await service.store.segment_data(stored_seg.key)
            ttl = int(got.headers["Cache-Control"].split("max-age=")[1])
            assert 3590 <= ttl <= 3600


async def test_rendition_links_replace_master(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    base = f"/rec/demo/rec_{clip['id']}_"
    for name in clip["renditions"]:
        resp = await service.client.get(f"{base}{name}.m3u8")
        assert resp.status == 200
        assert m3u8.loads(await resp.text()).is_endlist
    assert (await service.client.get(f"{base}media_4_2160.m3u8")).status == 404
    assert (await service.client.get(f"{base}media_1_720.m3u8")).status == 404


async def test_expired_clip_links_answer_404(service: Service) -> None:
    now = service.clock()
    clip = await service.create_clip(duration=4, start=now - 8, expiration=now + 60)
    stored = await service.stored(clip["id"])
    paths = [
        f"/rec/demo/rec_{clip['id']}_master.m3u8",
        f"/rec/demo/rec_{clip['id']}_media_1_360.m3u8",
        f"/rec/demo/rec_{clip['id']}_media_1_360_init0.mp4",
        f"/rec/demo/rec_{clip['id']}_media_1_360_seg0.m4s",
    ]
    for path in paths:
        assert (await service.client.get(path)).status == 200
    service.clock.advance(60)
    for path in paths:
        resp = await service.client.get(path)
        assert resp.status == 404
        assert (await resp.json())["error"] == "clip_not_found"
        assert "max-age=5" in resp.headers["Cache-Control"]
    await service.tick()
    assert (await service.store.stats()).clips == 0
    assert stored.id not in [c.id for c in await service.store.all_clips()]


@pytest.mark.parametrize(
    "name",
    [
        "rec_{id}_master.m4s",
        "rec_{id}_master_seg0.m4s",
        "rec_{id}_media_1_360_seg99.m4s",
        "rec_{id}_media_1_360_init5.mp4",
        "rec_{id}_media_1_360_seg0.mp4",
        "rec_{id}_media_01_360.m3u8",
        "rec_{id}_media_1_360.m3u8x",
        "rec_{ID}_master.m3u8",
        "..%2F..%2Fetc%2Fpasswd",
        "rec_{id}_master.m3u8%00",
    ],
)
async def test_playback_paths_are_matched_strictly(service: Service, name: str) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    path = "/rec/demo/" + name.format(id=clip["id"], ID=clip["id"].upper())
    resp = await service.client.get(path)
    assert resp.status == 404


async def test_clip_is_not_reachable_through_another_stream(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    await service.client.post(
        "/streams", json={"id": "other"}, headers={"Authorization": "apikey test-key"}
    )
    resp = await service.client.get(f"/rec/other/rec_{clip['id']}_master.m3u8")
    assert resp.status == 404


async def test_head_answers_like_get_without_body(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    path = f"/rec/demo/rec_{clip['id']}_media_2_720_seg0.m4s"
    get = await service.client.get(path)
    head = await service.client.head(path)
    assert head.status == 200
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert await head.read() == b""


async def test_growing_playlist_has_short_max_age(service: Service) -> None:
    clip = await service.create_clip(duration=10)
    resp = await service.client.get(f"/rec/demo/rec_{clip['id']}_media_1_360.m3u8")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    parsed = m3u8.loads(await resp.text())
    assert parsed.playlist_type == "event" and not parsed.is_endlist


async def test_growing_clip_playlist_gains_segments_then_ends(service: Service) -> None:
    clip = await service.create_clip(duration=6)  # from now: every segment is still to come
    path = f"/rec/demo/rec_{clip['id']}_media_3_1080.m3u8"
    counts = []
    for k in range(15, 18):
        parsed = m3u8.loads(await (await service.client.get(path)).text())
        assert parsed.playlist_type == "event" and not parsed.is_endlist
        counts.append(len(parsed.segments))
        service.clock.advance(2)
        await service.push(k)
    final = m3u8.loads(await (await service.client.get(path)).text())
    assert counts == [0, 1, 2]
    # Still EVENT (RFC 8216 §4.3.3.5): only ENDLIST was appended.
    assert final.playlist_type == "event" and final.is_endlist and len(final.segments) == 3


async def test_every_version_of_a_growing_playlist_begins_with_every_earlier_one(
    service: Service,
) -> None:
    """What a player polling a growing clip sees: lines are only ever appended, whatever the
    order the encoder sends segments and playlists in, until ENDLIST."""
    clip = await service.create_clip(duration=7, start=service.clock() - 3)
    paths = [f"/rec/demo/rec_{clip['id']}_{name}.m3u8" for name in clip["renditions"]]
    versions: dict[str, list[str]] = {p: [] for p in paths}
    for k in range(15, 20):
        for path in paths:
            versions[path].append(await (await service.client.get(path)).text())
        service.clock.advance(1)
        for path in paths:  # mid-segment too: nothing may move while nothing arrived
            versions[path].append(await (await service.client.get(path)).text())
        service.clock.advance(1)
        await service.push(k)
    for path in paths:
        versions[path].append(await (await service.client.get(path)).text())
        texts = versions[path]
        assert "#EXT-X-ENDLIST" in texts[-1] and "#EXT-X-ENDLIST" not in texts[0]
        assert len({t.count("#EXTINF") for t in texts}) >= 3  # it really grew
        for earlier, later in itertools.pairwise(texts):
            assert later.startswith(earlier), (earlier, later)
