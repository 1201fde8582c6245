from __future__ import annotations

from collections.abc import AsyncIterator

from tests.http.conftest import AUTH, Service


async def _chunks(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_put_ingest_plain_and_chunked(service: Service) -> None:
    r = service.feed.ladder[0]
    c = service.client
    assert (await c.put("/ingest/cam/low/init_0.mp4", data=r.init)).status == 201
    resp = await c.put("/ingest/cam/low/index0.m4s", data=_chunks(r.segments[0]))
    assert resp.status == 201
    assert (await resp.json()) == {"received": "segment"}
    resp = await c.post("/ingest/cam/low/index1.m4s", data=r.segments[1])
    assert resp.status == 201
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nindex0.m4s\n"
    assert (await c.put("/ingest/cam/low/index.m3u8", data=playlist)).status == 200
    assert (await c.delete("/ingest/cam/low/index0.m4s")).status == 204
    stream = await (await c.get("/streams/cam", headers=AUTH)).json()
    assert stream["renditions"][0]["segments"] == 2
    assert stream["renditions"][0]["height"] == 360  # from the media, not the name "low"


async def test_bad_media_is_400_and_stored_data_stays(service: Service) -> None:
    before = await service.store.stats()
    c = service.client
    for body in (b"garbage", service.feed.ladder[0].segments[0][:999]):
        resp = await c.put("/ingest/demo/0/index99.m4s", data=body)
        assert resp.status == 400
        assert (await resp.json())["error"] == "bad_media"
    assert (await service.store.stats()) == before


async def test_segment_before_init_is_409(service: Service) -> None:
    resp = await service.client.put(
        "/ingest/new/0/index0.m4s", data=service.feed.ladder[0].segments[0]
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "no_init_segment"


async def test_ingest_path_is_checked(service: Service) -> None:
    resp = await service.client.put("/ingest/demo/0/..%2Fx.m4s", data=b"x")
    assert resp.status == 404
    resp = await service.client.put("/ingest/-bad/0/a.m4s", data=b"x")
    assert resp.status == 404


async def test_ingest_key_and_size_limit(aiohttp_client, clock, ladder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from packager.config import Config
    from packager.http.app import create_app

    config = Config(
        api_keys=("k",), ingest_key="push-secret", max_segment_bytes=100_000, data_dir=tmp_path
    )
    client = await aiohttp_client(create_app(config, clock=clock, timers=False))
    init = ladder[0].init
    assert (await client.put("/ingest/s/0/init.mp4", data=init)).status == 401
    assert (await client.put("/ingest/s/0/init.mp4?key=wrong", data=init)).status == 401
    assert (await client.put("/ingest/s/0/init.mp4?key=push-secret", data=init)).status == 201
    resp = await client.put(
        "/ingest/s/0/init.mp4", data=init, headers={"Authorization": "Bearer push-secret"}
    )
    assert resp.status == 201
    big = ladder[2].segments[1]
    assert len(big) > 100_000
    resp = await client.put("/ingest/s/0/index0.m4s?key=push-secret", data=big)
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"
    resp = await client.put("/ingest/s/0/index0.m4s?key=push-secret", data=_chunks(big))
    assert resp.status == 413
