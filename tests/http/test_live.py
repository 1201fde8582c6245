"""A stream's live DVR window over HTTP: `/live/{stream}/master.m3u8`, its renditions, inits
and segments, as a player (and the console) reads them. Playlists are parsed with m3u8, and
what they list is checked against the store's own DVR records and bytes."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import m3u8
import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.store.model import SegmentRef
from tests.conftest import feed_past
from tests.http.conftest import API_KEY, AUTH, AiohttpClient, Service

SECRET = "live-secret-for-tests"
DVR_SECONDS = 12.0  # six 2 s segments: the window rolls within a few pushes


@pytest.fixture
async def live_service(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
) -> Service:
    """Stream 'demo' with a 12 s DVR, full, and a server that signs links."""
    config = Config(
        api_keys=(API_KEY,), data_dir=tmp_path, playback_secret=SECRET, dvr_duration=DVR_SECONDS
    )
    app = create_app(config, clock=clock, timers=False)
    feed = DemoFeed(app[SERVICES].ingest, ladder, clock)
    origin = await feed_past(feed, clock, 6)
    return Service(await aiohttp_client(app), app, clock, feed, origin)


def _local(url: str) -> str:
    """A link's path and query, for the test client."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _near(path: str, uri: str) -> str:
    """A URI of a playlist, resolved against the playlist's path as a player does."""
    return urllib.parse.urljoin(path, uri)


async def _stream(s: Service, stream: str = "demo") -> dict[str, Any]:
    resp = await s.client.get(f"/streams/{stream}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _text(s: Service, path: str) -> str:
    resp = await s.client.get(path)
    assert resp.status == 200, (path, await resp.text())
    assert resp.content_type == "application/vnd.apple.mpegurl"
    return await resp.text()


async def _media(s: Service, master_path: str, index: int) -> tuple[str, m3u8.M3U8]:
    master = m3u8.loads(await _text(s, master_path))
    path = _near(master_path, master.playlists[index].uri)
    return path, m3u8.loads(await _text(s, path))


async def _push_live(s: Service, k: int, feed: DemoFeed | None = None, origin: float = 0) -> None:
    """The encoder sends segment `k` when it ends: the clock moves on to that end first."""
    feed = feed or s.feed
    origin = origin or s.origin
    start = feed.segment_start(k, origin)
    s.clock.now = max(s.clock.now, start + feed.durations[k % len(feed.durations)])
    await feed.push(k, start)


async def _dvr(s: Service, rendition: str) -> list[SegmentRef]:
    return await s.store.dvr_segments("demo", rendition)


async def test_a_stream_hands_out_a_signed_live_link_good_for_hours(
    live_service: Service,
) -> None:
    s = live_service
    stream = await _stream(s)
    link = urllib.parse.urlsplit(stream["live_hls"])
    assert link.path == "/live/demo/master.m3u8"
    query = urllib.parse.parse_qs(link.query)
    assert set(query) == {"expires", "token"}
    assert 3 * 3600 <= int(query["expires"][0]) - s.clock() <= 4 * 3600
    assert stream["public_live"] is False
    # Listed streams carry the same link: a CDN caches one window for all its watchers.
    listed = await s.client.get("/streams", headers=AUTH)
    assert [x["live_hls"] for x in await listed.json()] == [stream["live_hls"]]


async def test_live_master_lists_the_ladder_and_every_uri_carries_the_signature(
    live_service: Service,
) -> None:
    s = live_service
    stream = await _stream(s)
    master_path = _local(stream["live_hls"])
    query = urllib.parse.urlsplit(stream["live_hls"]).query
    master = m3u8.loads(await _text(s, master_path))

    assert [p.stream_info.resolution for p in master.playlists] == [
        (r["width"], r["height"]) for r in stream["renditions"]
    ]
    assert all(
        p.stream_info.codecs == r["codecs"]
        for p, r in zip(master.playlists, stream["renditions"], strict=True)
    )
    for variant, rendition in zip(master.playlists, stream["renditions"], strict=True):
        assert variant.uri == f"{rendition['name']}.m3u8?{query}"
        path = _near(master_path, variant.uri)
        text = await _text(s, path)
        media = m3u8.loads(text)
        dvr = await _dvr(s, rendition["ingest_name"])
        assert len(media.segments) == len(dvr) == 6
        assert text.count("#EXT-X-MAP:") == 1  # one init for the whole window
        init_uri = media.segments[0].init_section.uri
        assert init_uri.endswith(f"?{query}")
        init = await s.client.get(_near(path, init_uri))
        assert init.status == 200 and init.content_type == "video/mp4"
        assert await init.read() == (await s.store.init(dvr[0].init_id)).data
        for seg, ref in zip(media.segments, dvr, strict=True):
            assert seg.uri.endswith(f"?{query}")
            assert seg.program_date_time.timestamp() == pytest.approx(ref.start, abs=1e-3)
            assert seg.duration == pytest.approx(ref.duration, abs=1e-6)
            got = await s.client.get(_near(path, seg.uri))
            assert got.status == 200 and got.content_type == "video/iso.segment"
            assert await got.read() == await s.store.segment_data(ref.key)


async def test_live_window_slides_as_the_dvr_rolls(live_service: Service) -> None:
    s = live_service
    master_path = _local((await _stream(s))["live_hls"])
    path, before = await _media(s, master_path, 2)
    assert before.media_sequence == 0
    assert before.playlist_type is None and not before.is_endlist  # live: players may seek back
    first_uri = before.segments[0].uri

    for k in range(6, 9):
        await _push_live(s, k)
    s.clock.advance(0.5)  # past the edge, where segments end exactly 12 s ago
    await s.tick()

    _, after = await _media(s, master_path, 2)
    dvr = await _dvr(s, "2")
    assert after.media_sequence == dvr[0].key.seq == 3  # three new segments pushed three out
    assert len(after.segments) == 6
    assert after.segments[0].program_date_time == before.segments[3].program_date_time
    # Each segment keeps its URI as the window slides: players match them across reloads.
    assert [seg.uri for seg in after.segments[:3]] == [seg.uri for seg in before.segments[3:]]
    gone = await s.client.get(_near(path, first_uri))
    assert gone.status == 404
    assert gone.headers["Access-Control-Allow-Origin"] == "*"


async def test_an_encoder_restart_is_a_discontinuity_counted_once_it_rolls_out(
    live_service: Service, ladder: list[RecordedRendition]
) -> None:
    s = live_service
    master_path = _local((await _stream(s))["live_hls"])
    _, first = await _media(s, master_path, 0)  # the server has seen the window without it
    assert not first.discontinuity_sequence  # absent: 0

    # The encoder restarts: its media timeline starts again, its clock goes on.
    restarted = DemoFeed(s.services.ingest, ladder, s.clock)
    origin = s.clock() + 1.0
    await _push_live(s, 0, restarted, origin)
    await _push_live(s, 1, restarted, origin)
    path, media = await _media(s, master_path, 0)
    marked = [seg.discontinuity for seg in media.segments]
    assert marked == [False, False, False, False, True, False]
    assert not media.discontinuity_sequence
    assert (await _text(s, path)).count("#EXT-X-DISCONTINUITY\n") == 1

    for k in range(2, 6):  # roll the DVR until the restart's segment is first, then gone
        await _push_live(s, k, restarted, origin)
    _, media = await _media(s, master_path, 0)
    assert not any(seg.discontinuity for seg in media.segments)
    assert media.discontinuity_sequence == 1  # RFC 8216 §6.2.2: one tag left the window


async def test_live_links_without_a_valid_signature_answer_403(live_service: Service) -> None:
    s = live_service
    stream = await _stream(s)
    good = _local(stream["live_hls"])
    path, query = good.split("?")
    expires = urllib.parse.parse_qs(query)["expires"][0]
    clip = await s.create_clip(duration=4, start=s.clock() - 8, private=True)
    clip_query = urllib.parse.urlsplit(clip["hls_master"]).query
    other = await s.client.post("/streams", json={"id": "other", "name": "other"}, headers=AUTH)
    other_query = urllib.parse.urlsplit((await other.json())["live_hls"]).query
    refused = {
        "no signature": path,
        "tampered token": f"{path}?expires={expires}&token=AAAA{query.split('token=')[1][4:]}",
        "expiry moved": f"{path}?expires={int(expires) + 3600}&{query.split('&')[1]}",
        "another stream's link": f"{path}?{other_query}",
        "a private clip's link": f"{path}?{clip_query}",
        "a segment without it": "/live/demo/media_1_360_0.m4s",
        "a stream that does not exist": "/live/nosuch/master.m3u8",
    }
    for why, url in refused.items():
        resp = await s.client.get(url)
        assert resp.status == 403, why
        assert resp.headers["Access-Control-Allow-Origin"] == "*", why
        body = await resp.json()
        assert body["error"] == "forbidden" and body["detail"], why
    assert (await s.client.get(good)).status == 200
    s.clock.advance(4 * 3600 + 1)
    assert (await s.client.get(good)).status == 403  # the link expired


async def test_a_public_live_stream_plays_without_a_signature(
    live_service: Service, ladder: list[RecordedRendition]
) -> None:
    s = live_service
    resp = await s.client.post(
        "/streams",
        json={"id": "open", "name": "Open day", "public_live": True, "dvr_duration": 60},
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["public_live"] is True
    assert made["live_hls"].endswith("/live/open/master.m3u8")  # no query to carry
    await feed_past(DemoFeed(s.services.ingest, ladder, s.clock, stream_id="open"), s.clock, 3)

    master_path = _local(made["live_hls"])
    master = m3u8.loads(await _text(s, master_path))
    assert all("?" not in p.uri for p in master.playlists)
    path = _near(master_path, master.playlists[0].uri)
    media = m3u8.loads(await _text(s, path))
    assert len(media.segments) == 3 and all("?" not in seg.uri for seg in media.segments)
    assert (await s.client.get(_near(path, media.segments[0].uri))).status == 200
    # 'demo' stays private.
    assert (await s.client.get("/live/demo/master.m3u8")).status == 403


@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_public_live_must_be_true_or_false(live_service: Service, value: object) -> None:
    resp = await live_service.client.post(
        "/streams", json={"name": "x", "public_live": value}, headers=AUTH
    )
    if value is None:  # omitted is the default: private
        assert resp.status == 201 and (await resp.json())["public_live"] is False
        return
    assert resp.status == 400
    assert (await resp.json())["field"] == "public_live"


async def test_live_playlists_are_cached_a_second_and_segments_until_they_leave_the_dvr(
    live_service: Service,
) -> None:
    s = live_service
    master_path = _local((await _stream(s))["live_hls"])
    resp = await s.client.get(master_path)
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    etag = resp.headers["ETag"]
    again = await s.client.get(master_path, headers={"If-None-Match": etag})
    assert again.status == 304

    path, media = await _media(s, master_path, 1)
    dvr = await _dvr(s, "1")
    for seg, ref in zip(media.segments, dvr, strict=True):
        got = await s.client.get(_near(path, seg.uri))
        max_age = int(got.headers["Cache-Control"].removeprefix("public, max-age="))
        assert max_age == int(ref.end + DVR_SECONDS - s.clock())
        assert got.headers["Access-Control-Allow-Origin"] == "*"
        revalidated = await s.client.get(
            _near(path, seg.uri), headers={"If-None-Match": got.headers["ETag"]}
        )
        assert revalidated.status == 304

    preflight = await s.client.options(master_path)
    assert preflight.status == 204
    assert "Range" in preflight.headers["Access-Control-Allow-Headers"]


async def test_live_files_that_do_not_exist_answer_404(live_service: Service) -> None:
    s = live_service
    query = urllib.parse.urlsplit((await _stream(s))["live_hls"]).query
    for name in [
        "media_4_1080.m3u8",  # no fourth rendition
        "media_1_720.m3u8",  # the first is 360 high
        "media_1_360_99.m4s",  # not pushed yet
        "media_1_360_init_" + "0" * 32 + ".mp4",  # an init the window does not use
        "media_1_360_01.m4s",
        "index.m3u8",
        "..%2Fmaster.m3u8",
    ]:
        resp = await s.client.get(f"/live/demo/{name}?{query}")
        assert resp.status == 404, name
        assert (await resp.json())["error"].endswith("not_found"), name


async def test_live_window_of_a_stream_with_no_media_yet_answers_409(
    live_service: Service,
) -> None:
    s = live_service
    made = await s.client.post("/streams", json={"id": "empty", "name": "e"}, headers=AUTH)
    link = _local((await made.json())["live_hls"])
    resp = await s.client.get(link)
    assert resp.status == 409
    assert (await resp.json())["error"] == "no_media_in_dvr"


async def test_without_a_playback_secret_there_is_no_live_link(service: Service) -> None:
    stream = await _stream(service)
    assert stream["live_hls"] is None
    assert (await service.client.get("/live/demo/master.m3u8")).status == 403
