"""Management API: streams and instant clips (Gcore's `clip_recording` shape)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from packager.errors import InvalidField
from packager.http import signing
from packager.http.auth import require_api_key
from packager.http.jsonio import boolean, json_response, number, read_json_object, string
from packager.http.keys import CONFIG, STORE
from packager.package import names
from packager.store.clips import Clip
from packager.store.dvr import Stream

routes = web.RouteTableDef()


def iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def base_url(request: web.Request) -> str:
    configured = request.app[CONFIG].public_base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def authorize(request: web.Request) -> None:
    require_api_key(request, request.app[CONFIG].api_keys)


def stream_view(stream: Stream, request: web.Request) -> dict[str, Any]:
    ladder = stream.ladder()
    now = request.app[STORE].clock()
    last_end = stream.dvr_end
    return {
        "id": stream.id,
        "name": stream.name,
        "dvr_duration": stream.dvr_duration,
        "created_at": iso(stream.created_at),
        "live": last_end is not None and now - last_end < 3 * 10.0,
        "dvr": {
            "start": round(stream.dvr_start, 3) if stream.dvr_start is not None else None,
            "end": round(last_end, 3) if last_end is not None else None,
        },
        "renditions": [
            {
                "name": f"media_{n}_{r.height}",
                "ingest_name": r.name,
                "width": r.init.video.width if r.init and r.init.video else None,
                "height": r.height,
                "codecs": r.init.codecs if r.init else None,
                "bandwidth": round(r.bitrate()),
                "segments": len(r.segments),
            }
            for n, r in enumerate(ladder, start=1)
        ],
    }


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


def clip_view(clip: Clip, request: web.Request) -> dict[str, Any]:
    return {
        "id": clip.id,
        "stream_id": clip.stream_id,
        "created_at": iso(clip.created_at),
        "start": round(clip.start, 3),
        "duration": round(clip.duration, 3),
        "expiration": round(clip.expiration, 3),
        "renditions": [r.name for r in clip.renditions],
        "hls_master": clip_link(clip, request, names.playlist(clip.id)),
        "mp4_master": clip_link(clip, request, names.mp4(clip.id)),
        "vod_required": clip.vod_required,
        "private": clip.private,
        "video_id": clip.video_id,
        "complete": clip.complete,
        "note": clip.completion_note,
    }


@routes.post("/streams")
async def create_stream(request: web.Request) -> web.Response:
    authorize(request)
    body = await read_json_object(request, request.app[CONFIG].max_api_body)
    stream = request.app[STORE].create_stream(
        string(body, "id", max_len=64),
        string(body, "name") or "",
        number(body, "dvr_duration"),
    )
    return json_response(stream_view(stream, request), status=201)


@routes.get("/streams")
async def list_streams(request: web.Request) -> web.Response:
    authorize(request)
    store = request.app[STORE]
    return json_response([stream_view(s, request) for s in store.streams.values()])


@routes.get("/streams/{stream_id}")
async def get_stream(request: web.Request) -> web.Response:
    authorize(request)
    stream = request.app[STORE].stream(request.match_info["stream_id"])
    return json_response(stream_view(stream, request))


@routes.post("/streams/{stream_id}/clip_recording")
@routes.put("/streams/{stream_id}/clip_recording")
async def create_clip(request: web.Request) -> web.Response:
    authorize(request)
    body = await read_json_object(request, request.app[CONFIG].max_api_body)
    duration = number(body, "duration", required=True)
    assert duration is not None
    private = boolean(body, "private")
    if private and request.app[CONFIG].playback_secret is None:
        raise InvalidField("private", "needs a playback secret (--playback-secret)")
    clip = request.app[STORE].create_clip(
        request.match_info["stream_id"],
        duration=duration,
        start=number(body, "start"),
        expiration=number(body, "expiration"),
        vod_required=boolean(body, "vod_required"),
        private=private,
    )
    return json_response(clip_view(clip, request), status=201)


@routes.get("/streams/{stream_id}/clip_recording")
async def list_clips(request: web.Request) -> web.Response:
    authorize(request)
    clips = request.app[STORE].list_clips(request.match_info["stream_id"])
    return json_response([clip_view(c, request) for c in clips])


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    """Memory held by the DVR and by clips against the budget, and counts."""
    authorize(request)
    s = request.app[STORE].stats()
    return json_response(
        {
            "memory": {
                "budget_bytes": s.budget,
                "held_bytes": s.held_bytes,
                "dvr_bytes": s.dvr_bytes,
                "clip_only_bytes": s.clip_only_bytes,
                "pinned_bytes": s.pinned_bytes,
            },
            "streams": s.streams,
            "clips": s.clips,
            "growing_clips": s.growing_clips,
            "dvr_segments": s.dvr_segments,
            "evicted_segments": s.evicted_segments,
        }
    )
