"""The store's value types as bytes, for backends that keep them outside this process (Redis).

JSON through orjson: floats are written by their shortest round-tripping form and read back
to the same double, so a segment's start or a clip's expiration compares the same after the
trip as before. Lua scripts treat these documents as opaque strings; the few numbers a script
must compare (a segment's start and end, a clip's range) are kept beside them as plain fields
written by Python, never re-encoded by Lua (its cjson prints 14 significant digits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from packager.store.base import PlaylistEntry
from packager.store.model import (
    Clip,
    ClipRendition,
    ClipState,
    SegmentKey,
    SegmentRef,
    StreamInfo,
    Timing,
)


def num(value: float) -> str:
    """A float as a Lua script reads it back exactly (`tonumber` parses the shortest repr)."""
    return repr(float(value))


def stream_to_bytes(info: StreamInfo) -> bytes:
    return orjson.dumps(
        {
            "id": info.id,
            "name": info.name,
            "dvr_duration": info.dvr_duration,
            "created_at": info.created_at,
            "push_key_hash": info.push_key_hash,
            "public_live": info.public_live,
        }
    )


def stream_from_bytes(data: bytes) -> StreamInfo:
    d = orjson.loads(data)
    return StreamInfo(
        id=d["id"],
        name=d["name"],
        dvr_duration=d["dvr_duration"],
        created_at=d["created_at"],
        push_key_hash=d["push_key_hash"],
        public_live=d["public_live"],
    )


def ref_to_bytes(ref: SegmentRef) -> bytes:
    """A segment record; its key's stream and rendition are known from where it is kept."""
    return orjson.dumps(
        [
            ref.key.seq,
            ref.name,
            ref.init_id,
            ref.start,
            ref.duration,
            ref.size,
            ref.discontinuity,
            ref.keyframe,
            ref.frames,
            ref.track_sizes,
            ref.timing.value,
            ref.cost,
        ]
    )


def ref_from_bytes(stream_id: str, rendition: str, data: bytes | str) -> SegmentRef:
    seq, name, init_id, start, duration, size, disc, key, frames, sizes, timing, cost = (
        orjson.loads(data)
    )
    return SegmentRef(
        key=SegmentKey(stream_id, rendition, seq),
        name=name,
        init_id=init_id,
        start=start,
        duration=duration,
        size=size,
        discontinuity=disc,
        keyframe=key,
        frames=frames,
        track_sizes=tuple(sizes),
        timing=Timing(timing),
        cost=cost,
    )


def clip_head_to_bytes(clip: Clip) -> bytes:
    """What never changes of a clip: everything but its segments and its life's fields."""
    return orjson.dumps(
        {
            "id": clip.id,
            "stream_id": clip.stream_id,
            "created_at": clip.created_at,
            "requested_start": clip.requested_start,
            "requested_end": clip.requested_end,
            "expiration": clip.expiration,
            "vod_required": clip.vod_required,
            "name": clip.name,
            "private": clip.private,
            "event": clip.event,
            "frame_accurate": clip.frame_accurate,
            "renditions": [
                {
                    "number": cr.number,
                    "height": cr.height,
                    "source": cr.source,
                    "target_duration": cr.target_duration,
                    "init_id": cr.init_id,
                    "bandwidth": cr.bandwidth,
                    "average_bandwidth": cr.average_bandwidth,
                    "source_frame_rate": cr.source_frame_rate,
                }
                for cr in clip.renditions
            ],
        }
    )


def clip_from_parts(
    head: bytes,
    fields: Mapping[bytes, bytes],
    segments: list[tuple[SegmentRef, ...]],
) -> Clip:
    """A clip from its head, its life's fields (state, completed_at, note, video_id,
    vod_error) and each rendition's segments."""
    d: dict[str, Any] = orjson.loads(head)
    renditions = tuple(
        ClipRendition(segments=segs, **r)
        for r, segs in zip(d.pop("renditions"), segments, strict=True)
    )

    def text(name: bytes) -> str | None:
        value = fields.get(name)
        return value.decode() if value else None

    completed_at = text(b"completed_at")
    video_id = text(b"video_id")
    return Clip(
        renditions=renditions,
        state=ClipState(text(b"state")),
        completed_at=float(completed_at) if completed_at is not None else None,
        note=text(b"note"),
        video_id=int(video_id) if video_id is not None else None,
        vod_error=text(b"vod_error"),
        **d,
    )


def playlist_to_bytes(entries: Mapping[str, PlaylistEntry]) -> bytes:
    return orjson.dumps(
        {n: [e.duration, e.program_date_time, e.discontinuity] for n, e in entries.items()}
    )


def playlist_from_bytes(data: bytes | None) -> dict[str, PlaylistEntry]:
    if not data:
        return {}
    return {n: PlaylistEntry(*e) for n, e in orjson.loads(data).items()}
