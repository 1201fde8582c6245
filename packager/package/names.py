"""Playback file names: built and parsed in one place so links and routes cannot drift apart.

rec_{clip}_master.m3u8 | .mp4               adaptive playlist / highest rendition MP4
rec_{clip}_media_{n}_{h}.m3u8 | .mp4        one rendition
rec_{clip}_media_{n}_{h}_init{k}.mp4        its k-th init segment (EXT-X-MAP)
rec_{clip}_media_{n}_{h}_seg{i}.m4s         its i-th media segment
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
