"""Playback file names: built and parsed in one place so links and routes cannot drift apart.

rec_{clip}_master.m3u8 | .mp4               adaptive playlist / highest rendition MP4
rec_{clip}_media_{n}_{h}.m3u8 | .mp4        one rendition
rec_{clip}_media_{n}_{h}_init{k}.mp4        its k-th init segment (EXT-X-MAP)
rec_{clip}_media_{n}_{h}_seg{i}.m4s         its i-th media segment
rec_{clip}_poster.jpg                       its first shown frame (packager.service.poster)

A stream's live DVR window, under /live/{stream_id}/:

master.m3u8                                 adaptive: every rendition of the ladder
media_{n}_{h}.m3u8                          one rendition's sliding window
media_{n}_{h}_init_{init_id}.mp4            an init segment, named by its content hash
media_{n}_{h}_{seq}.m4s                     the segment numbered `seq` (SegmentKey.seq)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Strict: anything else is a 404, so no crafted path can reach another clip or a file.
_NAME = re.compile(
    r"rec_(?P<clip>[0-9a-f]{32})_"
    r"(?:(?P<master>master)|media_(?P<n>[1-9][0-9]{0,2})_(?P<h>0|[1-9][0-9]{0,4}))"
    r"(?:_init(?P<init>0|[1-9][0-9]{0,5})|_seg(?P<seg>0|[1-9][0-9]{0,6}))?"
    r"\.(?P<ext>m3u8|mp4|m4s)"
)


class Kind(Enum):
    PLAYLIST = "m3u8"
    MP4 = "mp4"
    INIT = "init"
    SEGMENT = "segment"


@dataclass(frozen=True, slots=True)
class PlaybackName:
    clip_id: str
    rendition: str | None  # "media_{n}_{h}", or None for master
    kind: Kind
    index: int = 0  # init or segment index


def parse(name: str) -> PlaybackName | None:
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    rendition = None if m["master"] else f"media_{m['n']}_{m['h']}"
    ext = m["ext"]
    if m["init"] is not None:
        if rendition is None or ext != "mp4":
            return None
        return PlaybackName(m["clip"], rendition, Kind.INIT, int(m["init"]))
    if m["seg"] is not None:
        if rendition is None or ext != "m4s":
            return None
        return PlaybackName(m["clip"], rendition, Kind.SEGMENT, int(m["seg"]))
    if ext == "m4s":
        return None
    return PlaybackName(m["clip"], rendition, Kind.PLAYLIST if ext == "m3u8" else Kind.MP4)


def playlist(clip_id: str, rendition: str = "master") -> str:
    return f"rec_{clip_id}_{rendition}.m3u8"


def mp4(clip_id: str, rendition: str = "master") -> str:
    return f"rec_{clip_id}_{rendition}.mp4"


def init(clip_id: str, rendition: str, index: int) -> str:
    return f"rec_{clip_id}_{rendition}_init{index}.mp4"


def segment(clip_id: str, rendition: str, index: int) -> str:
    return f"rec_{clip_id}_{rendition}_seg{index}.m4s"


_POSTER = re.compile(r"rec_(?P<clip>[0-9a-f]{32})_poster\.jpg")


def poster(clip_id: str) -> str:
    return f"rec_{clip_id}_poster.jpg"


def parse_poster(name: str) -> str | None:
    """The clip id of a poster's file name, or None. Kept apart from `parse`, whose kinds the
    playback route serves: a poster is decoded, not packaged."""
    m = _POSTER.fullmatch(name)
    return m["clip"] if m is not None else None


# ---- live DVR window -----------------------------------------------------------------------

LIVE_MASTER = "master.m3u8"

_LIVE = re.compile(
    r"media_(?P<n>[1-9][0-9]{0,2})_(?P<h>0|[1-9][0-9]{0,4})"
    r"(?:(?P<playlist>\.m3u8)|_init_(?P<init>[0-9a-f]{16,64})\.mp4|_(?P<seq>0|[1-9][0-9]{0,15})\.m4s)"
)


class LiveKind(Enum):
    MASTER = "master"
    PLAYLIST = "playlist"
    INIT = "init"
    SEGMENT = "segment"


@dataclass(frozen=True, slots=True)
class LiveName:
    kind: LiveKind
    number: int = 0  # the rendition's 1-based place in the ladder
    height: int = 0
    init_id: str = ""
    seq: int = 0

    @property
    def rendition(self) -> str:
        return f"media_{self.number}_{self.height}"


def parse_live(name: str) -> LiveName | None:
    if name == LIVE_MASTER:
        return LiveName(LiveKind.MASTER)
    m = _LIVE.fullmatch(name)
    if m is None:
        return None
    number, height = int(m["n"]), int(m["h"])
    if m["playlist"] is not None:
        return LiveName(LiveKind.PLAYLIST, number, height)
    if m["init"] is not None:
        return LiveName(LiveKind.INIT, number, height, init_id=m["init"])
    return LiveName(LiveKind.SEGMENT, number, height, seq=int(m["seq"]))


def live_rendition(number: int, height: int) -> str:
    """A live rendition's name, as the stream view lists it: `media_{n}_{height}`."""
    return f"media_{number}_{height}"


def live_playlist(rendition: str) -> str:
    return f"{rendition}.m3u8"


def live_init(rendition: str, init_id: str) -> str:
    return f"{rendition}_init_{init_id}.mp4"


def live_segment(rendition: str, seq: int) -> str:
    return f"{rendition}_{seq}.m4s"
