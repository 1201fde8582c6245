"""Durable VOD copies: written when a `vod_required` clip completes, served after it expires.

`/videos/{id}` (and Gcore's `/streaming/videos/{id}`) answers in the shape of Gcore's `Video`
model as far as its fields apply: `id` an integer, `duration` in milliseconds, one
`converted_videos` entry per rendition. Downloads are public at `/vod/{slug}/...`: the random
slug, not the id, is the capability.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from typing import Any

from aiohttp import web

from packager.errors import VideoGone, VideoNotFound
from packager.http import caching, signing
from packager.http.api import base_url, gcore_route, iso, precise
from packager.http.auth import require_api_key
from packager.http.jsonio import json_response
from packager.http.keys import CONFIG, SERVICES
from packager.http.mp4 import send_file
from packager.package.mp4 import Mp4Layout
from packager.service.mp4 import Mp4File
from packager.store.videos import SLUG, VIDEO_ID, Video

routes = web.RouteTableDef()

VOD_MAX_AGE = 86400  # a saved video never changes; a day keeps a CDN from asking often
VOD_LINK_TTL = 86400  # how long a private video's download link, once handed out, works


def video_url(request: web.Request, video: Video, rendition: str = "master") -> str:
    """A download link; a private video's is signed for VOD_LINK_TTL from now."""
    url = f"{base_url(request)}/vod/{video.slug}/{rendition}.mp4"
    secret = request.app[CONFIG].playback_secret
    if video.private and secret is not None:
        expires = math.ceil(request.app[SERVICES].clock() + VOD_LINK_TTL)
        url += "?" + signing.query(secret, f"vod/{video.slug}", expires)
    return url


def _gcore_stream_id(stream_id: str) -> int | None:
    """Gcore's `stream_id` is an integer: ours when it is one, else null (see `source_stream_id`)."""
    return int(stream_id) if stream_id.isdigit() and len(stream_id) < 19 else None


def video_view(request: web.Request, video: Video) -> dict[str, Any]:
    """Gcore's `Video` fields that apply, then ours (extra fields, which its model allows)."""
    master = video_url(request, video)
    created = iso(video.created_at)
    duration_ms = round(video.duration * 1000)
    return {
        "id": video.id,
        "slug": video.slug,
        "name": video.name or f"clip of {video.stream_id}",
        # Gcore's status: ready once every file is on disk; error when damaged or failed.
        "status": "ready" if video.intact else "error",
        "duration": duration_ms,
        "origin_video_duration": duration_ms,
        "origin_url": master,
        "origin_size": video.master.size if video.master else 0,
        "created_at": created,
        "updated_at": created,
        "recording_started_at": iso(video.start),
        "record_type": "origin",  # the stream's own renditions, not re-encoded
        "stream_id": _gcore_stream_id(video.stream_id),
        "projection": "regular",
        "converted_videos": [
            {
                "id": n,
                "name": f.rendition,
                "width": f.width,
                "height": f.height,
                "size": f.size,
                "mp4_url": video_url(request, video, f.rendition),
                "status": "complete",
                "progress": 100,
                "error": None,
            }
            for n, f in enumerate(video.files, start=1)
        ],
        "screenshots": [],
        # Ours:
        "source_stream_id": video.stream_id,
        "clip_id": video.clip_id,
        "start_precise": precise(video.start),
        "duration_precise": precise(video.duration),
        "private": video.private,
        "mp4_master": master,
        "renditions": [
            {
                "name": f.rendition,
                "width": f.width,
                "height": f.height,
                "codecs": f.codecs,
                "bandwidth": f.bandwidth,
                "size": f.size,
                "sha256": f.sha256,
                "download_url": video_url(request, video, f.rendition),
            }
            for f in video.files
        ],
        "videoSpec": video.spec,
        "state": video.status,  # ours: ready, damaged or failed
        "problem": video.problem,
    }


def _video(request: web.Request) -> Video:
    """By its integer id; its slug is taken too (the id of videos saved before ids were
    integers), since these routes need the API key anyway."""
    video_id = request.match_info["video_id"]
    library = request.app[SERVICES].videos
    if VIDEO_ID.fullmatch(video_id):
        video = library.get(int(video_id))
    else:
        video = library.by_slug(video_id) if SLUG.fullmatch(video_id) else None
    if video is None:
        raise VideoNotFound(f"no video {video_id!r}")
    return video


def _download(request: web.Request) -> Video:
    """Only by slug: an integer id is easy to guess, so it opens nothing here."""
    slug = request.match_info["slug"]
    video = request.app[SERVICES].videos.by_slug(slug) if SLUG.fullmatch(slug) else None
    if video is None:
        raise VideoNotFound(f"no video {slug!r}")
    return video


@gcore_route(routes, "GET", "/videos")
async def list_videos(request: web.Request) -> web.Response:
    require_api_key(request, request.app[CONFIG].api_keys)
    videos = sorted(request.app[SERVICES].videos.videos.values(), key=lambda v: v.id)
    return json_response([video_view(request, v) for v in videos])


@gcore_route(routes, "GET", "/videos/{video_id}")
async def get_video(request: web.Request) -> web.Response:
    require_api_key(request, request.app[CONFIG].api_keys)
    return json_response(video_view(request, _video(request)))


@gcore_route(routes, "DELETE", "/videos/{video_id}")
async def delete_video(request: web.Request) -> web.Response:
    require_api_key(request, request.app[CONFIG].api_keys)
    video = _video(request)
    await asyncio.to_thread(request.app[SERVICES].videos.delete, video.id)
    return web.Response(status=204)


@routes.get("/vod/{slug}/{file}")
async def download(request: web.Request) -> web.StreamResponse:
    """Public, like playback links: the unguessable slug is the capability."""
    video = _download(request)
    max_age = VOD_MAX_AGE
    if video.private:  # a CDN must not keep serving it past the link's expiry
        secret = request.app[CONFIG].playback_secret
        now = request.app[SERVICES].clock()
        _, expires = signing.verify(request, secret, f"vod/{video.slug}", now)
        max_age = min(max_age, max(0, math.floor(expires - now)))
    name = request.match_info["file"].removesuffix(".mp4")
    if not video.intact:
        raise VideoGone(f"video {video.id} is {video.status}: {video.problem}")
    file = video.master if name == "master" else video.file(name)
    if file is None or not request.match_info["file"].endswith(".mp4"):
        raise VideoNotFound(f"video {video.id} has no {request.match_info['file']!r}")
    try:
        view = await asyncio.to_thread(request.app[SERVICES].videos.view, video, file.rendition)
    except (OSError, ValueError) as exc:  # gone or emptied under us (mmap of 0 bytes)
        raise VideoGone(f"video {video.id}'s {file.rendition}.mp4 cannot be read") from exc
    if len(view) != file.size:
        raise VideoGone(f"video {video.id}'s {file.rendition}.mp4 is not the size it was saved")
    saved = Mp4File(
        layout=Mp4Layout(b"", (view,), array("Q", [0]), len(view)),
        etag=f'"{file.sha256[:40]}"',  # the content's own hash: the same across restarts
        last_modified=math.floor(video.created_at),
        filename=f"{video.stream_id}_{video.id}_{file.rendition}.mp4",
    )
    # The same HEAD/Range/If-* handling as a clip's MP4, JSON errors included.
    headers = {"Cache-Control": f"public, max-age={max_age}", **caching.CORS}
    return await send_file(request, saved, headers)


routes.route("OPTIONS", "/vod/{slug}/{file}")(caching.preflight)
