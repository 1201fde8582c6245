"""Public playback routes under /rec/{stream_id}/: HLS playlists, init and media segments."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aiohttp import web

from packager.errors import ClipNotFound
from packager.http import caching, mp4, poster, signing
from packager.http.api import clip_resource
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import ROUTE_KEY
from packager.package import names
from packager.package.names import Kind, PlaybackName
from packager.service.playlists import rendition_of
from packager.store.model import Clip

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


async def _resolve(request: web.Request) -> tuple[Clip, PlaybackName, str, float]:
    """The clip, which file of it, and (private clips) the verified signed query and when
    the link expires."""
    stream_id = request.match_info["stream_id"]
    parsed = names.parse(request.match_info["name"])
    if parsed is None:
        raise ClipNotFound(f"no such playback file {request.match_info['name']!r}")
    request[ROUTE_KEY] = f"/rec/{{stream_id}}/{{{parsed.kind.value}}}"
    services = request.app[SERVICES]
    clip = await services.store.clip(stream_id, parsed.clip_id)
    query, expires = "", math.inf
    if clip.private:
        secret = request.app[CONFIG].playback_secret
        query, until = signing.verify(request, secret, clip_resource(clip), services.clock())
        expires = float(until)
    return clip, parsed, query, expires


def _headers(request: web.Request, clip: Clip, immutable: bool) -> dict[str, str]:
    return caching.cache_headers(request.app[SERVICES].clock(), clip.expiration, immutable)


@dataclass(slots=True)
class _Ready:
    """A complete clip's playlist as served, by its URL: it can no longer change, so a request
    for it needs no parsing, no lookup and no signature check, only the clock (profiled: the
    resolution steps were a third of a cached playlist's cost). Its headers differ only in
    max-age, so they are built once a second, not once a request."""

    body: bytes
    etag: str
    modified: float
    expiration: float  # the clip's: 404 from then on
    link_expires: float  # a signed link's own expiry (the signature was checked once)
    route: str
    max_age: int = -1  # the Cache-Control max-age `headers` were built with
    headers: dict[str, str] = field(default_factory=dict)


READY = web.AppKey("ready_playlists", dict[str, _Ready])
READY_LIMIT = 20_000  # URLs kept; past it the table starts over (a clip's is rebuilt on use)


def _answer(request: web.Request, ready: _Ready, now: float) -> web.Response:
    max_age = math.floor(ready.expiration - now)
    if max_age != ready.max_age:
        headers = caching.cache_headers(now, ready.expiration, True)
        headers["ETag"] = ready.etag
        headers["Last-Modified"] = caching.http_date(ready.modified)
        ready.headers, ready.max_age = headers, max_age
    conditional = request.headers
    if "If-None-Match" in conditional or "If-Modified-Since" in conditional:
        headers = dict(ready.headers)
        return caching.validated(request, headers, ready.etag, ready.modified) or web.Response(
            body=ready.body, content_type=PLAYLIST_TYPE, headers=headers
        )
    # aiohttp copies `headers` into the response's own: one dict serves every request.
    return web.Response(body=ready.body, content_type=PLAYLIST_TYPE, headers=ready.headers)


async def _playlist(
    request: web.Request, clip: Clip, name: PlaybackName, query: str, link_expires: float
) -> web.Response:
    body, etag = await request.app[SERVICES].playlists.render(clip, name.rendition, query)
    if clip.complete:
        ready = _Ready(
            body,
            etag,
            clip.completed_at or clip.created_at,
            clip.expiration,
            link_expires,
            request[ROUTE_KEY],
        )
        table = request.app[READY]
        if len(table) >= READY_LIMIT:
            table.clear()
        table[request.raw_path] = ready
        return _answer(request, ready, request.app[SERVICES].clock())
    # A growing playlist changes within a second: only the ETag may validate it.
    headers = _headers(request, clip, immutable=False)
    return caching.validated(request, headers, etag, None) or web.Response(
        body=body, content_type=PLAYLIST_TYPE, headers=headers
    )


def _media(
    request: web.Request, clip: Clip, body: bytes, content_type: str, tag: str
) -> web.Response:
    """Init and media segments never change for a clip: the URL is the version."""
    headers = _headers(request, clip, immutable=True)
    etag = f'"{clip.id}-{tag}-{len(body)}"'
    return caching.validated(request, headers, etag, clip.created_at) or web.Response(
        body=body, content_type=content_type, headers=headers
    )


@routes.get("/rec/{stream_id}/{name}")
async def playback(request: web.Request) -> web.StreamResponse:
    app = request.app
    ready = app[READY].get(request.raw_path)  # path and query as sent
    if ready is not None:
        now = app[SERVICES].clock()
        if now < ready.expiration and now < ready.link_expires:
            request[ROUTE_KEY] = ready.route
            return _answer(request, ready, now)
        del app[READY][request.raw_path]  # expired: the slow path says why
    if request.match_info["name"].endswith(poster.SUFFIX):
        return await poster.serve(request)
    clip, name, query, link_expires = await _resolve(request)
    if name.kind is Kind.PLAYLIST:
        return await _playlist(request, clip, name, query, link_expires)
    cr = rendition_of(clip, name.rendition)
    services = request.app[SERVICES]
    store = services.store
    if clip.frame_accurate and name.kind is Kind.INIT:
        data = await services.frames.init(clip, cr, name.index)
        return _media(request, clip, data, "video/mp4", f"{cr.name}-init{name.index}")
    if clip.frame_accurate and name.kind is Kind.SEGMENT:
        data = await services.frames.segment(clip, cr, name.index)
        return _media(request, clip, data, "video/iso.segment", f"{cr.name}-seg{name.index}")
    if name.kind is Kind.INIT:
        inits = cr.inits
        if name.index >= len(inits):
            raise ClipNotFound(f"no init segment {name.index} in {cr.name}")
        init = await store.init(inits[name.index])
        tag = f"{cr.name}-init{name.index}"
        return _media(request, clip, init.data, "video/mp4", tag)
    if name.kind is Kind.SEGMENT:
        if name.index >= len(cr.segments):
            raise ClipNotFound(f"no segment {name.index} in {cr.name}")
        data = await store.segment_data(cr.segments[name.index].key)
        tag = f"{cr.name}-seg{name.index}"
        return _media(request, clip, data, "video/iso.segment", tag)
    return await mp4.serve(request, clip, cr)


routes.route("OPTIONS", "/rec/{stream_id}/{name}")(caching.preflight)
