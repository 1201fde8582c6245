"""A stream's live DVR window: `/live/{stream_id}/master.m3u8`, its renditions, inits and
segments (names in packager.package.names).

These links expose the whole stream, so they are not public by default: the API hands out a
signed `live_hls` link (`GET /streams/{id}`), good for a few hours, whose query rides on every
URI of the playlists; a stream created with `public_live: true` needs none. A request without
a valid signature gets 403 whether or not the stream exists, so the route tells strangers
nothing about which streams there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from packager.errors import Forbidden, NotFound, StreamNotFound
from packager.http import caching, signing
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import ROUTE_KEY
from packager.package import names
from packager.package.names import LiveKind
from packager.service.live import LiveRendition
from packager.store.model import StreamInfo

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
LINK_HOURS = 4  # a signed live link works for 3 to 4 hours (see `link_expiry`)
PREFIX = "/live/"


def resource(stream_id: str) -> str:
    """What a live link signs: every file of the stream's window."""
    return f"live/{stream_id}"


def link_expiry(now: float) -> int:
    """The end of the hour 3 hours from now: every link handed out within an hour is the same
    URL, so a CDN caches the window once for all the people watching it."""
    return (math.floor(now / 3600) + LINK_HOURS) * 3600


def live_link(stream: StreamInfo, base: str, secret: str | None, now: float) -> str | None:
    """The stream's `live_hls` link for the API's answers: plain for a `public_live` stream,
    signed otherwise, None when the server has no playback secret to sign with."""
    url = f"{base}{PREFIX}{stream.id}/{names.LIVE_MASTER}"
    if stream.public_live:
        return url
    if secret is None:
        return None
    return f"{url}?{signing.query(secret, resource(stream.id), link_expiry(now))}"


@dataclass(frozen=True, slots=True)
class _Access:
    stream: StreamInfo
    query: str  # what every URI of a playlist carries: the link's own signature, or nothing
    expires: float | None  # the link's expiry; None for a public_live stream


async def _access(request: web.Request, stream_id: str) -> _Access:
    services = request.app[SERVICES]
    secret = request.app[CONFIG].playback_secret
    try:
        if "token" not in request.query:
            raise Forbidden(
                "a stream's live window needs its signed link: live_hls of GET /streams/{id}"
            )
        query, expires = signing.verify(request, secret, resource(stream_id), services.clock())
    except Forbidden:
        try:
            stream = await services.store.stream(stream_id)
        except StreamNotFound:
            stream = None
        if stream is None or not stream.public_live:
            raise
        return _Access(stream, "", None)
    stream = await services.store.stream(stream_id)  # a signed link to a deleted stream: 404
    # A public stream's URIs go without the query: one cache entry per file for everybody.
    return _Access(stream, "", None) if stream.public_live else _Access(stream, query, expires)


def _lifetime(now: float, seconds: float, expires: float | None) -> dict[str, str]:
    """Cache until `seconds` from now, but never past the link's own expiry."""
    if expires is not None:
        seconds = min(seconds, expires - now)
    return {"Cache-Control": f"public, max-age={max(0, math.floor(seconds))}", **caching.CORS}


@routes.get(PREFIX + "{stream_id}/{name}")
async def live(request: web.Request) -> web.StreamResponse:
    stream_id = request.match_info["stream_id"]
    parsed = names.parse_live(request.match_info["name"])
    if parsed is None:
        raise NotFound(f"no such live file {request.match_info['name']!r}")
    request[ROUTE_KEY] = f"{PREFIX}{{stream_id}}/{{{parsed.kind.value}}}"
    access = await _access(request, stream_id)
    windows = request.app[SERVICES].live
    if parsed.kind is LiveKind.MASTER:
        return _playlist(request, access, await windows.master(stream_id, access.query))
    rendition = await windows.rendition(stream_id, parsed.number, parsed.height)
    if parsed.kind is LiveKind.PLAYLIST:
        return _playlist(request, access, await windows.media(stream_id, rendition, access.query))
    if parsed.kind is LiveKind.INIT:
        return await _init(request, access, rendition, parsed.init_id)
    return await _segment(request, access, rendition, parsed.seq)


async def _init(
    request: web.Request, access: _Access, rendition: LiveRendition, init_id: str
) -> web.Response:
    services = request.app[SERVICES]
    init = await services.live.init(rendition, init_id)
    # Named by its content hash, it never changes; it is needed as long as the DVR lasts.
    headers = _lifetime(services.clock(), access.stream.dvr_duration, access.expires)
    return caching.validated(request, headers, f'"{init_id}"', None) or web.Response(
        body=init.data, content_type="video/mp4", headers=headers
    )


async def _segment(
    request: web.Request, access: _Access, rendition: LiveRendition, seq: int
) -> web.Response:
    services = request.app[SERVICES]
    ref = services.live.segment(rendition, seq)
    data = await services.store.segment_data(ref.key)
    # Good until the DVR lets go of it (the budget may drop it sooner: a cached copy is still
    # the right bytes, and no playlist lists it by then).
    now = services.clock()
    headers = _lifetime(now, ref.end + access.stream.dvr_duration - now, access.expires)
    etag = f'"{ref.init_id[:8]}-{ref.key.seq}-{ref.size:x}-{round(ref.start * 1000):x}"'
    return caching.validated(request, headers, etag, None) or web.Response(
        body=data, content_type="video/iso.segment", headers=headers
    )


def _playlist(request: web.Request, access: _Access, rendered: tuple[bytes, str]) -> web.Response:
    body, etag = rendered
    now = request.app[SERVICES].clock()
    headers = _lifetime(now, caching.GROWING_MAX_AGE, access.expires)
    return caching.validated(request, headers, etag, None) or web.Response(
        body=body, content_type=PLAYLIST_TYPE, headers=headers
    )


routes.route("OPTIONS", PREFIX + "{stream_id}/{name}")(caching.preflight)
