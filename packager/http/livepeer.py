"""Livepeer-shaped views of clips (its Asset object) and its `POST /clip` request.

Served where Livepeer's SDK calls them: `GET /stream/{id}/clips` (and `/streams/{id}/clips`)
and `POST /clip`, each also under `/api`, which its default server URL ends in, so pointing
`server_url` at the packager with or without `/api` works. Its SDK takes only 200 from
`POST /clip`. Errors on these paths carry Livepeer's `errors` list (packager.http.errors).
Livepeer's clips are frame-accurate, so clips cut here are too, unless the body says
`"frameAccurate": false`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from packager.errors import InvalidField
from packager.http.api import H, authorize, clip_link, route_at
from packager.http.jsonio import boolean, json_response, number, read_json_object, string
from packager.http.keys import CONFIG, SERVICES
from packager.http.videos import video_url
from packager.package import names
from packager.package.spec import video_spec
from packager.store.model import Clip, ClipState

routes = web.RouteTableDef()

LIVEPEER_PREFIX = "/api"


def livepeer_route(method: str, *paths: str) -> Callable[[H], H]:
    """Serve a handler at each path, with and without Livepeer's `/api` prefix."""
    return route_at(routes, method, *paths, *(LIVEPEER_PREFIX + path for path in paths))


async def asset_view(clip: Clip, request: web.Request) -> dict[str, Any]:
    """One clip as Livepeer's Asset: the highest rendition describes the video."""
    services = request.app[SERVICES]
    video = services.videos.for_clip(clip.id)
    ready = clip.complete and (not clip.vod_required or video is not None)
    updated = clip.completed_at if clip.completed_at is not None else clip.created_at
    status: dict[str, Any] = {"phase": "ready" if ready else "uploading"}
    if clip.state is ClipState.FAILED:
        status = {"phase": "failed", "errorMessage": clip.vod_error or "saving the VOD failed"}
    status["updatedAt"] = round(updated * 1000)
    init = await services.store.init(clip.reference.first_init)
    _, duration = await services.frames.shown(clip)
    asset: dict[str, Any] = {
        "id": clip.id,
        "playbackId": clip.id,
        "name": clip.name or f"clip of {clip.stream_id}",
        "type": "video",
        "source": {"type": "clip", "playbackId": clip.stream_id},
        "playbackUrl": clip_link(clip, request, names.playlist(clip.id)),
        "downloadUrl": clip_link(clip, request, names.mp4(clip.id)),
        "createdAt": round(clip.created_at * 1000),
        "status": status,
        "videoSpec": video_spec(clip.reference, init, duration),
    }
    if video is not None and video.intact and video.master is not None:
        # The durable copy: its size and hash, and a download that outlives the clip.
        asset["downloadUrl"] = video_url(request, video)
        asset["size"] = video.master.size
        asset["hash"] = [{"hash": video.master.sha256, "algorithm": "sha256"}]
    return asset


@livepeer_route("GET", "/stream/{stream_id}/clips", "/streams/{stream_id}/clips")
async def list_assets(request: web.Request) -> web.Response:
    authorize(request)
    clips = await request.app[SERVICES].clips.clips(request.match_info["stream_id"])
    return json_response([await asset_view(c, request) for c in clips])


@livepeer_route("POST", "/clip")
async def create_clip(request: web.Request) -> web.Response:
    """Livepeer's body: playbackId (our stream id), startTime and endTime in Unix ms, name;
    ours: frameAccurate (default true, as Livepeer cuts)."""
    authorize(request)
    body = await read_json_object(request, request.app[CONFIG].max_api_body)
    stream_id = string(body, "playbackId", max_len=64)
    if not stream_id:
        raise InvalidField("playbackId", "is required (the stream id)")
    start_ms = number(body, "startTime", required=True)
    end_ms = number(body, "endTime", required=True)
    assert start_ms is not None and end_ms is not None
    if end_ms <= start_ms:
        raise InvalidField("endTime", "must be after startTime")
    clip = await request.app[SERVICES].clips.create_clip(
        stream_id,
        duration=(end_ms - start_ms) / 1000,
        start=start_ms / 1000,
        name=string(body, "name"),
        # Frame-accurate as Livepeer's, where the video can be re-encoded for HLS.
        frame_accurate=None
        if body.get("frameAccurate") is None
        else boolean(body, "frameAccurate"),
    )
    asset = await asset_view(clip, request)
    # 200, not 201: Livepeer's API answers 200 and its SDK takes nothing else.
    return json_response({"task": {"id": f"task-{clip.id}"}, "asset": asset})
