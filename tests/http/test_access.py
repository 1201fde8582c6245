from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from pathlib import Path

import m3u8
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.http import signing
from packager.http.accesslog import JsonAccessLogger
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.service import mp4 as mp4_service
from tests.conftest import feed_past
from tests.http.conftest import API_KEY, AUTH, AiohttpClient, Service

SECRET = "playback-secret-for-tests"


@pytest.fixture
async def private_service(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
) -> Service:
    config = Config(api_keys=(API_KEY,), data_dir=tmp_path, playback_secret=SECRET)
    app = create_app(config, clock=clock, timers=False)
    feed = DemoFeed(app[SERVICES].ingest, ladder, clock)
    origin = await feed_past(feed, clock, 8)
    return Service(await aiohttp_client(app), app, clock, feed, origin)


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_private_clip_plays_only_through_its_signed_links(private_service: Service) -> None:
    s = private_service
    clip = await s.create_clip(duration=4, start=s.clock() - 8, private=True)
    assert clip["private"] is True
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(clip["hls_master"]).query)
    assert query["expires"] == [str(int(clip["expiration"]))] and query["token"]
    bare = urllib.parse.urlsplit(clip["hls_master"]).path
    denied = await s.client.get(bare)
    assert denied.status == 403
    assert (await denied.json())["error"] == "forbidden"
    master = await s.client.get(_path(clip["hls_master"]))
    assert master.status == 200
    base = bare.rsplit("/", 1)[0]
    for variant in m3u8.loads(await master.text()).playlists:
        assert "token=" in variant.uri  # players drop the playlist's query: every URI carries it
        media = await s.client.get(f"{base}/{variant.uri}")
        assert media.status == 200
        parsed = m3u8.loads(await media.text())
        for uri in [parsed.segments[0].init_section.uri, parsed.segments[0].uri]:
            assert (await s.client.get(f"{base}/{uri}")).status == 200
            assert (await s.client.get(f"{base}/{uri.split('?')[0]}")).status == 403
    assert (await s.client.get(_path(clip["mp4_master"]))).status == 200
    assert (await s.client.get(urllib.parse.urlsplit(clip["mp4_master"]).path)).status == 403


async def test_tampered_or_expired_tokens_are_refused(private_service: Service) -> None:
    s = private_service
    clip = await s.create_clip(duration=4, start=s.clock() - 8, private=True)
    path = urllib.parse.urlsplit(clip["hls_master"]).path
    resource = f"rec/demo/{clip['id']}"
    good = signing.query(SECRET, resource, int(s.clock()) + 100)
    assert (await s.client.get(f"{path}?{good}")).status == 200
    expired = signing.query(SECRET, resource, int(s.clock()) - 1)
    resp = await s.client.get(f"{path}?{expired}")
    assert resp.status == 403 and "expired" in (await resp.json())["detail"]
    other_clip = signing.query(SECRET, "rec/demo/" + "0" * 32, int(s.clock()) + 100)
    assert (await s.client.get(f"{path}?{other_clip}")).status == 403
    wrong_secret = signing.query("guess", resource, int(s.clock()) + 100)
    assert (await s.client.get(f"{path}?{wrong_secret}")).status == 403
    stretched = good.replace(f"expires={int(s.clock()) + 100}", f"expires={int(s.clock()) + 10**6}")
    assert (await s.client.get(f"{path}?{stretched}")).status == 403
    assert (await s.client.get(f"{path}?expires=abc&token=x")).status == 403


async def test_public_clips_need_no_token(private_service: Service) -> None:
    s = private_service
    clip = await s.create_clip(duration=4, start=s.clock() - 8)
    assert "?" not in clip["hls_master"]
    assert (await s.client.get(_path(clip["hls_master"]))).status == 200


async def test_private_vod_downloads_are_signed(private_service: Service) -> None:
    s = private_service
    now = s.clock()
    await s.create_clip(duration=4, start=now - 8, private=True, vod_required=True)
    await s.services.saver.drain()
    (video,) = await (await s.client.get("/videos", headers=AUTH)).json()
    link = video["mp4_master"]
    assert "token=" in link
    got = await s.client.get(_path(link))
    assert got.status == 200
    assert int(got.headers["Cache-Control"].split("max-age=")[1]) <= 86400
    assert (await s.client.get(urllib.parse.urlsplit(link).path)).status == 403


async def test_private_clip_needs_a_playback_secret(service: Service) -> None:
    resp = await service.client.post(
        "/streams/demo/clip_recording",
        json={"duration": 4, "start": service.clock() - 8, "private": True},
        headers=AUTH,
    )
    assert resp.status == 400 and (await resp.json())["field"] == "private"


async def test_a_burst_of_new_mp4s_waits_for_a_build_slot_then_past_the_bound_gets_503(
    service: Service,
) -> None:
    """Builds run a few at a time; up to twice as many requests queue for a slot (instead of
    an immediate 503, as 98 of 1,000 first GETs got in the churn bench); past that, 503."""
    clips = [await service.create_clip(duration=4, start=service.clock() - 8) for _ in range(5)]
    builds = service.services.mp4
    await asyncio.sleep(0.2)  # let each master.mp4's prebuild finish
    slots = [await builds._slots.acquire() for _ in range(4)]  # every build slot busy
    queued = [
        asyncio.ensure_future(service.client.get(f"/rec/demo/rec_{c['id']}_{r}.mp4"))
        for c in clips[:4]
        for r in ("media_1_360", "media_2_720")
    ]
    await asyncio.sleep(0.2)
    assert not any(q.done() for q in queued)  # waiting, not refused
    refused = await service.client.get(f"/rec/demo/rec_{clips[4]['id']}_media_1_360.mp4")
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["error"] == "overloaded"
    for _ in slots:
        builds._slots.release()
    answers = await asyncio.gather(*queued)
    assert [a.status for a in answers] == [200] * 8


async def test_a_request_that_waits_too_long_for_a_build_slot_gets_503(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mp4_service, "QUEUE_WAIT", 0.3)
    clip = await service.create_clip(duration=4, start=service.clock() - 8)
    builds = service.services.mp4
    await asyncio.sleep(0.2)
    slots = [await builds._slots.acquire() for _ in range(4)]
    resp = await service.client.get(f"/rec/demo/rec_{clip['id']}_media_1_360.mp4")
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    for _ in slots:
        builds._slots.release()
    assert (await service.client.get(f"/rec/demo/rec_{clip['id']}_media_1_360.mp4")).status == 200


async def test_clip_ids_are_128_random_bits(service: Service) -> None:
    ids = {
        (await service.create_clip(duration=2, start=service.clock() - 4))["id"] for _ in range(50)
    }
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    # Random ids vary in every one of their 128 bits across 50 draws (a bit stuck at one value
    # has probability 2**-49); counters, timestamps or short random parts leave bits fixed.
    values = [int(i, 16) for i in ids]
    for bit in range(128):
        assert len({(v >> bit) & 1 for v in values}) == 2, f"bit {bit} never changes"


def test_access_log_carries_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request(
        "PUT",
        "/ingest/cam/0/index1.m4s?key=ingest-secret",
        headers={"Authorization": "apikey api-secret", "User-Agent": "Lavf/62"},
    )
    logger = logging.getLogger("packager.access.test")
    with caplog.at_level(logging.INFO, logger="packager.access.test"):
        JsonAccessLogger(logger, "").log(request, web.Response(status=201), 0.0042)
    (record,) = caplog.records
    assert '"path":"/ingest/cam/0/index1.m4s"' in record.message
    assert "secret" not in record.message


async def test_a_key_that_is_not_utf8_is_refused_with_401(service: Service) -> None:
    reader, writer = await asyncio.open_connection(service.client.host, service.client.port)
    writer.write(
        b"GET /streams HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xe9\xff\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401")
    assert b'"error":"unauthorized"' in answer


async def test_an_expiry_of_non_ascii_digits_is_403_not_500(private_service: Service) -> None:
    """'²' is a digit to str.isdigit() and not to int(): it was a 500."""
    s = private_service
    clip = await s.create_clip(duration=4, start=s.clock() - 8, private=True)
    bare = urllib.parse.urlsplit(clip["hls_master"]).path
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(clip["hls_master"]).query)["token"][0]
    for expires in ("²", "١٢٣", "1e9", "-1", " 1"):
        query = urllib.parse.urlencode({"expires": expires, "token": token})
        resp = await s.client.get(f"{bare}?{query}")
        assert resp.status == 403, expires
        assert (await resp.json())["error"] == "forbidden"
