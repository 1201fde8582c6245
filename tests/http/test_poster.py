"""A clip's poster, `rec_{clip}_poster.jpg`: its first shown frame as a JPEG, judged by ffmpeg.

The media is the numbered ladder (fixtures/numbered/), whose every frame carries its own number:
the poster must read as the number of the first frame the clip's own HLS shows.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, load_ladder
from packager.http.app import create_app
from packager.http.keys import SERVICES
from tests.conftest import feed_past
from tests.frames import frame_numbers
from tests.http.conftest import API_KEY, AUTH, AiohttpClient, Service

NUMBERED = Path(__file__).resolve().parents[2] / "fixtures" / "numbered"
SECRET = "poster-secret-for-tests"


def jpeg_size(ffmpeg_exe: str, jpeg: bytes) -> tuple[int, int]:
    """Decode a JPEG with ffmpeg; its width and height (it raises if it does not decode)."""
    result = subprocess.run(
        [
            *(ffmpeg_exe, "-hide_banner", "-f", "image2pipe", "-c:v", "mjpeg", "-i", "pipe:0"),
            *("-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"),
        ],
        input=jpeg,
        capture_output=True,
        check=False,
        timeout=60,
    )
    log = result.stderr.decode(errors="replace")
    found = re.search(r"Video: mjpeg\b.*?, (\d+)x(\d+)", log)
    assert result.returncode == 0 and found is not None, log
    width, height = int(found[1]), int(found[2])
    assert len(result.stdout) == width * height, "the JPEG did not decode to a whole picture"
    return width, height


@pytest.fixture
async def numbered(aiohttp_client: AiohttpClient, clock: ManualClock, tmp_path: Path) -> Service:
    """Stream 'demo' fed 16 s of the numbered ladder, on a server that signs private links."""
    config = Config(api_keys=(API_KEY,), data_dir=tmp_path, playback_secret=SECRET)
    app = create_app(config, clock=clock, timers=False)
    feed = DemoFeed(app[SERVICES].ingest, load_ladder(NUMBERED), clock)
    origin = await feed_past(feed, clock, 8)
    return Service(await aiohttp_client(app), app, clock, feed, origin)


def _local(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_poster_is_the_first_frame_the_clip_shows(numbered: Service, ffmpeg_exe: str) -> None:
    s = numbered
    clip = await s.create_clip(duration=3, start=s.clock() - 9)
    assert clip["poster"] == str(s.client.make_url(f"/rec/demo/rec_{clip['id']}_poster.jpg"))

    resp = await s.client.get(_local(clip["poster"]))
    assert resp.status == 200
    assert resp.content_type == "image/jpeg"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    jpeg = await resp.read()

    stream = await (await s.client.get("/streams/demo", headers=AUTH)).json()
    top = stream["renditions"][-1]
    assert jpeg_size(ffmpeg_exe, jpeg) == (top["width"], top["height"]) == (640, 360)
    poster_file = s.app[SERVICES].config.data_dir / "poster.jpg"
    poster_file.write_bytes(jpeg)
    shown = await asyncio.to_thread(frame_numbers, ffmpeg_exe, str(poster_file))
    # What a player shows first: the highest rendition's own playlist, decoded from its start.
    top_playlist = str(
        s.client.make_url(f"/rec/demo/rec_{clip['id']}_{clip['renditions'][-1]}.m3u8")
    )
    played = await asyncio.to_thread(frame_numbers, ffmpeg_exe, top_playlist)
    assert shown == [played[0]]
    assert played[0] % 60 == 0  # a segment's first frame: the replay's key frames fall every 60


async def test_poster_lives_in_caches_until_the_clip_expires_and_revalidates(
    numbered: Service,
) -> None:
    s = numbered
    now = s.clock()
    clip = await s.create_clip(duration=3, start=now - 9, expiration=now + 600)
    resp = await s.client.get(_local(clip["poster"]))
    assert resp.headers["Cache-Control"] == "public, max-age=600"
    etag = resp.headers["ETag"]
    s.clock.advance(100)
    again = await s.client.get(_local(clip["poster"]), headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["Cache-Control"] == "public, max-age=500"
    head = await s.client.head(_local(clip["poster"]))
    assert head.status == 200 and head.headers["ETag"] == etag
    assert int(head.headers["Content-Length"]) == len(await resp.read())


async def test_poster_before_the_clips_first_frame_answers_425_then_arrives(
    numbered: Service, ffmpeg_exe: str
) -> None:
    s = numbered
    clip = await s.create_clip(duration=6, start=s.clock())  # all of it still ahead
    assert clip["state"] == "growing"
    early = await s.client.get(_local(clip["poster"]))
    assert early.status == 425
    assert int(early.headers["Retry-After"]) >= 1
    assert (await early.json())["error"] == "too_early"
    assert early.headers["Access-Control-Allow-Origin"] == "*"

    s.clock.advance(2)
    await s.push(8)  # the encoder sends the clip's first segment
    resp = await s.client.get(_local(clip["poster"]))
    assert resp.status == 200
    assert jpeg_size(ffmpeg_exe, await resp.read()) == (640, 360)


async def test_poster_answers_404_after_expiry_and_is_dropped(numbered: Service) -> None:
    s = numbered
    now = s.clock()
    clip = await s.create_clip(duration=3, start=now - 9, expiration=now + 60)
    assert (await s.client.get(_local(clip["poster"]))).status == 200
    assert len(s.services.posters) == 1
    s.clock.advance(60)
    await s.tick()
    gone = await s.client.get(_local(clip["poster"]))
    assert gone.status == 404
    assert gone.headers["Access-Control-Allow-Origin"] == "*"
    assert len(s.services.posters) == 0


async def test_private_clip_poster_needs_its_signature(numbered: Service) -> None:
    s = numbered
    clip = await s.create_clip(duration=3, start=s.clock() - 9, private=True)
    signed = urllib.parse.urlsplit(clip["poster"])
    assert signed.query == urllib.parse.urlsplit(clip["hls_master"]).query
    assert (await s.client.get(signed.path)).status == 403
    tampered = signed.path + "?" + signed.query.replace("token=", "token=x")
    assert (await s.client.get(tampered)).status == 403
    resp = await s.client.get(_local(clip["poster"]))
    assert resp.status == 200 and resp.content_type == "image/jpeg"


async def test_clips_list_their_poster(numbered: Service) -> None:
    s = numbered
    clip = await s.create_clip(duration=3, start=s.clock() - 9, name="<b>goal</b>")
    assert clip["name"] == "<b>goal</b>"
    listed = await (await s.client.get("/streams/demo/clip_recording", headers=AUTH)).json()
    assert [(c["id"], c["poster"], c["name"]) for c in listed] == [
        (clip["id"], clip["poster"], "<b>goal</b>")
    ]


async def test_concurrent_first_requests_all_get_the_same_poster(numbered: Service) -> None:
    s = numbered
    clip = await s.create_clip(duration=3, start=s.clock() - 9)
    answers = await asyncio.gather(*(s.client.get(_local(clip["poster"])) for _ in range(6)))
    assert {r.status for r in answers} == {200}
    assert len({await r.read() for r in answers}) == 1
    assert len({r.headers["ETag"] for r in answers}) == 1


@pytest.mark.parametrize(
    "name",
    [
        "rec_0123456789abcdef0123456789abcdef_poster.jpg",  # no such clip
        "rec_0123456789ABCDEF0123456789ABCDEF_poster.jpg",
        "rec_0123456789abcdef_poster.jpg",
        "rec_0123456789abcdef0123456789abcdef_poster.png",
    ],
)
async def test_posters_of_unknown_clips_answer_404(numbered: Service, name: str) -> None:
    resp = await numbered.client.get(f"/rec/demo/{name}")
    assert resp.status == 404
    assert (await resp.json())["error"].endswith("not_found")
