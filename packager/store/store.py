"""The in-memory store: streams with their DVR rings, clips, timers and memory accounting.

Knows nothing of HTTP. Every mutation goes through here so the byte counters stay exact:
a segment counts once against the budget while the DVR or any clip holds it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from packager.clock import Clock
from packager.errors import (
    BudgetExceeded,
    ClipNotFound,
    InvalidField,
    LimitReached,
    NothingInDvr,
    RangeNotInDvr,
    StreamExists,
    StreamNotFound,
)
from packager.store.clips import Clip, ClipRendition
from packager.store.dvr import Rendition, Stream
from packager.store.segment import Segment

STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MIN_EXPIRATION = 60.0  # contract: expiration within [now + 60 s, now + 4 h]
MAX_EXPIRATION = 4 * 3600.0
DEFAULT_LIFETIME = 3600.0  # contract: omitted expiration = clip end + 3600 s
FUTURE_TOLERANCE = 2.0  # seconds of clock skew allowed on a `start` "in the future"
END_EPSILON = 1e-3


def _target_duration(rendition: Rendition) -> int:
    """EXT-X-TARGETDURATION for a clip of this rendition: the longest segment the DVR holds,
    rounded up (a growing clip cannot know its later segments' lengths; an encoder keeps them
    within its own target)."""
    return max(1, max((math.ceil(s.duration - 1e-3) for s in rendition.segments), default=2))


class TimerKind(Enum):
    EXPIRE = 1
    DEADLINE = 2  # a growing clip's end + grace: complete it with what it has


@dataclass(frozen=True, slots=True)
class Limits:
    max_streams: int = 1000
    max_clips_per_stream: int = 1000
    max_clips: int = 10000
    max_dvr_duration: float = 4 * 3600.0
    completion_grace: float = 10.0  # how long past its end a growing clip waits for the ingest


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

    @property
    def held_bytes(self) -> int:
        return self.dvr_bytes + self.clip_only_bytes


class Store:
    def __init__(
        self,
        clock: Clock,
        memory_budget: int,
        default_dvr_duration: float,
        limits: Limits = Limits(),
    ) -> None:
        self.clock = clock
        self.budget = memory_budget
        self.default_dvr_duration = default_dvr_duration
        self.limits = limits
        self.streams: dict[str, Stream] = {}
        self.clips: dict[str, Clip] = {}
        self._growing: dict[str, list[Clip]] = {}
        self._timers: list[tuple[float, int, TimerKind, str]] = []
        self._timer_seq = itertools.count()
        self.dvr_bytes = 0
        self.clip_only_bytes = 0  # held by clips after the DVR let go of them
        self.pinned_bytes = 0  # held by at least one clip, in the DVR or not
        self.dvr_segments = 0
        self.evicted_segments = 0
        self.expired_clips = 0
        self.on_complete: list[Callable[[Clip], None]] = []
        self.on_expire: list[Callable[[Clip], None]] = []

    # ---- streams -------------------------------------------------------------------------

    def create_stream(self, stream_id: str | None, name: str, dvr_duration: float | None) -> Stream:
        if stream_id is None:
            stream_id = secrets.token_hex(8)
        elif not STREAM_ID.fullmatch(stream_id):
            raise InvalidField("id", "1-64 characters of A-Z a-z 0-9 _ -, starting alphanumeric")
        if stream_id in self.streams:
            raise StreamExists(f"stream {stream_id!r} already exists")
        if dvr_duration is None:
            dvr_duration = self.default_dvr_duration
        if not 0 < dvr_duration <= self.limits.max_dvr_duration:
            raise InvalidField(
                "dvr_duration", f"must be > 0 and <= {self.limits.max_dvr_duration:g} seconds"
            )
        if len(self.streams) >= self.limits.max_streams:
            raise LimitReached(f"at most {self.limits.max_streams} streams")
        stream = Stream(stream_id, name or stream_id, dvr_duration, self.clock())
        self.streams[stream_id] = stream
        return stream

    def stream(self, stream_id: str) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream

    def ensure_stream(self, stream_id: str) -> Stream:
        """A stream first seen on ingest is created with the default dvr_duration."""
        return self.streams.get(stream_id) or self.create_stream(stream_id, stream_id, None)

    # ---- ingest side ---------------------------------------------------------------------

    def add_segment(self, stream: Stream, rendition: Rendition, segment: Segment) -> None:
        """Put a segment into the DVR: roll the window, keep the budget, feed growing clips."""
        self.sweep_dvr(stream)
        self._make_room(segment.size)
        rendition.segments.append(segment)
        rendition.next_seq = segment.seq + 1
        self.dvr_bytes += segment.size
        self.dvr_segments += 1
        for clip in list(self._growing.get(stream.id, ())):
            self._feed(clip, rendition, segment)

    def sweep_dvr(self, stream: Stream) -> None:
        """Segments that ended more than dvr_duration ago leave the DVR."""
        horizon = self.clock() - stream.dvr_duration
        for rendition in stream.renditions.values():
            while rendition.segments and rendition.segments[0].end < horizon:
                self._evict(rendition)

    def sweep_all(self) -> None:
        for stream in self.streams.values():
            self.sweep_dvr(stream)

    def _evict(self, rendition: Rendition) -> None:
        seg = rendition.segments.popleft()
        seg.in_dvr = False
        self.dvr_bytes -= seg.size
        self.dvr_segments -= 1
        self.evicted_segments += 1
        if seg.pins:
            self.clip_only_bytes += seg.size

    def _make_room(self, size: int) -> None:
        """Evict the oldest DVR segments until `size` more bytes fit; refuse if they cannot."""
        need = self.held_bytes + size - self.budget
        if need <= 0:
            return
        unpinned_in_dvr = self.dvr_bytes - (self.pinned_bytes - self.clip_only_bytes)
        if unpinned_in_dvr < need:
            raise BudgetExceeded(
                f"segment of {size} bytes does not fit the memory budget of {self.budget} bytes: "
                f"{self.pinned_bytes} bytes are held by clips"
            )
        rings = [r for s in self.streams.values() for r in s.renditions.values()]
        while need > 0:
            oldest = min((r for r in rings if r.segments), key=lambda r: r.segments[0].start)
            seg = oldest.segments[0]
            self._evict(oldest)
            if not seg.pins:
                need -= seg.size

    @property
    def held_bytes(self) -> int:
        return self.dvr_bytes + self.clip_only_bytes

    # ---- clips ---------------------------------------------------------------------------

    def create_clip(
        self,
        stream_id: str,
        duration: float,
        start: float | None = None,
        expiration: float | None = None,
        vod_required: bool = False,
        name: str | None = None,
        private: bool = False,
    ) -> Clip:
        now = self.clock()
        stream = self.stream(stream_id)
        self.sweep_dvr(stream)
        if not 0 < duration <= stream.dvr_duration:
            raise InvalidField(
                "duration",
                f"must be > 0 and <= the stream's dvr_duration ({stream.dvr_duration:g} s)",
            )
        if start is None:
            start = now
        elif start > now + FUTURE_TOLERANCE:
            raise InvalidField("start", "must not lie in the future")
        end = start + duration
        expiration = self._expiration(now, end, expiration)
        self._check_clip_limits(stream_id)
        ladder = stream.ladder()
        if not ladder:
            raise NothingInDvr(f"stream {stream_id!r} has no media in its DVR yet")
        cuts = [r.overlapping(start, end) for r in ladder]
        growing = any(self._source_short_of(r, end) for r in ladder)
        if not growing and not any(cuts):
            dvr_start = stream.dvr_start
            raise RangeNotInDvr(
                f"[{start:.3f}, {end:.3f}) is not in the DVR, which holds "
                f"[{dvr_start:.3f}, {stream.dvr_end:.3f})"
            )
        kept = [(r, cut) for r, cut in zip(ladder, cuts, strict=True) if cut or growing]
        self._check_budget(kept, end)
        renditions: list[ClipRendition] = []
        for number, (rendition, cut) in enumerate(kept, start=1):
            cr = ClipRendition(
                number=number,
                source=rendition,
                height=rendition.height,
                target_duration=_target_duration(rendition),
            )
            for seg in cut:
                self._pin(seg)
                cr.append(seg)
            renditions.append(cr)
        clip = Clip(
            id=secrets.token_hex(16),  # 128 random bits: links are unguessable
            stream_id=stream_id,
            created_at=now,
            requested_start=start,
            requested_end=end,
            expiration=expiration,
            vod_required=vod_required,
            renditions=renditions,
            name=name,
            private=private,
            event=growing,
        )
        self.clips[clip.id] = clip
        self._schedule(expiration, TimerKind.EXPIRE, clip.id)
        if growing:
            self._growing.setdefault(stream_id, []).append(clip)
            self._schedule(end + self.limits.completion_grace, TimerKind.DEADLINE, clip.id)
        else:
            self._complete(clip, None)
        return clip

    def _source_short_of(self, rendition: Rendition, end: float) -> bool:
        last = rendition.last
        return last is None or last.end < end - END_EPSILON

    def _expiration(self, now: float, end: float, expiration: float | None) -> float:
        latest = now + MAX_EXPIRATION
        if expiration is None:
            # Gcore's rule, a whole second: start + duration + 3600 (the end rounded up, on
            # milliseconds so float noise cannot add a second). Raised only to the minimum
            # life, so a clip cut from long ago lives a minute; capped at the maximum.
            default = math.ceil(round(end, 3)) + DEFAULT_LIFETIME
            return min(max(default, math.ceil(now + MIN_EXPIRATION)), math.floor(latest))
        if not now + MIN_EXPIRATION <= expiration <= latest:
            raise InvalidField("expiration", "must lie within [now + 60 s, now + 4 h]")
        if expiration <= end:
            raise InvalidField("expiration", "must lie after the clip's end (start + duration)")
        return expiration

    def _check_clip_limits(self, stream_id: str) -> None:
        if len(self.clips) >= self.limits.max_clips:
            raise LimitReached(f"at most {self.limits.max_clips} clips at once")
        per_stream = sum(1 for c in self.clips.values() if c.stream_id == stream_id)
        if per_stream >= self.limits.max_clips_per_stream:
            raise LimitReached(f"at most {self.limits.max_clips_per_stream} clips per stream")

    def _check_budget(self, kept: list[tuple[Rendition, list[Segment]]], end: float) -> None:
        """Refuse a clip whose pinned bytes (now and still to come) would pass the budget."""
        new = sum(s.size for _, cut in kept for s in cut if not s.pins)
        future = sum(self._future_bytes(r, end) for r, _ in kept)
        reserved = sum(
            self._future_bytes(cr.source, c.requested_end)
            for clips in self._growing.values()
            for c in clips
            for cr in c.renditions
        )
        wanted = self.pinned_bytes + reserved + new + future
        if wanted > self.budget:
            raise BudgetExceeded(
                f"the clip would hold {new + future} more bytes; clips already hold "
                f"{self.pinned_bytes + reserved} of the {self.budget}-byte memory budget"
            )

    def _future_bytes(self, rendition: Rendition, end: float) -> int:
        last = rendition.last
        if last is None or last.end >= end:
            return 0
        return int(rendition.bitrate() / 8 * (end - last.end))

    def _pin(self, seg: Segment) -> None:
        if seg.pins == 0:
            self.pinned_bytes += seg.size
        seg.pins += 1

    def _unpin(self, seg: Segment) -> None:
        seg.pins -= 1
        if seg.pins == 0:
            self.pinned_bytes -= seg.size
            if not seg.in_dvr:
                self.clip_only_bytes -= seg.size

    def _feed(self, clip: Clip, rendition: Rendition, seg: Segment) -> None:
        """A growing clip takes every new segment of its ladder that meets its range."""
        for cr in clip.renditions:
            if cr.source is not rendition:
                continue
            in_range = seg.start < clip.requested_end and seg.end > clip.requested_start
            newer = not cr.segments or seg.seq > cr.segments[-1].seq
            if in_range and newer:
                self._pin(seg)
                cr.append(seg)
        if not any(self._source_short_of(cr.source, clip.requested_end) for cr in clip.renditions):
            self._complete(clip, None)

    def _complete(self, clip: Clip, note: str | None) -> None:
        clip.complete = True
        clip.completed_at = self.clock()
        clip.completion_note = note
        growing = self._growing.get(clip.stream_id)
        if growing and clip in growing:
            growing.remove(clip)
        for hook in self.on_complete:
            hook(clip)

    def clip(self, stream_id: str, clip_id: str) -> Clip:
        """A live clip of that stream; an expired one is gone even before its timer fires."""
        clip = self.clips.get(clip_id)
        if clip is None or clip.stream_id != stream_id or clip.expiration <= self.clock():
            raise ClipNotFound(f"no clip {clip_id!r} on stream {stream_id!r}")
        return clip

    def list_clips(self, stream_id: str) -> list[Clip]:
        self.stream(stream_id)
        now = self.clock()
        return sorted(
            (c for c in self.clips.values() if c.stream_id == stream_id and c.expiration > now),
            key=lambda c: c.created_at,
        )

    # ---- timers --------------------------------------------------------------------------

    def _schedule(self, when: float, kind: TimerKind, clip_id: str) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, clip_id))

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def run_due(self) -> list[Clip]:
        """Fire every timer that is due; returns the clips that expired."""
        now = self.clock()
        expired: list[Clip] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, clip_id = heapq.heappop(self._timers)
            clip = self.clips.get(clip_id)
            if clip is None:
                continue
            if kind is TimerKind.EXPIRE:
                self._expire(clip)
                expired.append(clip)
            elif not clip.complete:
                self._complete(clip, "the ingest stopped before the clip's end")
        return expired

    def _expire(self, clip: Clip) -> None:
        del self.clips[clip.id]
        self.expired_clips += 1
        growing = self._growing.get(clip.stream_id)
        if growing and clip in growing:
            growing.remove(clip)
        for cr in clip.renditions:
            for seg in cr.segments:
                self._unpin(seg)
        for hook in self.on_expire:
            hook(clip)

    def stats(self) -> StoreStats:
        return StoreStats(
            dvr_bytes=self.dvr_bytes,
            clip_only_bytes=self.clip_only_bytes,
            pinned_bytes=self.pinned_bytes,
            budget=self.budget,
            streams=len(self.streams),
            clips=len(self.clips),
            growing_clips=sum(len(v) for v in self._growing.values()),
            dvr_segments=self.dvr_segments,
            evicted_segments=self.evicted_segments,
            expired_clips=self.expired_clips,
        )
