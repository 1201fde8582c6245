from __future__ import annotations

from tests.http.conftest import Service


async def test_segments_revalidate_with_etag_and_last_modified(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    path = f"/rec/demo/rec_{clip['id']}_media_1_360_seg0.m4s"
    first = await service.client.get(path)
    assert first.status == 200
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    again = await service.client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    assert again.headers["Cache-Control"].startswith("public, max-age=")
    weak = await service.client.get(path, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status == 304
    since = await service.client.get(path, headers={"If-Modified-Since": modified})
    assert since.status == 304
    other = await service.client.get(path, headers={"If-None-Match": '"other"'})
    assert other.status == 200 and len(await other.read()) > 0
    old = await service.client.get(
        path, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status == 200


async def test_complete_clip_lives_in_cache_until_expiration(service: Service) -> None:
    now = service.clock()
    clip = await service.create_clip(duration=4, start=now - 8, expiration=now + 600)
    for suffix in ("master.m3u8", "media_2_720.m3u8", "media_2_720_init0.mp4"):
        resp = await service.client.get(f"/rec/demo/rec_{clip['id']}_{suffix}")
        assert resp.headers["Cache-Control"] == "public, max-age=600"
    service.clock.advance(100)
    resp = await service.client.get(f"/rec/demo/rec_{clip['id']}_media_2_720_seg1.m4s")
    assert resp.headers["Cache-Control"] == "public, max-age=500"


async def test_growing_playlist_etag_changes_as_it_grows(service: Service) -> None:
    clip = await service.create_clip(duration=6, start=service.clock() - 2)
    path = f"/rec/demo/rec_{clip['id']}_media_1_360.m3u8"
    first = await service.client.get(path)
    etag = first.headers["ETag"]
    assert "Last-Modified" not in first.headers
    assert (await service.client.get(path, headers={"If-None-Match": etag})).status == 304
    service.clock.advance(2)
    await service.push(15)
    grown = await service.client.get(path, headers={"If-None-Match": etag})
    assert grown.status == 200 and grown.headers["ETag"] != etag


async def test_cors_preflight_and_headers_on_playback(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    path = f"/rec/demo/rec_{clip['id']}_master.m3u8"
    pre = await service.client.options(
        path,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    assert "Range" in pre.headers["Access-Control-Allow-Headers"]
    got = await service.client.get(path, headers={"Origin": "https://player.example"})
    assert got.headers["Access-Control-Allow-Origin"] == "*"
    missing = await service.client.get("/rec/demo/rec_" + "0" * 32 + "_master.m3u8")
    assert missing.status == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "*"
    assert missing.headers["Cache-Control"] == "public, max-age=5"


async def test_complete_clip_playlists_are_rendered_once(service: Service) -> None:
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    cache = service.services.playlists._rendered
    paths = [
        f"/rec/demo/rec_{clip['id']}_master.m3u8",
        f"/rec/demo/rec_{clip['id']}_media_1_360.m3u8",
    ]
    first = [await (await service.client.get(p)).read() for p in paths]
    assert set(cache[clip["id"]]) == {("master", ""), ("media_1_360", "")}
    assert [await (await service.client.get(p)).read() for p in paths] == first
    growing = await service.create_clip(duration=6)
    await service.client.get(f"/rec/demo/rec_{growing['id']}_master.m3u8")
    assert growing["id"] not in cache
