"""The first round's in-process segment (bytes plus what parsing learnt of them), kept for the
tests and the bench: the reference MP4 builder and `build_layout`'s compatibility path read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from packager.media.model import InitSegment, SegmentMedia, TrackSamples
from packager.store.model import Timing


@dataclass(eq=False, slots=True)
class Segment:
    """One media segment of one rendition, shared by reference between the DVR and clips.

    `data` is never copied after ingest: HLS serves it as is, MP4 layouts slice views of it.
    `start` may be corrected once by a late EXT-X-PROGRAM-DATE-TIME (the playlist can arrive
    after the segment); everything else is fixed at ingest.
    """

    seq: int  # per-rendition arrival order, never reused
    name: str  # the file name the encoder used
    data: bytes
    init: InitSegment
    media: SegmentMedia
    start: float  # wall clock, unix seconds
    duration: float  # seconds, exact from the main track's sample durations
    discontinuity: bool  # the timeline does not continue from the previous segment
    timing: Timing
    pins: int = 0  # how many clips hold this segment
    in_dvr: bool = True
    # Known once, read by every playlist (EXT-X-INDEPENDENT-SEGMENTS).
    starts_with_keyframe: bool = field(init=False)

    def __post_init__(self) -> None:
        video = self.init.video
        samples = self.media.track(video.track_id) if video is not None else None
        self.starts_with_keyframe = video is None or (
            samples is not None and samples.count > 0 and samples.sync[0] == 1
        )

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def main(self) -> TrackSamples:
        """Samples of the track that times the segment (video when there is one)."""
        samples = self.media.track(self.init.main.track_id)
        assert samples is not None  # ingest refuses segments without the main track
        return samples

    @property
    def bitrate(self) -> float:
        """Bits per second of the whole segment, as HLS BANDWIDTH wants it (RFC 8216 §4.3.4.2)."""
        return self.size * 8 / self.duration if self.duration > 0 else 0.0
