"""Value types every store backend speaks: streams, segment references, clip manifests.

Frozen and made of plain values, so a backend can hand them out without sharing live state and
serialise them (the Redis backend stores exactly these). A clip's life is an explicit state
with a table of allowed moves, as h11's `_state.py` does for HTTP: a change that the table does
not allow is a bug, caught where it happens rather than as an odd clip later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from packager.errors import PackagerError


class ClipState(Enum):
    GROWING = "growing"  # its end is still ahead of the ingest: segments keep arriving
    COMPLETE = "complete"  # every segment it will ever hold is there
    SAVING = "saving"  # vod_required: its durable copy is being written
    SAVED = "saved"  # vod_required: its durable copy exists (video_id is set)
    FAILED = "failed"  # vod_required: the copy could not be written (vod_error says why)
    EXPIRED = "expired"  # past its expiration: every link answers 404, its memory is freed


TRANSITIONS: dict[ClipState, frozenset[ClipState]] = {
    ClipState.GROWING: frozenset({ClipState.COMPLETE, ClipState.EXPIRED}),
    ClipState.COMPLETE: frozenset({ClipState.SAVING, ClipState.EXPIRED}),
    # A save a dead process left half done is taken up again (SAVING -> SAVING) by another.
    ClipState.SAVING: frozenset(
        {ClipState.SAVING, ClipState.SAVED, ClipState.FAILED, ClipState.EXPIRED}
    ),
    ClipState.SAVED: frozenset({ClipState.EXPIRED}),
    ClipState.FAILED: frozenset({ClipState.EXPIRED}),
    ClipState.EXPIRED: frozenset(),
}


class InvalidTransition(PackagerError):
    """A clip was asked to move to a state its current one does not lead to (a conflict)."""

    code = "invalid_clip_state"


def check_transition(current: ClipState, new: ClipState) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} clip cannot become {new.value}")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's settings: what `POST /streams` made, never its media."""

    id: str
    name: str
    dvr_duration: float
    created_at: float
    push_key_hash: str | None = None  # sha256 of the stream's own ingest key
    public_live: bool = False  # its /live/ playlists need no signed link


class Timing(Enum):
    """Where a segment's wall-clock start came from, best first."""

    PDT = "program-date-time"  # the encoder's EXT-X-PROGRAM-DATE-TIME
    CONTINUED = "continued"  # previous segment's end (media time is contiguous)
    ARRIVAL = "arrival"  # arrival time minus duration: a live encoder sends a segment when done


@dataclass(frozen=True, slots=True)
class SegmentKey:
    """Where a segment's bytes and tables are found, in any backend."""

    stream_id: str
    rendition: str  # the encoder's name for it (the ingest path)
    seq: int  # per rendition, in arrival order, never reused
    # Hashed once: a cut of an hour looks up thousands of these, and the generated __hash__
    # builds and hashes a tuple each time (a quarter of the memory store's add_clip).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.stream_id, self.rendition, self.seq)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[SegmentKey], tuple[str, str, int]]:
        # str hashes differ between processes: a pickled key hashes afresh where it lands
        return SegmentKey, (self.stream_id, self.rendition, self.seq)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """One stored media segment by value: what playlists, cuts and MP4 layouts read of it
    without its bytes. A clip keeps the refs it took: later corrections in the DVR (a late
    program-date-time) do not change what a clip has already served."""

    key: SegmentKey
    name: str  # the file name the encoder used
    init_id: str  # content hash of its init segment
    start: float  # wall clock, unix seconds
    duration: float  # seconds, from the main track's sample durations
    size: int  # bytes of the segment file
    discontinuity: bool  # the timeline does not continue from the previous segment
    keyframe: bool  # its first main-track sample is a sync sample (decodes on its own)
    frames: int = 0  # video samples (for FRAME-RATE)
    track_sizes: tuple[int, ...] = ()  # sample bytes per track, in the init's track order
    timing: Timing = Timing.ARRIVAL
    # What holding it costs, for the memory budget: its bytes plus what parsing them built
    # (sample tables), so a tiny segment claiming 200,000 samples costs what it really costs.
    cost: int = 0

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def bitrate(self) -> float:
        """Bits per second of the whole segment, as HLS BANDWIDTH wants it (RFC 8216 §4.3.4.2)."""
        return self.size * 8 / self.duration if self.duration > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RenditionInfo:
    """A rendition of a live stream as the DVR holds it now: one rung of the ladder."""

    name: str  # the ingest name
    init_id: str
    width: int
    height: int
    codecs: str
    bitrate: float  # average bits per second over the DVR
    segments: int
    start: float  # first segment's start
    end: float  # last segment's end
    target_duration: int  # the longest segment held, rounded up
    peak_bitrate: int  # of the recent segments: what a clip with none yet advertises
    frame_rate: float | None
    note: str | None = None  # what players should know of it (a hev1 kept: Apple will not play)


@dataclass(frozen=True, slots=True)
class ClipRendition:
    """One rung of a clip's ladder. `segments` only ever grows, so indexes are stable URLs."""

    number: int  # 1-based place in the ladder, lowest first
    height: int
    source: str  # the DVR rendition (ingest name) a growing clip keeps reading from
    target_duration: int  # EXT-X-TARGETDURATION, fixed when cut: a growing playlist only grows
    # The source as the DVR had it when cut: a growing clip with no segment yet describes
    # itself by these (its master playlist cannot wait for media).
    init_id: str
    bandwidth: int
    average_bandwidth: int
    source_frame_rate: float | None
    segments: tuple[SegmentRef, ...] = ()

    @property
    def name(self) -> str:
        """The string that replaces `master` in a link: `media_{n}_{height}`."""
        return f"media_{self.number}_{self.height}"

    @property
    def inits(self) -> tuple[str, ...]:
        """The init ids its segments use, in order of first use (EXT-X-MAP URIs index these)."""
        out: list[str] = []
        for seg in self.segments:
            if not out or out[-1] != seg.init_id:
                out.append(seg.init_id)
        return tuple(out)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def end(self) -> float | None:
        return self.segments[-1].end if self.segments else None

    @property
    def first_init(self) -> str:
        return self.segments[0].init_id if self.segments else self.init_id

    def peak_bitrate(self) -> int:
        """HLS BANDWIDTH: the largest segment bit rate (RFC 8216 §4.3.4.2)."""
        if not self.segments:
            return self.bandwidth
        return math.ceil(max(s.bitrate for s in self.segments))

    def average_bitrate(self) -> int:
        duration = self.duration
        if not self.segments or duration <= 0:
            return self.average_bandwidth
        return math.ceil(self.size * 8 / duration)

    def frame_rate(self) -> float | None:
        for seg in self.segments:
            if seg.frames and seg.duration > 0:
                return seg.frames / seg.duration
        return self.source_frame_rate


@dataclass(frozen=True, slots=True)
class Clip:
    """An instant clip's manifest. `start`/`duration` are what was asked until media arrives,
    then what was cut."""

    id: str
    stream_id: str
    created_at: float
    requested_start: float
    requested_end: float
    expiration: float
    vod_required: bool
    renditions: tuple[ClipRendition, ...]
    state: ClipState = ClipState.GROWING
    name: str | None = None
    private: bool = False  # playback needs a signed link
    # Cut while its end was still ahead: its playlists are EVENT for good (RFC 8216 §4.3.3.5:
    # an EVENT playlist is only appended to), ENDLIST added when it completes.
    event: bool = False
    completed_at: float | None = None
    note: str | None = None  # set when it completed short (the ingest stopped)
    video_id: int | None = None
    vod_error: str | None = None
    # Seconds between the earliest and the latest first segment of its renditions: each starts
    # where it decodes, so renditions whose GOPs do not line up cannot start on one instant.
    spread: float = 0.0
    # Shows exactly the frames of [requested_start, requested_end) (packager.package.frames),
    # instead of whole segments: the MP4 by its edit lists, HLS with its partial GOPs re-encoded.
    frame_accurate: bool = False

    @property
    def complete(self) -> bool:
        return self.state not in (ClipState.GROWING, ClipState.EXPIRED)

    @property
    def reference(self) -> ClipRendition:
        """The highest rendition: what `master.mp4` serves and what timing is reported from."""
        return self.renditions[-1]

    @property
    def start(self) -> float:
        ref = self.reference
        return ref.segments[0].start if ref.segments else self.requested_start

    @property
    def duration(self) -> float:
        """Media seconds really cut once complete; until then, up to the asked end."""
        ref = self.reference
        if self.complete and ref.segments:
            return ref.duration
        return self.requested_end - self.start

    def rendition(self, name: str) -> ClipRendition | None:
        return next((r for r in self.renditions if r.name == name), None)


@dataclass(frozen=True, slots=True)
class StoreStats:
    dvr_bytes: int
    clip_only_bytes: int
    pinned_bytes: int
    budget: int
    streams: int
    clips: int
    growing_clips: int
    dvr_segments: int
    evicted_segments: int
    expired_clips: int
    init_bytes: int = 0  # init segments kept
    uploading_bytes: int = 0  # request bodies being received by this process

    @property
    def held_bytes(self) -> int:
        return self.dvr_bytes + self.clip_only_bytes + self.init_bytes + self.uploading_bytes
