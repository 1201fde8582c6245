"""Clips: a copy (by reference) of a range of the DVR, one list of segments per rendition."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from packager.media.model import InitSegment
from packager.store.dvr import Rendition
from packager.store.segment import Segment


@dataclass(eq=False)
class ClipRendition:
    """One rung of a clip's ladder. `segments` only ever grows, so segment indexes are stable URLs."""

    number: int  # 1-based place in the ladder, lowest first
    source: Rendition  # the DVR rendition a growing clip keeps reading from
    segments: list[Segment] = field(default_factory=list)
    inits: list[InitSegment] = field(default_factory=list)
    init_of: list[int] = field(default_factory=list)  # per segment: index into `inits`
    # Per segment, its wall-clock start as it was when the clip took it: a late playlist may
    # still correct the DVR's copy, but a growing clip's served lines must never change.
    starts: list[float] = field(default_factory=list)
    height: int = 0
    # EXT-X-TARGETDURATION, fixed when the clip is cut so a growing playlist only ever grows.
    target_duration: int = 0

    @property
    def name(self) -> str:
        """The string that replaces `master` in a link: `media_{n}_{height}`."""
        return f"media_{self.number}_{self.height}"

    def append(self, segment: Segment) -> None:
        if not self.inits or self.inits[-1] is not segment.init:
            self.inits.append(segment.init)
        self.init_of.append(len(self.inits) - 1)
        self.segments.append(segment)
        self.starts.append(segment.start)

    @property
    def init(self) -> InitSegment:
        return self.inits[0] if self.inits else self._source_init()

    def _source_init(self) -> InitSegment:
        assert self.source.init is not None  # ladders only hold renditions with an init
        return self.source.init

    @property
    def end(self) -> float | None:
        return self.starts[-1] + self.segments[-1].duration if self.segments else None

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def peak_bitrate(self) -> int:
        """HLS BANDWIDTH: the largest segment bit rate (RFC 8216 §4.3.4.2)."""
        segs = self.segments or list(self.source.segments)[-5:]
        return math.ceil(max((s.bitrate for s in segs), default=0.0))

    def average_bitrate(self) -> int:
        segs = self.segments or list(self.source.segments)[-5:]
        duration = sum(s.duration for s in segs)
        return math.ceil(sum(s.size for s in segs) * 8 / duration) if duration > 0 else 0

    def frame_rate(self) -> float | None:
        video = self.init.video
        if video is None:
            return None
        segs = self.segments or list(self.source.segments)[-1:]
        for seg in segs:
            samples = seg.media.track(video.track_id)
            if samples is not None and samples.count and samples.duration:
                return samples.count * video.timescale / samples.duration
        return None


@dataclass(eq=False)
class Clip:
    """An instant clip. `start`/`end` are what was asked until media arrives, then what was cut."""

    id: str
    stream_id: str
    created_at: float
    requested_start: float
    requested_end: float
    expiration: float
    vod_required: bool
    renditions: list[ClipRendition]
    name: str | None = None
    private: bool = False  # playback needs a signed link
    # Cut while its end was still ahead: its playlists are EVENT for good (RFC 8216 §4.3.3.5:
    # an EVENT playlist is only appended to), ENDLIST added when it completes.
    event: bool = False
    complete: bool = False
    completed_at: float | None = None
    completion_note: str | None = None  # set when it completed short (the ingest stopped)
    video_id: str | None = None
    # Rendered playlists (bytes, ETag) by (rendition or "master", signed query), once complete.
    rendered: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    vod_error: str | None = None  # why the durable copy could not be written

    @property
    def reference(self) -> ClipRendition:
        """The highest rendition: what `master.mp4` serves and what timing is reported from."""
        return self.renditions[-1]

    @property
    def start(self) -> float:
        ref = self.reference
        return ref.starts[0] if ref.segments else self.requested_start

    @property
    def duration(self) -> float:
        """Media seconds really cut once complete; until then, up to the asked end."""
        ref = self.reference
        if self.complete and ref.segments:
            return ref.duration
        return self.requested_end - self.start

    def rendition(self, name: str) -> ClipRendition | None:
        return next((r for r in self.renditions if r.name == name), None)

    def segments(self) -> list[Segment]:
        return [s for r in self.renditions for s in r.segments]
