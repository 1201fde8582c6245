"""Public playback routes under /rec/{stream_id}/: HLS playlists, init and media segments."""

from __future__ import annotations

import math

from aiohttp import web

from packager.errors import ClipNotFound
from packager.http.keys import STORE
from packager.package import hls, names
from packager.package.names import Kind, PlaybackName
from packager.store.clips import Clip, ClipRendition

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
GROWING_MAX_AGE = 1  # a growing playlist changes every segment; let the CDN coalesce, not pin


def _resolve(request: web.Request) -> tuple[Clip, PlaybackName]:
    stream_id = request.match_info["stream_id"]
    parsed = names.parse(request.match_info["name"])
    if parsed is None:
        raise ClipNotFound(f"no such playback file {request.match_info['name']!r}")
    return request.app[STORE].clip(stream_id, parsed.clip_id), parsed


def _rendition(clip: Clip, name: PlaybackName) -> ClipRendition:
    if name.rendition is None:
        return clip.reference
    cr = clip.rendition(name.rendition)
    if cr is None:
        raise ClipNotFound(f"clip {clip.id} has no rendition {name.rendition!r}")
    return cr


def _headers(request: web.Request, clip: Clip, immutable: bool) -> dict[str, str]:
    now = request.app[STORE].clock()
    if immutable:
        max_age = max(0, math.floor(clip.expiration - now))
        cache = f"public, max-age={max_age}"
    else:
        cache = f"public, max-age={GROWING_MAX_AGE}"
    return {"Cache-Control": cache, "Access-Control-Allow-Origin": "*"}


@routes.get("/rec/{stream_id}/{name}")
async def playback(request: web.Request) -> web.StreamResponse:
    clip, name = _resolve(request)
    if name.kind is Kind.PLAYLIST:
        if name.rendition is None:
            text = hls.master_playlist(clip)
        else:
            text = hls.media_playlist(clip, _rendition(clip, name))
        return web.Response(
            text=text,
            content_type=PLAYLIST_TYPE,
            headers=_headers(request, clip, immutable=clip.complete),
        )
    cr = _rendition(clip, name)
    if name.kind is Kind.INIT:
        if name.index >= len(cr.inits):
            raise ClipNotFound(f"no init segment {name.index} in {cr.name}")
        body = cr.inits[name.index].data
        return web.Response(
            body=body, content_type="video/mp4", headers=_headers(request, clip, immutable=True)
        )
    if name.kind is Kind.SEGMENT:
        if name.index >= len(cr.segments):
            raise ClipNotFound(f"no segment {name.index} in {cr.name}")
        body = cr.segments[name.index].data
        return web.Response(
            body=body,
            content_type="video/iso.segment",
            headers=_headers(request, clip, immutable=True),
        )
    raise ClipNotFound("progressive MP4 is not served yet")
