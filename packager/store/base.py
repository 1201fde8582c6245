"""The store's contract: one `Protocol` every backend implements (memory.py, redis.py), and
the small value types that travel with it.

Async throughout because a remote backend needs it; the in-memory one answers without ever
yielding. Everything that changes state goes through these methods (ingest included), so a
backend can make each step atomic: Redis does the multi-key ones in Lua on one hash slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from packager.clock import Clock
from packager.errors import PackagerError
from packager.media.model import InitSegment
from packager.media.prepared import PreparedSegment
from packager.store.model import (
    Clip,
    ClipState,
    RenditionInfo,
    SegmentKey,
    SegmentRef,
    StoreStats,
    StreamInfo,
)

# A PDT has millisecond precision: a segment must overlap a cut by more than that to count,
# or a cut on a boundary would take a neighbour for a rounding error.
OVERLAP_EPSILON = 0.002
END_EPSILON = 1e-3


INIT_OVERHEAD = 2048  # a parsed init's tracks and records beside its bytes


def init_cost(init: InitSegment) -> int:
    """What keeping an init segment costs, for the memory budget."""
    return len(init.data) + INIT_OVERHEAD


@dataclass(frozen=True, slots=True)
class Limits:
    max_streams: int = 1000
    max_renditions: int = 16  # per stream: a ladder has a handful
    max_clips_per_stream: int = 1000
    max_clips: int = 10000
    max_dvr_duration: float = 4 * 3600.0
    completion_grace: float = 10.0  # how long past its end a growing clip waits for the ingest


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    """What the encoder's own playlist says of one segment file."""

    duration: float
    program_date_time: float | None
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class RenditionState:
    """What the ingest needs to know of a rendition to place its next segment."""

    name: str
    init_id: str | None
    init_changed: bool  # a new init arrived: the next segment starts a discontinuity
    init_resent: bool  # an init (maybe the same) came since the last segment: a new run
    last: SegmentRef | None
    last_end_dts: int | None  # where the last segment's main track ended, in its timescale
    last_digest: (
        str | None
    )  # the last segment's fingerprint (ingest.fingerprint): a retry's matches
    last_arrival: float | None  # when the last segment arrived (our clock)
    # Decode-time shift per track id that this run's segments get: a restarted encoder's
    # timestamps moved on to continue the rendition's timeline.
    shift: tuple[tuple[int, int], ...]
    playlist: Mapping[str, PlaylistEntry]  # the latest playlist's entries by file name
    recent: tuple[SegmentRef, ...]  # the last few segments, oldest first
    next_seq: int  # the number the next segment gets
    demux: str | None  # an MPEG-TS rendition's demuxer state (JSON)
    # The init as the encoder pushed it, when `init_id` is the ingest's revision of it (a
    # hev1 init served as hvc1): a re-sent copy of it is no new init.
    init_source: str | None
    init_note: str | None  # why the current init is served as it is (a hev1 kept), or None


class TimerKind(Enum):
    EXPIRE = 1
    DEADLINE = 2  # a growing clip's end + grace: complete it with what it has
    SAVE = 3  # a VOD save's hold ran out (its process died): another may take it up


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer that fired, with the clip as it left it."""

    kind: TimerKind
    clip: Clip


class SegmentGone(PackagerError):
    """A segment a cut chose left the DVR before the clip could pin it: cut again."""

    code = "segment_gone"


class Store(Protocol):
    """Streams, their DVR rings, clips, timers and memory accounting, behind one interface."""

    clock: Clock
    budget: int
    limits: Limits
    # Exceptions that mean the backend cannot be reached right now (a Redis down or too slow):
    # answered 503 + Retry-After, not 500 (packager.http.errors).
    unavailable: tuple[type[BaseException], ...]

    # streams
    async def create_stream(self, info: StreamInfo) -> StreamInfo: ...
    async def stream(self, stream_id: str) -> StreamInfo: ...
    async def streams(self) -> list[StreamInfo]: ...
    async def delete_stream(self, stream_id: str) -> None: ...
    async def ladder(self, stream_id: str) -> list[RenditionInfo]: ...
    async def dvr_segments(
        self, stream_id: str, rendition: str, start: float | None = None, end: float | None = None
    ) -> list[SegmentRef]: ...

    # ingest
    async def rendition(self, stream_id: str, name: str) -> RenditionState | None: ...
    async def put_init(
        self, stream_id: str, rendition: str, init: InitSegment, init_id: str
    ) -> bool: ...
    async def revise_init(
        self,
        stream_id: str,
        rendition: str,
        current_id: str,
        init: InitSegment,
        init_id: str,
        *,
        source_id: str | None,
        note: str | None,
        changed: bool = False,
    ) -> bool:
        """What the ingest learned of the rendition's current init from its segments: serve
        `init` in its place (`init_id` may be `current_id`: only the note changes). `source_id`
        is the init as pushed (a re-sent copy of it keeps this one), `note` says why it is
        served so. Not a new init (no discontinuity) unless `changed`: the media changed
        too. False, and nothing done, if `current_id` is no longer the rendition's init."""
        ...

    async def set_playlist(
        self, stream_id: str, rendition: str, entries: dict[str, PlaylistEntry]
    ) -> None: ...
    async def set_demux_state(self, stream_id: str, rendition: str, state: str) -> None: ...
    async def retime(self, key: SegmentKey, start: float) -> None: ...
    async def next_seq(self, stream_id: str, rendition: str) -> int: ...
    async def add_segment(
        self,
        ref: SegmentRef,
        data: bytes,
        tables: PreparedSegment,
        end_dts: int,
        digest: str,
        shift: tuple[tuple[int, int], ...] = (),
    ) -> list[Clip]: ...
    async def sweep(self) -> None: ...
    # Request bodies in flight count too; process-local and synchronous: called per chunk.
    def reserve_upload(self, size: int) -> None: ...
    def release_upload(self, size: int) -> None: ...

    # clips
    async def add_clip(self, clip: Clip) -> Clip: ...
    async def clip(self, stream_id: str, clip_id: str) -> Clip: ...
    async def clips(self, stream_id: str) -> list[Clip]: ...
    async def all_clips(self) -> list[Clip]: ...
    async def update_clip(
        self,
        clip_id: str,
        state: ClipState,
        *,
        video_id: int | None = None,
        vod_error: str | None = None,
    ) -> Clip: ...
    async def hold_save(self, clip_id: str, until: float | None) -> None:
        """A VOD save of the clip is under way until `until` (renewed while writing; None:
        done). If the hold runs out, `fire_due` reports a SAVE timer, once, to take it up."""
        ...

    # What a clip makes of its own (a frame-accurate clip's re-encoded segments), kept with it:
    # counted against the budget (BudgetExceeded), freed when it expires; dropped if it has.
    async def put_clip_media(
        self, stream_id: str, clip_id: str, name: str, data: bytes
    ) -> None: ...
    async def clip_media(self, stream_id: str, clip_id: str, name: str) -> bytes | None: ...
    async def next_deadline(self) -> float | None: ...
    async def fire_due(self) -> list[Timer]: ...

    # reading
    async def init(self, init_id: str) -> InitSegment: ...
    async def segment_data(self, key: SegmentKey) -> bytes: ...
    async def segment_tables(self, key: SegmentKey) -> PreparedSegment: ...
    async def segments_tables(self, keys: Sequence[SegmentKey]) -> list[PreparedSegment]:
        """`segment_tables` of each, in order, in one go: an hour's MP4 reads 1,800 (NotFound
        if any is gone)."""
        ...

    async def stats(self) -> StoreStats: ...
    async def close(self) -> None: ...
