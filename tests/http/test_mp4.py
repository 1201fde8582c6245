"""Progressive MP4 links over HTTP: headers, Range, 425 while recording, cache, ffmpeg."""

from __future__ import annotations

import asyncio
import http.client
import logging
import math
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from fractions import Fraction
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.http import mp4 as mp4_http
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.package import mp4 as mp4_package
from packager.service import mp4 as mp4_service
from packager.store.model import Clip
from tests.conftest import T0, feed_past
from tests.http.conftest import Service
from tests.mp4_support import AAC_FRAME, VIDEO_FRAME, ServerThread, decode_with_ffmpeg, top_boxes

HEIGHTS = {"media_1_360", "media_2_720", "media_3_1080"}


async def _clip(service: Service, seconds: float = 4, ago: float = 10, **body: Any) -> str:
    made = await service.create_clip(duration=seconds, start=service.clock() - ago, **body)
    return f"/rec/demo/rec_{made['id']}"


async def test_mp4_links_serve_a_whole_progressive_file_with_its_headers(service: Service) -> None:
    base = await _clip(service)
    stored = await service.stored(base.rsplit("_", 1)[1])
    bodies = {}
    for name in ["master", *sorted(HEIGHTS)]:
        resp = await service.client.get(f"{base}_{name}.mp4")
        assert resp.status == 200
        body = await resp.read()
        bodies[name] = body
        assert resp.headers["Content-Type"] == "video/mp4"
        assert int(resp.headers["Content-Length"]) == len(body)
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        etag = resp.headers["ETag"]
        assert etag.startswith('"') and stored.id in etag and not etag.startswith("W/")
        assert parsedate_to_datetime(resp.headers["Last-Modified"]).timestamp() <= service.clock()
        ttl = int(resp.headers["Cache-Control"].removeprefix("public, max-age="))
        assert ttl == math.floor(stored.expiration - service.clock())
        assert [b[0] for b in top_boxes(body)] == [b"ftyp", b"moov", b"mdat"]
    assert bodies["master"] == bodies["media_3_1080"]
    disposition = (await service.client.head(f"{base}_media_1_360.mp4")).headers[
        "Content-Disposition"
    ]
    assert disposition.startswith('inline; filename="demo_')
    assert disposition.endswith('_media_1_360.mp4"')


async def test_head_answers_the_headers_without_a_body(service: Service) -> None:
    base = await _clip(service)
    get = await service.client.get(f"{base}_master.mp4")
    size = len(await get.read())
    head = await service.client.head(f"{base}_master.mp4")
    assert head.status == 200
    assert int(head.headers["Content-Length"]) == size
    assert head.headers["ETag"] == get.headers["ETag"]
    assert await head.read() == b""


async def test_one_range_answers_206_with_exactly_that_slice(service: Service) -> None:
    base = await _clip(service)
    full = await (await service.client.get(f"{base}_media_2_720.mp4")).read()
    a, b = len(full) // 3, len(full) // 3 + 99_999
    resp = await service.client.get(f"{base}_media_2_720.mp4", headers={"Range": f"bytes={a}-{b}"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {a}-{b}/{len(full)}"
    assert await resp.read() == full[a : b + 1]
    tail = await service.client.get(f"{base}_media_2_720.mp4", headers={"Range": "bytes=-500"})
    assert tail.status == 206 and await tail.read() == full[-500:]


async def test_safari_probe_gets_two_bytes_and_the_total_length(service: Service) -> None:
    base = await _clip(service)
    resp = await service.client.get(f"{base}_master.mp4", headers={"Range": "bytes=0-1"})
    assert resp.status == 206
    assert resp.headers["Content-Length"] == "2"
    total = int(resp.headers["Content-Range"].rsplit("/", 1)[1])
    assert resp.headers["Content-Range"] == f"bytes 0-1/{total}"
    assert await resp.read() == b"\x00\x00"  # the first two bytes of ftyp's size


@pytest.mark.parametrize("asked", ["bytes={size}-", "bytes={size}-{more}", "bytes=-0"])
async def test_a_range_past_the_end_answers_416_with_the_length(
    service: Service, asked: str
) -> None:
    base = await _clip(service)
    size = int((await service.client.head(f"{base}_master.mp4")).headers["Content-Length"])
    header = asked.format(size=size, more=size + 10)
    resp = await service.client.get(f"{base}_master.mp4", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    assert (await resp.json())["error"] == "range_not_satisfiable"


@pytest.mark.parametrize("asked", ["bytes=0-1,5-9", "bytes=9-5", "items=0-1", "bytes=x-"])
async def test_several_or_malformed_ranges_get_the_whole_file(service: Service, asked: str) -> None:
    base = await _clip(service)
    resp = await service.client.get(f"{base}_master.mp4", headers={"Range": asked})
    assert resp.status == 200
    assert len(await resp.read()) == int(resp.headers["Content-Length"])


async def test_if_range_sends_the_range_only_for_the_same_file(service: Service) -> None:
    base = await _clip(service)
    head = await service.client.head(f"{base}_master.mp4")
    size = int(head.headers["Content-Length"])
    for validator in (head.headers["ETag"], head.headers["Last-Modified"]):
        same = await service.client.get(
            f"{base}_master.mp4", headers={"Range": "bytes=10-19", "If-Range": validator}
        )
        assert same.status == 206 and len(await same.read()) == 10
    for stale in ('"another-file"', "W/" + head.headers["ETag"], "Thu, 01 Jan 1970 00:00:00 GMT"):
        other = await service.client.get(
            f"{base}_master.mp4", headers={"Range": "bytes=10-19", "If-Range": stale}
        )
        assert other.status == 200 and len(await other.read()) == size


async def test_a_cached_copy_is_revalidated_with_304(service: Service) -> None:
    base = await _clip(service)
    first = await service.client.get(f"{base}_master.mp4")
    resp = await service.client.get(
        f"{base}_master.mp4", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert resp.status == 304
    assert resp.headers["ETag"] == first.headers["ETag"]


async def test_a_clip_still_recording_answers_425_until_its_end(service: Service) -> None:
    now = service.clock()
    made = await service.create_clip(duration=5, start=now - 1)
    path = f"/rec/demo/rec_{made['id']}_master.mp4"
    resp = await service.client.get(path)
    assert resp.status == 425
    assert (await resp.json())["error"] == "too_early"
    retry = int(resp.headers["Retry-After"])
    assert 4 <= retry <= 4 + mp4_http.RETRY_MARGIN + 1
    assert (await service.client.head(path)).status == 425
    k = service.feed.pushed
    while not (await service.stored(made["id"])).complete:
        service.clock.advance(2)
        await service.push(k)
        k += 1
    assert (await service.client.get(path)).status == 200


async def test_the_layout_is_built_once_and_freed_when_the_clip_expires(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []

    def counting(*args: Any) -> mp4_package.Mp4Layout:
        builds.append(1)
        return mp4_package.build_layout(*args)

    monkeypatch.setattr(mp4_service, "build_layout", counting)
    now = service.clock()
    base = await _clip(service, expiration=now + 120)
    path = f"{base}_media_1_360.mp4"
    # A burst of first requests (a player's Range probes) shares one build.
    answers = await asyncio.gather(
        *(service.client.get(path, headers={"Range": f"bytes={i}-"}) for i in range(5))
    )
    assert [r.status for r in answers] == [206] * 5
    await service.client.get(path)
    await service.client.head(path)
    assert len(builds) == 2  # media_1_360's, and master.mp4's built when the clip completed
    cache = service.services.mp4
    assert len(cache) == 2  # and master.mp4's, built when the clip completed
    service.clock.advance(121)
    await service.tick()
    assert len(cache) == 0
    assert (await service.client.get(path)).status == 404


async def test_a_new_clips_master_mp4_is_built_when_its_cut_answers(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first GET, which a CDN sends right after the cut, builds nothing: its TTFB is a
    later GET's (bench section 3b)."""
    builds: list[int] = []

    def counting(*args: Any) -> mp4_package.Mp4Layout:
        builds.append(1)
        return mp4_package.build_layout(*args)

    monkeypatch.setattr(mp4_service, "build_layout", counting)
    monkeypatch.setattr(mp4_service, "INLINE_BUILD", 0)  # the build goes to a thread
    made = await service.create_clip(duration=8, start=service.clock() - 12)
    assert made["state"] == "complete", made
    assert builds == [1]
    highest = max(made["renditions"], key=lambda name: int(name.rsplit("_", 1)[1]))
    assert service.services.mp4.cached(made["id"], highest) is not None
    first = await service.client.get(f"/rec/demo/rec_{made['id']}_master.mp4")
    assert first.status == 200 and len(await first.read()) > 0
    assert builds == [1]


async def test_a_rendition_the_clip_lacks_answers_404(service: Service) -> None:
    base = await _clip(service)
    assert (await service.client.get(f"{base}_media_4_2160.mp4")).status == 404
    assert (await service.client.get(f"{base}_media_1_720.mp4")).status == 404


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-1", (0, 2)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-1000", (0, 100)),
        ("bytes=90-1000", (90, 100)),
        ("Bytes = 3 - 4", (3, 5)),
        ("bytes=0-1,3-4", None),
        ("bytes=4-3", None),
        ("bytes=-", None),
        ("pages=1-2", None),
        ("bytes=١-٢", None),  # noqa: RUF001 - non-ASCII digits are not digits here
    ],
)
def test_byte_range_parsing(header: str, expected: tuple[int, int] | None) -> None:
    assert mp4_http.byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_byte_range_past_the_end_is_unsatisfiable(header: str) -> None:
    with pytest.raises(mp4_http.RangeNotSatisfiable):
        mp4_http.byte_range(header, 100)


# ---- against a real server on a loopback port ------------------------------------------------


@dataclass
class Live:
    server: ServerThread
    clip: Clip
    bodies: dict[str, bytes]

    def path(self, name: str) -> str:
        return f"/rec/demo/rec_{self.clip.id}_{name}.mp4"

    def get(
        self, name: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.request("GET", self.path(name), headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, ladder: list[RecordedRendition]
) -> Iterator[Live]:
    clock = ManualClock(T0)
    config = Config(memory_budget=1 << 30, data_dir=tmp_path_factory.mktemp("mp4"))
    app = create_app(config, clock=clock, timers=False)
    services = app[SERVICES]
    with ServerThread(app) as server:
        origin = server.run(feed_past(DemoFeed(services.ingest, ladder, clock), clock, 15))
        # Starts inside replay segment 1 of loop 1 (audio leads video there); 3 segments, 6 s.
        clip = server.run(services.clips.create_clip("demo", duration=5, start=origin + 15))
        result = Live(server, clip, {})
        for name in ["master", *sorted(HEIGHTS)]:
            status, _, body = result.get(name)
            assert status == 200
            result.bodies[name] = body
        yield result


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_range_is_that_slice_of_the_whole_body(live: Live, data: st.DataObject) -> None:
    body = live.bodies["media_1_360"]
    size = len(body)
    offset = st.integers(0, size + 100)
    form = data.draw(st.sampled_from(["a-b", "a-", "-n"]))
    if form == "a-b":
        a = data.draw(offset)
        b = data.draw(st.integers(a, size + 100))
        header, expected = f"bytes={a}-{b}", (a, min(b + 1, size))
    elif form == "a-":
        a = data.draw(offset)
        header, expected = f"bytes={a}-", (a, size)
    else:
        n = data.draw(offset)
        header, expected = f"bytes=-{n}", (max(0, size - n), size)
    status, headers, got = live.get("media_1_360", {"Range": header})
    if expected[0] >= size or (form == "-n" and n == 0):
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        return
    assert status == 206
    assert got == body[expected[0] : expected[1]]
    assert headers["Content-Range"] == f"bytes {expected[0]}-{expected[1] - 1}/{size}"


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["master", *sorted(HEIGHTS)])
def test_ffmpeg_decodes_every_mp4_over_http_from_zero_to_the_clip_end(
    live: Live, ffmpeg_exe: str, name: str
) -> None:
    seen = decode_with_ffmpeg(ffmpeg_exe, live.server.base + live.path(name))
    assert seen.errors == ""
    duration = live.clip.duration
    assert duration == 6
    assert seen.start == 0
    assert seen.video_first == 0
    assert abs(Fraction(seen.audio_first)) <= AAC_FRAME
    assert abs(seen.duration - duration) <= VIDEO_FRAME
    assert abs(seen.video_end - duration) <= VIDEO_FRAME
    assert seen.audio_end <= duration + float(AAC_FRAME)


async def test_unreadable_if_range_dates_send_the_whole_file(service: Service) -> None:
    base = await _clip(service)
    path = f"{base}_master.mp4"
    whole = await (await service.client.get(path)).read()
    for date in ("Tue, 1 Jan 99999999999999999999 00:00:00 GMT", "yesterday", "Mon, 32 Foo"):
        resp = await service.client.get(path, headers={"Range": "bytes=0-1", "If-Range": date})
        assert resp.status == 200 and await resp.read() == whole


def test_a_hostile_range_header_is_parsed_in_linear_time() -> None:
    """`bytes=0-` and 8,100 spaces cost 250 ms of regex a request: a few clients starved all."""
    import time

    for header in ("bytes=0-" + " " * 8100, "bytes=" + " " * 8100 + "0-1", "bytes=" + "1" * 8100):
        started = time.perf_counter()
        for _ in range(100):
            assert mp4_http.byte_range(header, 10**9) is None
        assert (time.perf_counter() - started) / 100 < 0.005


async def test_a_client_that_hangs_up_mid_download_is_no_server_error(
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CDN aborting a fetch, a player seeking away: the download stops, nothing is logged
    above INFO (aiohttp logs an exception out of a handler as an ERROR with a traceback),
    and the next request is served. Run as `packager serve` runs it (aiohttp's test server
    cancels the handler instead)."""
    config = Config(api_keys=("k",), memory_budget=1 << 30, data_dir=tmp_path)
    app = create_app(config, clock=clock, timers=False)
    origin = await feed_past(DemoFeed(app[SERVICES].ingest, ladder, clock), clock, 60)
    clip = await app[SERVICES].clips.create_clip("demo", duration=110, start=origin + 1)
    path = f"/rec/demo/rec_{clip.id}_master.mp4"
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            size = int((await http.head(path)).headers["Content-Length"])
            assert size > 12 << 20  # more than socket buffers take while nobody reads
            caplog.set_level(logging.INFO)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.1)  # the server fills what buffers there are, then waits
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()  # unread data, no linger: a reset
            gone = 'packager_http_requests_total{method="GET",route="/rec/{stream_id}/{mp4}",status="499"}'
            text = ""
            for _ in range(50):
                await asyncio.sleep(0.05)
                text = await (await http.get("/metrics")).text()
                if gone in text:
                    break  # the GET has ended, counted as nginx counts a client gone
            assert f"{gone} 1.0" in text, [line for line in text.splitlines() if "mp4" in line]
            assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO] == []
            again = await http.get(path, headers={"Range": "bytes=0-99"})
            assert again.status == 206 and len(await again.read()) == 100
    finally:
        await runner.cleanup()
