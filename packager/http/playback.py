"""Public playback routes under /rec/{stream_id}/: HLS playlists, init and media segments."""

from __future__ import annotations

import hashlib

from aiohttp import web

from packager.errors import ClipNotFound
from packager.http import caching, mp4, signing
from packager.http.api import clip_resource
from packager.http.keys import CONFIG, STORE
from packager.http.metrics import ROUTE_KEY
from packager.package import hls, names
from packager.package.names import Kind, PlaybackName
from packager.store.clips import Clip, ClipRendition

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def _resolve(request: web.Request) -> tuple[Clip, PlaybackName, str]:
    """The clip, which file of it, and (private clips) the verified signed query."""
    stream_id = request.match_info["stream_id"]
    parsed = names.parse(request.match_info["name"])
    if parsed is None:
        raise ClipNotFound(f"no such playback file {request.match_info['name']!r}")
    request[ROUTE_KEY] = f"/rec/{{stream_id}}/{{{parsed.kind.value}}}"
    store = request.app[STORE]
    clip = store.clip(stream_id, parsed.clip_id)
    query = ""
    if clip.private:
        secret = request.app[CONFIG].playback_secret
        query, _ = signing.verify(request, secret, clip_resource(clip), store.clock())
    return clip, parsed, query


def _rendition(clip: Clip, name: PlaybackName) -> ClipRendition:
    if name.rendition is None:
        return clip.reference
    cr = clip.rendition(name.rendition)
    if cr is None:
        raise ClipNotFound(f"clip {clip.id} has no rendition {name.rendition!r}")
    return cr


def _headers(request: web.Request, clip: Clip, immutable: bool) -> dict[str, str]:
    return caching.cache_headers(request.app[STORE].clock(), clip.expiration, immutable)


RENDERED_PER_CLIP = 16  # bounds the variety of signed queries a private clip may cache


def _render(clip: Clip, name: PlaybackName, query: str) -> tuple[bytes, str]:
    """A playlist's bytes and ETag. A complete clip's can no longer change: they are kept on
    the clip, so a CDN's misses and revalidations cost a lookup, not a rendering."""
    key = (name.rendition or "master", query)
    cached = clip.rendered.get(key)
    if cached is not None:
        return cached
    if name.rendition is None:
        text = hls.master_playlist(clip, query)
    else:
        text = hls.media_playlist(clip, _rendition(clip, name), query)
    body = text.encode()
    rendered = body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    if clip.complete and len(clip.rendered) < RENDERED_PER_CLIP:
        clip.rendered[key] = rendered
    return rendered


def _playlist(request: web.Request, clip: Clip, name: PlaybackName, query: str) -> web.Response:
    body, etag = _render(clip, name, query)
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
    clip, name, query = _resolve(request)
    if name.kind is Kind.PLAYLIST:
        return _playlist(request, clip, name, query)
    cr = _rendition(clip, name)
    if name.kind is Kind.INIT:
        if name.index >= len(cr.inits):
            raise ClipNotFound(f"no init segment {name.index} in {cr.name}")
        tag = f"{cr.name}-init{name.index}"
        return _media(request, clip, cr.inits[name.index].data, "video/mp4", tag)
    if name.kind is Kind.SEGMENT:
        if name.index >= len(cr.segments):
            raise ClipNotFound(f"no segment {name.index} in {cr.name}")
        tag = f"{cr.name}-seg{name.index}"
        return _media(request, clip, cr.segments[name.index].data, "video/iso.segment", tag)
    return await mp4.serve(request, clip, cr)


routes.route("OPTIONS", "/rec/{stream_id}/{name}")(caching.preflight)
