"""Plain dataclasses the media parsers return. Sample tables are `array`s per field, not one
object per sample: an hour of 30 fps video plus 48 kHz AAC is ~277k samples."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

VIDEO = "vide"
AUDIO = "soun"


@dataclass(frozen=True, slots=True)
class Edit:
    """One entry of a track's edit list (elst, ISO/IEC 14496-12 §8.6.6).

    `duration` is in the movie timescale; `media_time` in the track's, -1 for an empty edit.
    """

    duration: int
    media_time: int
    rate: int = 1  # media_rate_integer; 0 is a dwell


@dataclass(frozen=True, slots=True)
class Track:
    """One track of an init segment: what a player and a progressive MP4 need to know of it."""

    track_id: int
    handler: str  # "vide" | "soun" | other four-cc
    timescale: int
    codec: str  # RFC 6381 string, e.g. "avc1.64001f", "mp4a.40.2"
    stsd: bytes  # the whole stsd box, reused verbatim when we write a progressive moov
    language: bytes = b"\x55\xc4"  # packed ISO-639-2 "und", as mdhd stores it
    width: int = 0
    height: int = 0
    channels: int = 0
    sample_rate: int = 0
    default_sample_duration: int = 0  # from trex
    default_sample_size: int = 0
    default_sample_flags: int = 0
    # The init's edit list: a fragmented stream's presentation offset (B-frame delay, A/V lead).
    edits: tuple[Edit, ...] = ()
    nal_length_size: int = 4  # AVC/HEVC: bytes of each NAL unit's length in a sample

    @property
    def is_video(self) -> bool:
        return self.handler == VIDEO

    @property
    def is_audio(self) -> bool:
        return self.handler == AUDIO


@dataclass(frozen=True, slots=True)
class InitSegment:
    """A parsed fMP4 init segment (ftyp + moov with mvex). `data` is kept to serve as EXT-X-MAP."""

    data: bytes
    tracks: tuple[Track, ...]
    movie_timescale: int

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks if t.is_video), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks if t.is_audio), None)

    @property
    def main(self) -> Track:
        """The track whose clock times segments: video when there is one."""
        return self.video or self.tracks[0]

    @property
    def codecs(self) -> str:
        """The CODECS attribute of an HLS variant: each track's RFC 6381 string, each once
        (two AAC tracks are one `mp4a.40.2`, RFC 8216 §4.3.4.2)."""
        return ",".join(dict.fromkeys(t.codec for t in self.tracks))

    def track(self, track_id: int) -> Track | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)


def _u32() -> array[int]:
    return array("I")


def _u64() -> array[int]:
    return array("Q")


def _i32() -> array[int]:
    return array("i")


def _u8() -> array[int]:
    return array("B")


@dataclass(frozen=True, slots=True)
class TrackSamples:
    """One track's samples within one media segment, in decode order.

    `offsets` are byte positions in the segment's own bytes, so a sample is
    `segment.data[offsets[i] : offsets[i] + sizes[i]]` with no copy through a memoryview.
    """

    track_id: int
    base_decode_time: int  # tfdt of the first sample, in the track's timescale
    durations: array[int] = field(default_factory=_u32)
    sizes: array[int] = field(default_factory=_u32)
    offsets: array[int] = field(default_factory=_u64)
    cts_offsets: array[int] = field(default_factory=_i32)  # composition minus decode time
    sync: array[int] = field(default_factory=_u8)  # 1 where the sample is a sync sample

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def duration(self) -> int:
        return sum(self.durations)

    @property
    def total_size(self) -> int:
        return sum(self.sizes)

    @property
    def end_decode_time(self) -> int:
        return self.base_decode_time + self.duration


# What a Python object costs beyond its items (an array header, a dataclass with slots).
_ARRAY_OVERHEAD = 80
_OBJECT_OVERHEAD = 120


@dataclass(frozen=True, slots=True)
class SegmentMedia:
    """What a media segment holds, per track, as parsed from its moof/traf/trun boxes."""

    tracks: tuple[TrackSamples, ...]

    @property
    def nbytes(self) -> int:
        """Memory its tables take: what the budget counts beside the segment's own bytes."""
        total = _OBJECT_OVERHEAD
        for t in self.tracks:
            arrays = (t.durations, t.sizes, t.offsets, t.cts_offsets, t.sync)
            total += _OBJECT_OVERHEAD + sum(_ARRAY_OVERHEAD + len(a) * a.itemsize for a in arrays)
        return total

    def track(self, track_id: int) -> TrackSamples | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)
