from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from packager.clock import ManualClock
from packager.demo import RecordedRendition
from tests.http.conftest import AUTH, PUSH, AiohttpClient, Service


async def _chunks(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_put_ingest_plain_and_chunked(service: Service) -> None:
    r = service.feed.ladder[0]
    c = service.client
    assert (await c.put("/ingest/cam/low/init_0.mp4", data=r.init, headers=PUSH)).status == 201
    resp = await c.put("/ingest/cam/low/index0.m4s", data=_chunks(r.segments[0]), headers=PUSH)
    assert resp.status == 201
    assert (await resp.json()) == {"received": "segment"}
    resp = await c.post("/ingest/cam/low/index1.m4s", data=r.segments[1], headers=PUSH)
    assert resp.status == 201
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nindex0.m4s\n"
    assert (await c.put("/ingest/cam/low/index.m3u8", data=playlist, headers=PUSH)).status == 200
    assert (await c.delete("/ingest/cam/low/index0.m4s", headers=PUSH)).status == 204
    stream = await (await c.get("/streams/cam", headers=AUTH)).json()
    assert stream["renditions"][0]["segments"] == 2
    assert stream["renditions"][0]["height"] == 360  # from the media, not the name "low"


async def test_bad_media_is_400_and_stored_data_stays(service: Service) -> None:
    before = await service.store.stats()
    c = service.client
    for body in (b"garbage", service.feed.ladder[0].segments[0][:999]):
        resp = await c.put("/ingest/demo/0/index99.m4s", data=body, headers=PUSH)
        assert resp.status == 400
        assert (await resp.json())["error"] == "bad_media"
    assert (await service.store.stats()) == before


async def test_segment_before_init_is_409(service: Service) -> None:
    resp = await service.client.put(
        "/ingest/new/0/index0.m4s", data=service.feed.ladder[0].segments[0], headers=PUSH
    )
    assert resp.status == 409
    assert (await resp.json())["error"] == "no_init_segment"


async def test_ingest_path_is_checked(service: Service) -> None:
    resp = await service.client.put("/ingest/demo/0/..%2Fx.m4s", data=b"x", headers=PUSH)
    assert resp.status == 404
    resp = await service.client.put("/ingest/-bad/0/a.m4s", data=b"x", headers=PUSH)
    assert resp.status == 404


async def test_segments_past_the_size_limit_are_413(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
) -> None:
    from packager.config import Config
    from packager.http.app import create_app

    config = Config(
        api_keys=("k",), ingest_key="push-secret", max_segment_bytes=100_000, data_dir=tmp_path
    )
    client = await aiohttp_client(create_app(config, clock=clock, timers=False))
    key = {"Authorization": "Bearer push-secret"}
    resp = await client.put("/ingest/s/0/init.mp4", data=ladder[0].init, headers=key)
    assert resp.status == 201
    big = ladder[2].segments[1]
    assert len(big) > 100_000
    resp = await client.put("/ingest/s/0/index0.m4s", data=big, headers=key)
    assert resp.status == 413
    assert (await resp.json())["error"] == "too_large"
    resp = await client.put("/ingest/s/0/index0.m4s", data=_chunks(big), headers=key)
    assert resp.status == 413


async def test_an_upload_that_stops_sending_is_dropped_with_408(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
) -> None:
    import asyncio

    from packager.config import Config
    from packager.http.app import create_app

    config = Config(api_keys=("k",), ingest_key="push", body_timeout=0.3, data_dir=tmp_path)
    client = await aiohttp_client(create_app(config, clock=clock, timers=False))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    body = ladder[0].init
    writer.write(
        b"PUT /ingest/s/0/init.mp4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer push\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]  # and then nothing
    )
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status.split()[1] == b"408", status
    stats = await (await client.get("/stats", headers={"Authorization": "apikey k"})).json()
    assert stats["memory"]["uploading_bytes"] == 0 and stats["streams"] == 0
