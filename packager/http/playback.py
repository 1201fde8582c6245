"""Public playback routes under /rec/{stream_id}/: HLS playlists, init and media segments."""

from __future__ import annotations

from aiohttp import web

from packager.errors import ClipNotFound
from packager.http import caching, mp4, signing
from packager.http.api import clip_resource
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import ROUTE_KEY
from packager.package import names
from packager.package.names import Kind, PlaybackName
from packager.service.playlists import rendition_of
from packager.store.model import Clip

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


async def _resolve(request: web.Request) -> tuple[Clip, PlaybackName, str]:
    """The clip, which file of it, and (private clips) the verified signed query."""
    stream_id = request.match_info["stream_id"]
    parsed = names.parse(request.match_info["name"])
    if parsed is None:
        raise ClipNotFound(f"no such playback file {request.match_info['name']!r}")
    request[ROUTE_KEY] = f"/rec/{{stream_id}}/{{{parsed.kind.value}}}"
    services = request.app[SERVICES]
    clip = await services.store.clip(stream_id, parsed.clip_id)
    query = ""
    if clip.private:
        secret = request.app[CONFIG].playback_secret
        query, _ = signing.verify(request, secret, clip_resource(clip), services.clock())
    return clip, parsed, query


def _headers(request: web.Request, clip: Clip, immutable: bool) -> dict[str, str]:
    return caching.cache_headers(request.app[SERVICES].clock(), clip.expiration, immutable)


async def _playlist(
    request: web.Request, clip: Clip, name: PlaybackName, query: str
) -> web.Response:
    body, etag = await request.app[SERVICES].playlists.render(clip, name.rendition, query)
    headers = _headers(request, clip, immutable=clip.complete)
    # A growing playlist changes within a second: only the ETag may validate it.
    modified = clip.completed_at if clip.complete else None
    return caching.validated(request, headers, etag, modified) or web.Response(
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
    clip, name, query = await _resolve(request)
    if name.kind is Kind.PLAYLIST:
        return await _playlist(request, clip, name, query)
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
