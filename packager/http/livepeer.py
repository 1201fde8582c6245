"""Livepeer-shaped views of clips (its Asset object) and its `POST /clip` request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from packager.errors import InvalidField
from packager.http.api import authorize, base_url
from packager.http.jsonio import json_response, number, read_json_object, string
from packager.http.keys import CONFIG, STORE
from packager.package import names
from packager.store.clips import Clip, ClipRendition

routes = web.RouteTableDef()

# Livepeer names codecs, not RFC 6381 strings.
_CODEC_NAMES = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "mp4a": "aac"}


def _codec_name(rfc6381: str) -> str:
    return _CODEC_NAMES.get(rfc6381.split(".", 1)[0], rfc6381.split(".", 1)[0].lower())


def _tracks(cr: ClipRendition, duration: float) -> list[dict[str, Any]]:
    tracks: list[dict[str, Any]] = []
    for track in cr.init.tracks:
        samples = [s.media.track(track.track_id) for s in cr.segments]
        size = sum(t.total_size for t in samples if t is not None)
        entry: dict[str, Any] = {
            "type": "video" if track.is_video else "audio" if track.is_audio else track.handler,
            "codec": _codec_name(track.codec),
            "bitrate": round(size * 8 / duration) if duration > 0 else 0,
            "duration": round(duration, 3),
        }
        if track.is_video:
            entry.update(width=track.width, height=track.height, fps=round(cr.frame_rate() or 0, 3))
        elif track.is_audio:
            entry.update(channels=track.channels, sampleRate=track.sample_rate)
        tracks.append(entry)
    return tracks


def asset_view(clip: Clip, request: web.Request) -> dict[str, Any]:
    """One clip as Livepeer's Asset: the highest rendition describes the video."""
    prefix = f"{base_url(request)}/rec/{clip.stream_id}/"
    ref = clip.reference
    duration = clip.duration
    ready = clip.complete and (not clip.vod_required or clip.video_id is not None)
    updated = clip.completed_at if clip.completed_at is not None else clip.created_at
    asset: dict[str, Any] = {
        "id": clip.id,
        "playbackId": clip.id,
        "name": clip.name or f"clip of {clip.stream_id}",
        "source": {"type": "clip", "playbackId": clip.stream_id},
        "playbackUrl": prefix + names.playlist(clip.id),
        "downloadUrl": prefix + names.mp4(clip.id),
        "createdAt": round(clip.created_at * 1000),
        "status": {"phase": "ready" if ready else "uploading", "updatedAt": round(updated * 1000)},
        "videoSpec": {
            "format": "mp4",
            "duration": round(duration, 3),
            "bitrate": ref.average_bitrate(),
            "tracks": _tracks(ref, duration),
        },
    }
    return asset


@routes.get("/streams/{stream_id}/clips")
async def list_assets(request: web.Request) -> web.Response:
    authorize(request)
    clips = request.app[STORE].list_clips(request.match_info["stream_id"])
    return json_response([asset_view(c, request) for c in clips])


@routes.post("/clip")
async def create_clip(request: web.Request) -> web.Response:
    """Livepeer's body: playbackId (our stream id), startTime and endTime in Unix ms, name."""
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
    clip = request.app[STORE].create_clip(
        stream_id,
        duration=(end_ms - start_ms) / 1000,
        start=start_ms / 1000,
        name=string(body, "name"),
    )
    asset = asset_view(clip, request)
    return json_response({"task": {"id": f"task-{clip.id}"}, "asset": asset}, status=201)
