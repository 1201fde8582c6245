"""The DVR: per stream and rendition, a ring of the most recent segments."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from packager.media.model import InitSegment
from packager.store.segment import Segment

OVERLAP_EPSILON = 0.002  # seconds


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    """What the encoder's own playlist says of one segment file."""

    duration: float
    program_date_time: float | None
    discontinuity: bool


@dataclass(eq=False)
class Rendition:
    """One rendition of a live stream as the encoder pushes it, named by its ingest path."""

    name: str
    init: InitSegment | None = None
    segments: deque[Segment] = field(default_factory=deque)
    next_seq: int = 0
    # The latest playlist's entries by file name: it may arrive before or after the segment.
    playlist: dict[str, PlaylistEntry] = field(default_factory=dict)
    init_changed: bool = False  # a new init arrived: the next segment starts a discontinuity

    @property
    def height(self) -> int:
        video = self.init.video if self.init else None
        return video.height if video else 0

    @property
    def last(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def bitrate(self) -> float:
        """Average bits per second over what the ring holds; orders the ladder."""
        duration = sum(s.duration for s in self.segments)
        return sum(s.size for s in self.segments) * 8 / duration if duration > 0 else 0.0

    def overlapping(self, start: float, end: float) -> list[Segment]:
        """Segments whose span meets [start, end): the segment-aligned cut of the contract."""
        segs = self.segments
        # A PDT has millisecond precision: a segment must overlap by more than that to count,
        # or a cut on a boundary would take a neighbour for a rounding error.
        start, end = start + OVERLAP_EPSILON, end - OVERLAP_EPSILON
        # Starts are increasing within a ring (ingest refuses time going backwards).
        i = bisect.bisect_right(segs, start, key=lambda s: s.end)
        out: list[Segment] = []
        for k in range(i, len(segs)):
            seg = segs[k]
            if seg.start >= end:
                break
            out.append(seg)
        return out


@dataclass(eq=False)
class Stream:
    """A live stream: its settings and the DVR rings of its renditions."""

    id: str
    name: str
    dvr_duration: float
    created_at: float
    renditions: dict[str, Rendition] = field(default_factory=dict)

    def ladder(self) -> list[Rendition]:
        """Renditions that have media, lowest first (by height, then bitrate), as Gcore lists them."""
        live = [r for r in self.renditions.values() if r.init is not None and r.segments]
        return sorted(live, key=lambda r: (r.height, r.bitrate(), r.name))

    def segments(self) -> Iterator[Segment]:
        for rendition in self.renditions.values():
            yield from rendition.segments

    @property
    def dvr_start(self) -> float | None:
        starts = [r.segments[0].start for r in self.renditions.values() if r.segments]
        return min(starts) if starts else None

    @property
    def dvr_end(self) -> float | None:
        ends = [r.segments[-1].end for r in self.renditions.values() if r.segments]
        return max(ends) if ends else None
