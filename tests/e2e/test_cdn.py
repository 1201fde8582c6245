"""Behind a real CDN: Debian's nginx with proxy_cache (deploy/nginx/) in front of `serve --demo`.

The cache must hold what the packager allows for as long as it says (Cache-Control max-age up
to the clip's expiration) and no longer. The shortest expiration the API allows is a minute, so
the module's first act is to cut that clip and fill the cache with it; the other tests run
during its minute, and the last one checks that the cache let go of it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import m3u8
import pytest

from tests.e2e.cdn import Nginx, Reply, fetch, nginx_binary, start_nginx
from tests.e2e.conftest import API_KEY, Server, start_server, stop_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
]

SHORTEST_LIFE = 61.0  # the API's floor is now + 60 s; one more for the request's own latency
SLICE = 1 << 20  # `slice 1m` of the nginx config


@dataclass
class Rig:
    server: Server
    cdn: Nginx
    expiring: dict[str, Any]  # the clip cut first, with the shortest life
    expiring_links: dict[str, str]


def create_clip(cdn: Nginx, **body: float) -> dict[str, Any]:
    """Through the CDN, as a user of the API behind it would."""
    reply = fetch(
        f"{cdn.base}/streams/demo/clip_recording",
        "POST",
        {"Authorization": f"apikey {API_KEY}", "Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    assert reply.status == 201, reply.body
    clip: dict[str, Any] = json.loads(reply.body)
    return clip


def first_media_playlist(master: str) -> str:
    uri: str = m3u8.loads(fetch(master).body.decode()).playlists[0].uri
    return urllib.parse.urljoin(master, uri)


def links(clip: dict[str, Any]) -> dict[str, str]:
    """Every kind of playback URL of a clip, found the way a player finds them."""
    master = clip["hls_master"]
    media = first_media_playlist(master)
    playlist = m3u8.loads(fetch(media).body.decode())
    return {
        "master playlist": master,
        "media playlist": media,
        "init": urllib.parse.urljoin(media, playlist.segments[0].init_section.uri),
        "segment": urllib.parse.urljoin(media, playlist.segments[1].uri),
        "mp4": clip["mp4_master"],
    }


def max_age(reply: Reply) -> int:
    match = re.fullmatch(r"public, max-age=(\d+)", reply.headers.get("cache-control", ""))
    assert match, reply.headers
    return int(match[1])


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    server = start_server(tmp_path_factory.mktemp("packager"), "--demo")
    cdn = None
    try:
        cdn = start_nginx(tmp_path_factory.mktemp("nginx"), server.base.removeprefix("http://"))
        now = time.time()
        expiring = create_clip(cdn, duration=8, start=now - 20, expiration=now + SHORTEST_LIFE)
        expiring_links = links(expiring)
        for url in expiring_links.values():
            assert fetch(url).status == 200, url
        yield Rig(server, cdn, expiring, expiring_links)
    finally:
        if cdn is not None:
            cdn.stop()
        stop_server(server)


@pytest.fixture
def clip(rig: Rig) -> dict[str, Any]:
    """A fresh complete clip, none of whose links the cache has seen."""
    return create_clip(rig.cdn, duration=8, start=time.time() - 20)


def test_links_made_through_the_cdn_point_at_the_cdn(rig: Rig, clip: dict[str, Any]) -> None:
    assert clip["hls_master"].startswith(rig.cdn.base + "/rec/demo/")
    assert clip["mp4_master"].startswith(rig.cdn.base + "/rec/demo/")


def test_second_request_is_a_cache_hit(rig: Rig, clip: dict[str, Any]) -> None:
    for kind, url in links(clip).items():
        origin = fetch(url.replace(rig.cdn.base, rig.server.base, 1))
        first = fetch(url)
        second = fetch(url)
        assert origin.status == first.status == second.status == 200, kind
        # links() read the playlists already; the rest are new to the cache.
        if "playlist" not in kind:
            assert first.cache == "MISS", (kind, first.headers)
        assert second.cache == "HIT", (kind, second.headers)
        assert first.body == second.body == origin.body, kind
        assert second.headers["access-control-allow-origin"] == "*", kind
        # The origin's freshness reaches the client unchanged: up to the clip's expiration.
        assert 0 < max_age(second) <= clip["expiration"] - time.time() + 1, (kind, second.headers)


@pytest.mark.parametrize("kind", ["mp4", "segment"])
def test_range_requests_through_the_cache_return_the_origins_bytes(
    rig: Rig, clip: dict[str, Any], kind: str
) -> None:
    url = links(clip)[kind]
    full = fetch(url.replace(rig.cdn.base, rig.server.base, 1)).body
    total = len(full)
    assert total > 1000
    third, half = total // 3, total // 2
    cases = [
        ("bytes=0-1", 0, 1),  # Safari's probe, on a cold cache: the first request the CDN sees
        (f"bytes={third}-{third + 999}", third, third + 999),
        ("bytes=-10", total - 10, total - 1),
        (f"bytes={half}-", half, total - 1),
    ]
    if total > SLICE + 10:
        cases.append((f"bytes={SLICE - 10}-{SLICE + 10}", SLICE - 10, SLICE + 10))  # 2 slices
    for header, a, b in cases:
        reply = fetch(url, headers={"Range": header})
        assert reply.status == 206, (header, reply.status, reply.headers)
        assert reply.headers["content-range"] == f"bytes {a}-{b}/{total}", header
        assert reply.body == full[a : b + 1], header
    assert fetch(url).body == full

    beyond = fetch(url, headers={"Range": f"bytes={total}-"})
    assert beyond.status == 416, beyond.headers
    assert beyond.headers["content-range"] == f"bytes */{total}"


@pytest.mark.parametrize("kind", ["mp4", "segment"])
def test_head_revalidation_and_preflight_work_through_the_cdn(
    rig: Rig, clip: dict[str, Any], kind: str
) -> None:
    url = links(clip)[kind]
    full = fetch(url)
    assert full.status == 200

    head = fetch(url, "HEAD")
    assert (head.status, head.body) == (200, b""), head.headers
    assert int(head.headers["content-length"]) == len(full.body)

    # A player's cached copy is confirmed by the edge, without a body.
    again = fetch(url, headers={"If-None-Match": full.headers["etag"]})
    assert again.status == 304, again.headers

    # A page that sends Range from script asks first.
    preflight = fetch(
        url,
        "OPTIONS",
        {
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert preflight.status in (200, 204), preflight.headers
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "range" in preflight.headers["access-control-allow-headers"].lower()


def test_growing_playlist_is_not_pinned_by_the_cache(rig: Rig) -> None:
    growing = create_clip(rig.cdn, duration=6, start=time.time() - 4)
    assert growing["complete"] is False, growing
    media = first_media_playlist(growing["hls_master"])
    first = fetch(media)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in first.body.decode()
    assert max_age(first) <= 2, first.headers

    deadline = time.monotonic() + 30
    text = first.body.decode()
    while "#EXT-X-ENDLIST" not in text and time.monotonic() < deadline:
        time.sleep(0.5)
        text = fetch(media).body.decode()
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-PLAYLIST-TYPE:EVENT" in text, text


def test_cdn_stops_serving_a_clip_once_it_expires(rig: Rig) -> None:
    """Last in the module: by now most of the expiring clip's minute has gone by."""
    expiration = rig.expiring["expiration"]
    if time.time() < expiration - 3:
        for kind, url in rig.expiring_links.items():
            reply = fetch(url)
            assert (reply.status, reply.cache) == (200, "HIT"), kind
            assert max_age(reply) <= SHORTEST_LIFE, (kind, reply.headers)

    # nginx counts max-age in whole seconds from when it stored the copy; the origin drops the
    # clip within a second of its expiration.
    time.sleep(max(0.0, expiration + 2 - time.time()))
    deadline = time.monotonic() + 15
    gone: dict[str, Reply] = {}
    while time.monotonic() < deadline:
        gone = {kind: fetch(url) for kind, url in rig.expiring_links.items()}
        if all(r.status == 404 for r in gone.values()):
            break
        time.sleep(0.5)
    for kind, reply in gone.items():
        assert reply.status == 404, (kind, reply.status, reply.cache)

    ranged = fetch(rig.expiring_links["mp4"], headers={"Range": "bytes=0-1"})
    assert ranged.status == 404, ranged.headers

    # The 404 is cached too, but only for the few seconds the origin allows.
    again = fetch(rig.expiring_links["segment"])
    assert (again.status, again.cache) == (404, "HIT"), again.headers
    assert max_age(again) <= 10, again.headers
