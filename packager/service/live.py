"""A stream's live DVR window as HLS: what a console (or anyone who clips) plays and scrubs.

Rendered on every request (a live playlist changes with each segment; HTTP caches hold it a
second). The only memory kept here is what RFC 8216 §4.3.3.3 needs and the store does not
say: how many EXT-X-DISCONTINUITY tags have rolled out of a rendition's window, for
EXT-X-DISCONTINUITY-SEQUENCE. It is counted from what this process has served: a process that
starts with a discontinuity already gone says fewer, which hls.js tolerates (it realigns a
lower count; a higher one is an error), never more.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from packager.errors import NotFound, NothingInDvr
from packager.media.model import InitSegment
from packager.package import hls, names
from packager.store.base import Store
from packager.store.model import RenditionInfo, SegmentRef

WINDOWS_KEPT = 4096  # renditions whose discontinuity count is remembered (least recent go)


@dataclass(frozen=True, slots=True)
class LiveRendition:
    """A rendition of the ladder as a live URL names it, and the DVR segments it holds now."""

    name: str  # media_{n}_{height}
    info: RenditionInfo
    segments: list[SegmentRef]


@dataclass
class _Breaks:
    """Discontinuities seen in one rendition's window: those still in it, and how many left."""

    first_seq: int = 0
    marks: list[int] = field(default_factory=list)  # seqs, ascending
    passed: int = 0

    def count(self, segments: list[SegmentRef]) -> int:
        first = segments[0].key.seq
        if first < self.first_seq:  # the stream was made again under the same id
            self.marks.clear()
            self.passed = 0
        self.first_seq = first
        left = bisect.bisect_right(self.marks, first)
        self.passed += left
        del self.marks[:left]
        newest = self.marks[-1] if self.marks else first
        self.marks.extend(s for s in hls.live_discontinuities(segments) if s > newest)
        return self.passed


class LivePlaylists:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._breaks: OrderedDict[tuple[str, str], _Breaks] = OrderedDict()

    async def ladder(self, stream_id: str) -> list[RenditionInfo]:
        ladder = await self.store.ladder(stream_id)
        if not ladder:
            raise NothingInDvr(f"stream {stream_id!r} has no media in its DVR yet")
        return ladder

    async def master(self, stream_id: str, query: str) -> tuple[bytes, str]:
        ladder = await self.ladder(stream_id)
        inits: dict[str, InitSegment] = {
            r.init_id: await self.store.init(r.init_id) for r in ladder
        }
        return _tagged(hls.live_master_playlist(ladder, inits, query))

    async def rendition(self, stream_id: str, number: int, height: int) -> LiveRendition:
        """The ladder's `number`-th rendition, if it still has that height (a ladder that
        changed under a player's URL answers 404 rather than other media)."""
        ladder = await self.ladder(stream_id)
        info = ladder[number - 1] if number <= len(ladder) else None
        if info is None or info.height != height:
            raise NotFound(f"stream {stream_id!r} has no rendition media_{number}_{height}")
        segments = await self.store.dvr_segments(stream_id, info.name)
        if not segments:
            raise NothingInDvr(f"rendition media_{number}_{height} has no media in the DVR")
        return LiveRendition(names.live_rendition(number, height), info, segments)

    async def media(
        self, stream_id: str, rendition: LiveRendition, query: str
    ) -> tuple[bytes, str]:
        breaks = self._window(stream_id, rendition.info.name).count(rendition.segments)
        text = hls.live_media_playlist(
            rendition.name, rendition.segments, rendition.info.target_duration, breaks, query
        )
        return _tagged(text)

    def _window(self, stream_id: str, source: str) -> _Breaks:
        key = (stream_id, source)
        found = self._breaks.get(key)
        if found is None:
            found = self._breaks[key] = _Breaks()
            while len(self._breaks) > WINDOWS_KEPT:
                self._breaks.popitem(last=False)
        else:
            self._breaks.move_to_end(key)
        return found

    @staticmethod
    def segment(rendition: LiveRendition, seq: int) -> SegmentRef:
        """A segment still in the window; one that left it is gone for live players."""
        segments = rendition.segments
        i = bisect.bisect_left(segments, seq, key=lambda s: s.key.seq)
        if i == len(segments) or segments[i].key.seq != seq:
            raise NotFound(f"segment {seq} of {rendition.name} is not in the DVR")
        return segments[i]

    async def init(self, rendition: LiveRendition, init_id: str) -> InitSegment:
        """An init segment that the window uses (ids are content hashes shared by streams:
        a stream's link must not reach another's)."""
        if init_id != rendition.info.init_id and all(
            s.init_id != init_id for s in rendition.segments
        ):
            raise NotFound(f"{rendition.name} has no init segment {init_id}")
        return await self.store.init(init_id)


def _tagged(text: str) -> tuple[bytes, str]:
    body = text.encode()
    return body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
