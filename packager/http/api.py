"""Management API: streams and instant clips (Gcore's `clip_recording` shape).

Gcore's SDK calls every route under `/streaming/` (it is in each path, so no base URL can drop
it) and validates answers against its models: the routes are served at both paths, and the
fields it types as integers are integers. The exact values those integers round go in extra
fields (`start_precise`, `duration_precise`), which its models allow.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from packager.errors import InvalidField
from packager.http import live, signing
from packager.http.auth import require_api_key
from packager.http.jsonio import boolean, json_response, number, read_json_object, string
from packager.http.keys import CONFIG, SERVICES
from packager.package import names
from packager.store.model import Clip, RenditionInfo, StreamInfo

routes = web.RouteTableDef()

GCORE_PREFIX = "/streaming"
LIVE_WITHIN = 30.0  # seconds since the last segment for a stream to count as live

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def route_at(table: web.RouteTableDef, method: str, *paths: str) -> Callable[[H], H]:
    """Serve one handler at several paths (a vendor's and ours)."""

    def register(handler: H) -> H:
        for path in paths:
            table.route(method, path)(handler)
        return handler

    return register


def gcore_route(table: web.RouteTableDef, method: str, path: str) -> Callable[[H], H]:
    """Serve a handler at `path` and at `/streaming{path}`, where Gcore's SDK calls it."""
    return route_at(table, method, path, GCORE_PREFIX + path)


def whole_seconds(start: float, duration: float) -> tuple[int, int]:
    """Gcore's integer `start` and `duration`: the start rounded down and the end rounded up,
    so the whole seconds cover everything that plays. Rounded on milliseconds first, so float
    noise (x.0000001) cannot add a second."""
    start_ms = round(start * 1000)
    end_ms = start_ms + round(duration * 1000)
    first = start_ms // 1000
    return first, -(-end_ms // 1000) - first


def precise(seconds: float) -> float:
    """An exact time for the `*_precise` fields: float seconds to the millisecond."""
    return round(seconds * 1000) / 1000


def iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def base_url(request: web.Request) -> str:
    configured = request.app[CONFIG].public_base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def authorize(request: web.Request) -> None:
    require_api_key(request, request.app[CONFIG].api_keys)


def stream_view(
    stream: StreamInfo, ladder: list[RenditionInfo], request: web.Request
) -> dict[str, Any]:
    now = request.app[SERVICES].clock()
    dvr_start = min((r.start for r in ladder), default=None)
    dvr_end = max((r.end for r in ladder), default=None)
    return {
        "id": stream.id,
        "name": stream.name,
        "dvr_duration": stream.dvr_duration,
        "created_at": iso(stream.created_at),
        "live": dvr_end is not None and now - dvr_end < LIVE_WITHIN,
        "dvr": {
            "start": round(dvr_start, 3) if dvr_start is not None else None,
            "end": round(dvr_end, 3) if dvr_end is not None else None,
        },
        "renditions": [
            {
                "name": f"media_{n}_{r.height}",
                "ingest_name": r.name,
                "width": r.width or None,
                "height": r.height,
                "codecs": r.codecs,
                "bandwidth": round(r.bitrate),
                "segments": r.segments,
                # What players should know of it, else null: a HEVC rendition that stays hev1.
                "note": r.note,
            }
            for n, r in enumerate(ladder, start=1)
        ],
        # The DVR window as live HLS: signed for a few hours unless the stream is public_live.
        "live_hls": live.live_link(
            stream, base_url(request), request.app[CONFIG].playback_secret, now
        ),
        "public_live": stream.public_live,
    }


async def stream_json(stream: StreamInfo, request: web.Request) -> dict[str, Any]:
    ladder = await request.app[SERVICES].store.ladder(stream.id)
    return stream_view(stream, ladder, request)


def clip_resource(clip: Clip) -> str:
    """What a private clip's links sign: every file of the clip."""
    return f"rec/{clip.stream_id}/{clip.id}"


def clip_link(clip: Clip, request: web.Request, file: str) -> str:
    """A playback link; a private clip's carries a token valid until the clip expires."""
    url = f"{base_url(request)}/rec/{clip.stream_id}/{file}"
    secret = request.app[CONFIG].playback_secret
    if clip.private and secret is not None:
        url += "?" + signing.query(secret, clip_resource(clip), math.ceil(clip.expiration))
    return url


def saved_video_id(clip: Clip, request: web.Request) -> int | None:
    """The clip's durable copy, while it exists (a deleted video is no one's)."""
    videos = request.app[SERVICES].videos
    video = videos.get(clip.video_id) if clip.video_id is not None else None
    video = video or videos.for_clip(clip.id)
    return video.id if video is not None else None


def clip_view(
    clip: Clip, request: web.Request, shown: tuple[float, float] | None = None
) -> dict[str, Any]:
    """`shown`: (start, seconds) of what plays (FrameCuts.shown); else the clip's segments'."""
    shown_start, shown_duration = shown or (clip.start, clip.duration)
    start, duration = whole_seconds(shown_start, shown_duration)
    return {
        "id": clip.id,
        "stream_id": clip.stream_id,
        "created_at": iso(clip.created_at),
        "start": start,
        "duration": duration,
        "start_precise": precise(shown_start),
        "duration_precise": precise(shown_duration),
        "expiration": math.floor(clip.expiration),
        "renditions": [r.name for r in clip.renditions],
        "hls_master": clip_link(clip, request, names.playlist(clip.id)),
        "mp4_master": clip_link(clip, request, names.mp4(clip.id)),
        "poster": clip_link(clip, request, names.poster(clip.id)),
        "vod_required": clip.vod_required,
        "private": clip.private,
        "name": clip.name,
        "video_id": saved_video_id(clip, request),
        "complete": clip.complete,
        "state": clip.state.value,
        "note": clip.note,
        "vod_error": clip.vod_error,
        "rendition_spread": clip.spread,
        "frame_accurate": clip.frame_accurate,
    }


async def _stream_id(body: dict[str, Any], request: web.Request) -> str | None:
    """The new stream's id: as given (Gcore's ids are integers, so a number is taken too);
    if none, a Gcore client (on `/streaming/`) gets the next free integer, since its SDK
    reads `id` as one, and others get the store's random one."""
    given = body.get("id")
    if isinstance(given, int) and not isinstance(given, bool):
        if not 0 < given < 10**18:
            raise InvalidField("id", "a number id must be > 0 and < 10^18")
        return str(given)
    stream_id = string(body, "id", max_len=64)
    if stream_id is None and request.path.startswith(GCORE_PREFIX + "/"):
        streams = await request.app[SERVICES].store.streams()
        taken = (int(s.id) for s in streams if s.id.isdigit() and len(s.id) < 19)
        return str(max(taken, default=0) + 1)
    return stream_id


@gcore_route(routes, "POST", "/streams")
async def create_stream(request: web.Request) -> web.Response:
    authorize(request)
    body = await read_json_object(request, request.app[CONFIG].max_api_body)
    stream, push_key = await request.app[SERVICES].clips.create_stream(
        await _stream_id(body, request),
        string(body, "name") or "",
        number(body, "dvr_duration"),
        public_live=boolean(body, "public_live"),
    )
    view = await stream_json(stream, request)
    # The push key is shown once, here; the store keeps only its hash.
    view["push_url"] = f"{base_url(request)}/ingest/{stream.id}"
    view["push_key"] = push_key
    return json_response(view, status=201)


@gcore_route(routes, "GET", "/streams")
async def list_streams(request: web.Request) -> web.Response:
    authorize(request)
    streams = await request.app[SERVICES].store.streams()
    return json_response([await stream_json(s, request) for s in streams])


@gcore_route(routes, "GET", "/streams/{stream_id}")
async def get_stream(request: web.Request) -> web.Response:
    authorize(request)
    stream = await request.app[SERVICES].store.stream(request.match_info["stream_id"])
    return json_response(await stream_json(stream, request))


@gcore_route(routes, "DELETE", "/streams/{stream_id}")
async def delete_stream(request: web.Request) -> web.Response:
    """The stream and its DVR go; what its clips hold stays until they expire."""
    authorize(request)
    await request.app[SERVICES].store.delete_stream(request.match_info["stream_id"])
    return web.Response(status=204)


@gcore_route(routes, "POST", "/streams/{stream_id}/clip_recording")
@gcore_route(routes, "PUT", "/streams/{stream_id}/clip_recording")
async def create_clip(request: web.Request) -> web.Response:
    authorize(request)
    body = await read_json_object(request, request.app[CONFIG].max_api_body)
    duration = number(body, "duration", required=True)
    assert duration is not None
    private = boolean(body, "private")
    if private and request.app[CONFIG].playback_secret is None:
        raise InvalidField("private", "needs a playback secret (--playback-secret)")
    expiration = number(body, "expiration")
    clip = await request.app[SERVICES].clips.create_clip(
        request.match_info["stream_id"],
        duration=duration,
        start=number(body, "start"),
        # Whole seconds, as Gcore types it and as every answer reports it.
        expiration=math.floor(expiration) if expiration is not None else None,
        vod_required=boolean(body, "vod_required"),
        private=private,
        name=string(body, "name"),
        frame_accurate=boolean(body, "frame_accurate"),
    )
    shown = await request.app[SERVICES].frames.shown(clip)
    return json_response(clip_view(clip, request, shown), status=201)


@gcore_route(routes, "GET", "/streams/{stream_id}/clip_recording")
async def list_clips(request: web.Request) -> web.Response:
    authorize(request)
    services = request.app[SERVICES]
    clips = await services.clips.clips(request.match_info["stream_id"])
    return json_response([clip_view(c, request, await services.frames.shown(c)) for c in clips])


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    """Memory held by the DVR and by clips against the budget, and counts."""
    authorize(request)
    s = await request.app[SERVICES].store.stats()
    return json_response(
        {
            "memory": {
                "budget_bytes": s.budget,
                "held_bytes": s.held_bytes,
                "dvr_bytes": s.dvr_bytes,
                "clip_only_bytes": s.clip_only_bytes,
                "pinned_bytes": s.pinned_bytes,
                "init_bytes": s.init_bytes,
                "uploading_bytes": s.uploading_bytes,
            },
            "streams": s.streams,
            "clips": s.clips,
            "growing_clips": s.growing_clips,
            "dvr_segments": s.dvr_segments,
            "evicted_segments": s.evicted_segments,
        }
    )
