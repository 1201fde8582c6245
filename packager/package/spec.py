"""A clip rendition's media described as Livepeer's `videoSpec` (codec names, sizes, rates)."""

from __future__ import annotations

from typing import Any

from packager.media.model import InitSegment
from packager.store.model import ClipRendition

# Livepeer names codecs, not RFC 6381 strings.
_CODEC_NAMES = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "mp4a": "aac"}


def codec_name(rfc6381: str) -> str:
    family = rfc6381.split(".", 1)[0]
    return _CODEC_NAMES.get(family, family.lower())


def video_spec(cr: ClipRendition, init: InitSegment, duration: float) -> dict[str, Any]:
    """`init` is the rendition's first init segment (its tracks describe the video)."""
    tracks: list[dict[str, Any]] = []
    for k, track in enumerate(init.tracks):
        size = sum(s.track_sizes[k] for s in cr.segments if k < len(s.track_sizes))
        entry: dict[str, Any] = {
            "type": "video" if track.is_video else "audio" if track.is_audio else track.handler,
            "codec": codec_name(track.codec),
            "bitrate": round(size * 8 / duration) if duration > 0 else 0,
            "duration": round(duration, 3),
        }
        if track.is_video:
            entry.update(width=track.width, height=track.height, fps=round(cr.frame_rate() or 0, 3))
        elif track.is_audio:
            entry.update(channels=track.channels, sampleRate=track.sample_rate)
        tracks.append(entry)
    return {
        "format": "mp4",
        "duration": round(duration, 3),
        "bitrate": cr.average_bitrate(),
        "tracks": tracks,
    }
