"""The embedded store: streams, DVR rings, clips, timers and memory accounting in this process.

The default backend, needing nothing else. It holds references to immutable segment bytes
(never copies) and hands out value types (`packager.store.model`): a clip manifest is a frozen
value replaced as the clip grows, so a reader never sees a half-made change. Every mutation
goes through here so the byte counters stay exact: a segment counts once against the budget
while the DVR or any clip holds it.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from packager.clock import Clock
from packager.errors import (
    BudgetExceeded,
    ClipNotFound,
    LimitReached,
    NotFound,
    StreamExists,
    StreamNotFound,
)
from packager.media.model import InitSegment
from packager.media.prepared import PreparedSegment
from packager.store.base import (
    END_EPSILON,
    OVERLAP_EPSILON,
    Limits,
    PlaylistEntry,
    RenditionState,
    SegmentGone,
    Timer,
    TimerKind,
    init_cost,
)
from packager.store.model import (
    Clip,
    ClipRendition,
    ClipState,
    RenditionInfo,
    SegmentKey,
    SegmentRef,
    StoreStats,
    StreamInfo,
    Timing,
    check_transition,
)


@dataclass(eq=False, slots=True)
class _Segment:
    ref: SegmentRef
    data: bytes
    tables: PreparedSegment  # its share of every MP4 sample table, prepared at ingest
    pins: int = 0  # how many clips hold it
    in_dvr: bool = True


@dataclass(eq=False)
class _Rendition:
    name: str
    init_id: str | None = None
    init_changed: bool = False
    init_resent: bool = False
    init_source: str | None = None  # the pushed init, when init_id is a revision of it
    init_note: str | None = None
    segments: deque[_Segment] = field(default_factory=deque)
    next_seq: int = 0
    last_end_dts: int | None = None
    last_digest: str | None = None
    last_arrival: float | None = None
    shift: tuple[tuple[int, int], ...] = ()
    playlist: dict[str, PlaylistEntry] = field(default_factory=dict)
    demux: str | None = None
    # Running totals of the window, kept as segments come and go: a cut or a stream's JSON
    # reads them instead of walking every segment of the DVR.
    bytes_in_window: int = 0
    micros_in_window: int = 0
    whole_seconds: Counter[int] = field(default_factory=Counter)  # ceil(duration): how many

    def push(self, seg: _Segment) -> None:
        self.segments.append(seg)
        self.bytes_in_window += seg.ref.size
        self.micros_in_window += round(seg.ref.duration * 1e6)
        self.whole_seconds[_whole(seg.ref.duration)] += 1

    def pop(self) -> _Segment:
        seg = self.segments.popleft()
        self.bytes_in_window -= seg.ref.size
        self.micros_in_window -= round(seg.ref.duration * 1e6)
        whole = _whole(seg.ref.duration)
        self.whole_seconds[whole] -= 1
        if not self.whole_seconds[whole]:
            del self.whole_seconds[whole]
        return seg

    def bitrate(self) -> float:
        """Bits per second over the window."""
        micros = self.micros_in_window
        return self.bytes_in_window * 8e6 / micros if micros > 0 else 0.0

    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION of the window: its longest segment, in whole seconds."""
        return max(1, max(self.whole_seconds, default=1))

    @property
    def last(self) -> _Segment | None:
        return self.segments[-1] if self.segments else None


def _whole(duration: float) -> int:
    return math.ceil(duration - 1e-3)


@dataclass(eq=False)
class _Stream:
    info: StreamInfo
    renditions: dict[str, _Rendition] = field(default_factory=dict)
    growing: list[str] = field(default_factory=list)  # clip ids still being fed


class MemoryStore:
    """`Store` in this process's heap (see packager.store.base for the contract)."""

    def __init__(self, clock: Clock, memory_budget: int, limits: Limits | None = None) -> None:
        self.clock = clock
        self.budget = memory_budget
        self.limits = limits or Limits()
        self.unavailable: tuple[type[BaseException], ...] = ()  # in this process: never
        self._streams: dict[str, _Stream] = {}
        self._clips: dict[str, Clip] = {}
        self._clip_media: dict[str, dict[str, bytes]] = {}  # by clip id, then name
        self._segments: dict[SegmentKey, _Segment] = {}
        self._inits: dict[str, InitSegment] = {}
        self._init_users: dict[str, int] = {}
        self._timers: list[tuple[float, int, TimerKind, str]] = []
        self._timer_seq = itertools.count()
        self._save_holds: dict[str, float] = {}
        self._dvr_bytes = 0
        self._init_bytes = 0  # init segments kept for renditions and segments
        self._uploading = 0  # request bodies being received (reserve_upload)
        self._clip_only_bytes = 0  # held by clips after the DVR let go of them
        self._pinned_bytes = 0  # held by at least one clip, in the DVR or not
        self._dvr_segments = 0
        self._evicted = 0
        self._expired = 0

    # ---- streams -------------------------------------------------------------------------

    async def create_stream(self, info: StreamInfo) -> StreamInfo:
        if info.id in self._streams:
            raise StreamExists(f"stream {info.id!r} already exists")
        if len(self._streams) >= self.limits.max_streams:
            raise LimitReached(f"at most {self.limits.max_streams} streams")
        self._streams[info.id] = _Stream(info)
        return info

    async def stream(self, stream_id: str) -> StreamInfo:
        return self._stream(stream_id).info

    def _stream(self, stream_id: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream

    async def streams(self) -> list[StreamInfo]:
        return [s.info for s in self._streams.values()]

    async def delete_stream(self, stream_id: str) -> None:
        """The stream and its DVR go; segments that clips hold stay until those clips expire."""
        stream = self._stream(stream_id)
        for rendition in stream.renditions.values():
            while rendition.segments:
                self._evict(rendition)
            self._drop_init_user(rendition.init_id)
        del self._streams[stream_id]

    async def ladder(self, stream_id: str) -> list[RenditionInfo]:
        """Renditions that have media, lowest first (by height, then bitrate), as Gcore lists them."""
        stream = self._stream(stream_id)
        out = []
        for r in stream.renditions.values():
            if r.init_id is None or not r.segments:
                continue
            init = self._inits[r.init_id]
            video = init.video
            recent = list(itertools.islice(reversed(r.segments), 5))
            out.append(
                RenditionInfo(
                    name=r.name,
                    init_id=r.init_id,
                    width=video.width if video else 0,
                    height=video.height if video else 0,
                    codecs=init.codecs,
                    bitrate=r.bitrate(),
                    segments=len(r.segments),
                    start=r.segments[0].ref.start,
                    end=r.segments[-1].ref.end,
                    target_duration=r.target_duration(),
                    peak_bitrate=math.ceil(max(s.ref.bitrate for s in recent)),
                    frame_rate=next(
                        (s.ref.frames / s.ref.duration for s in recent if s.ref.frames), None
                    ),
                    note=r.init_note,
                )
            )
        return sorted(out, key=lambda r: (r.height, r.bitrate, r.name))

    async def dvr_segments(
        self, stream_id: str, rendition: str, start: float | None = None, end: float | None = None
    ) -> list[SegmentRef]:
        """The DVR's segments of a rendition, oldest first; with a range, those whose span meets
        [start, end) by more than a program-date-time's millisecond of rounding."""
        r = self._stream(stream_id).renditions.get(rendition)
        if r is None:
            return []
        segs = r.segments
        if start is None or end is None:
            return [s.ref for s in segs]
        lo, hi = start + OVERLAP_EPSILON, end - OVERLAP_EPSILON
        i = bisect.bisect_right(segs, lo, key=lambda s: s.ref.end)
        out: list[SegmentRef] = []
        for seg in itertools.islice(segs, i, None):  # a deque: indexing its middle walks it
            ref = seg.ref
            if ref.start >= hi:
                break
            out.append(ref)
        return out

    # ---- ingest side ---------------------------------------------------------------------

    async def rendition(self, stream_id: str, name: str) -> RenditionState | None:
        stream = self._streams.get(stream_id)
        r = stream.renditions.get(name) if stream is not None else None
        if r is None:
            return None
        last = r.last
        return RenditionState(
            name=r.name,
            init_id=r.init_id,
            init_changed=r.init_changed,
            init_resent=r.init_resent,
            last=last.ref if last is not None else None,
            last_end_dts=r.last_end_dts,
            last_digest=r.last_digest,
            last_arrival=r.last_arrival,
            shift=r.shift,
            playlist=dict(r.playlist),
            recent=tuple(s.ref for s in itertools.islice(reversed(r.segments), 8))[::-1],
            demux=r.demux,
            next_seq=r.next_seq,
            init_source=r.init_source,
            init_note=r.init_note,
        )

    async def put_init(
        self, stream_id: str, rendition: str, init: InitSegment, init_id: str
    ) -> bool:
        """Make `init` the rendition's current one (created if new); True if it changed. The
        init a revision was made from (`revise_init`) is the current one re-sent."""
        stream = self._stream(stream_id)
        r = stream.renditions.get(rendition)
        if r is None:
            if len(stream.renditions) >= self.limits.max_renditions:
                raise LimitReached(
                    f"stream {stream_id!r} has {self.limits.max_renditions} renditions already"
                )
            r = stream.renditions[rendition] = _Rendition(rendition)
        r.init_resent = True
        if init_id in (r.init_id, r.init_source):
            return False
        had_one = r.init_id is not None
        self._take_init(r, init, init_id)
        r.init_changed = r.init_changed or had_one
        r.init_source = r.init_note = None
        return True

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
        r = self._stream(stream_id).renditions.get(rendition)
        if r is None or r.init_id != current_id:
            return False
        if init_id != current_id:
            self._take_init(r, init, init_id)
        r.init_source, r.init_note = source_id, note
        r.init_changed = r.init_changed or changed
        return True

    def _take_init(self, r: _Rendition, init: InitSegment, init_id: str) -> None:
        """Make `init` the rendition's, counted once however many renditions share it."""
        if init_id not in self._inits:
            # Inits count like segments: 300 renditions of a 1 MiB init are 300 MiB.
            self._make_room(init_cost(init))
            self._inits[init_id] = init
            self._init_bytes += init_cost(init)
        self._init_users[init_id] = self._init_users.get(init_id, 0) + 1
        self._drop_init_user(r.init_id)
        r.init_id = init_id

    def _drop_init_user(self, init_id: str | None) -> None:
        """Inits are shared by content; one no rendition or segment uses any more goes."""
        if init_id is None:
            return
        users = self._init_users.get(init_id, 0) - 1
        if users <= 0:
            self._init_users.pop(init_id, None)
            gone = self._inits.pop(init_id, None)
            if gone is not None:
                self._init_bytes -= init_cost(gone)
        else:
            self._init_users[init_id] = users

    async def set_playlist(
        self, stream_id: str, rendition: str, entries: dict[str, PlaylistEntry]
    ) -> None:
        r = self._stream(stream_id).renditions.get(rendition)
        if r is None:
            r = await self._new_rendition(stream_id, rendition)
        r.playlist = entries

    async def _new_rendition(self, stream_id: str, name: str) -> _Rendition:
        stream = self._stream(stream_id)
        if len(stream.renditions) >= self.limits.max_renditions:
            raise LimitReached(f"stream {stream_id!r} has {self.limits.max_renditions} renditions")
        r = stream.renditions[name] = _Rendition(name)
        return r

    async def set_demux_state(self, stream_id: str, rendition: str, state: str) -> None:
        r = self._stream(stream_id).renditions.get(rendition)
        if r is not None:
            r.demux = state

    async def retime(self, key: SegmentKey, start: float) -> None:
        """A late program-date-time gives a DVR segment its encoder's clock. Clips keep the
        refs they already took (their served lines never change)."""
        seg = self._segments.get(key)
        if seg is not None:
            seg.ref = dataclasses.replace(seg.ref, start=start, timing=Timing.PDT)

    async def next_seq(self, stream_id: str, rendition: str) -> int:
        r = self._stream(stream_id).renditions.get(rendition)
        return r.next_seq if r is not None else 0

    async def add_segment(
        self,
        ref: SegmentRef,
        data: bytes,
        tables: PreparedSegment,
        end_dts: int,
        digest: str,
        shift: tuple[tuple[int, int], ...] = (),
    ) -> list[Clip]:
        """Put a segment into the DVR: roll the window, keep the budget, feed growing clips.
        Returns the clips this segment completed."""
        stream = self._stream(ref.key.stream_id)
        rendition = stream.renditions[ref.key.rendition]
        self._sweep(stream)
        self._make_room(ref.cost)
        seg = _Segment(ref, data, tables)
        rendition.push(seg)
        rendition.next_seq = ref.key.seq + 1
        rendition.init_changed = False
        rendition.init_resent = False
        rendition.last_end_dts = end_dts
        rendition.last_digest = digest
        rendition.last_arrival = self.clock()
        rendition.shift = shift
        self._segments[ref.key] = seg
        self._init_users[ref.init_id] = self._init_users.get(ref.init_id, 0) + 1
        self._dvr_bytes += ref.cost
        self._dvr_segments += 1
        completed = []
        for clip_id in list(stream.growing):
            clip = self._feed(self._clips[clip_id], seg)
            if clip.state is ClipState.COMPLETE:
                completed.append(clip)
        return completed

    async def sweep(self) -> None:
        """Segments that ended more than dvr_duration ago leave every DVR."""
        for stream in self._streams.values():
            self._sweep(stream)

    def _sweep(self, stream: _Stream) -> None:
        horizon = self.clock() - stream.info.dvr_duration
        for rendition in stream.renditions.values():
            while rendition.segments and rendition.segments[0].ref.end < horizon:
                self._evict(rendition)

    def _evict(self, rendition: _Rendition) -> None:
        seg = rendition.pop()
        seg.in_dvr = False
        self._dvr_bytes -= seg.ref.cost
        self._dvr_segments -= 1
        self._evicted += 1
        if seg.pins:
            self._clip_only_bytes += seg.ref.cost
        else:
            self._forget(seg)

    def _forget(self, seg: _Segment) -> None:
        del self._segments[seg.ref.key]
        self._drop_init_user(seg.ref.init_id)

    def _make_room(self, size: int) -> None:
        """Evict the oldest DVR segments until `size` more bytes fit; refuse if they cannot."""
        need = self.held_bytes + size - self.budget
        if need <= 0:
            return
        unpinned_in_dvr = self._dvr_bytes - (self._pinned_bytes - self._clip_only_bytes)
        if unpinned_in_dvr < need:
            raise BudgetExceeded(
                f"segment of {size} bytes does not fit the memory budget of {self.budget} bytes: "
                f"{self._pinned_bytes} bytes are held by clips"
            )
        rings = [r for s in self._streams.values() for r in s.renditions.values()]
        while need > 0:
            oldest = min((r for r in rings if r.segments), key=lambda r: r.segments[0].ref.start)
            seg = oldest.segments[0]
            self._evict(oldest)
            if not seg.pins:
                need -= seg.ref.cost

    @property
    def held_bytes(self) -> int:
        return self._dvr_bytes + self._clip_only_bytes + self._init_bytes + self._uploading

    def reserve_upload(self, size: int) -> None:
        """Count `size` more bytes of a request body being received against the budget, making
        room in the DVR as a segment would; BudgetExceeded if clips hold too much to make it."""
        self._make_room(size)
        self._uploading += size

    def release_upload(self, size: int) -> None:
        self._uploading -= size

    # ---- clips ---------------------------------------------------------------------------

    async def add_clip(self, clip: Clip) -> Clip:
        """Keep a new clip: check the count limits and the budget, pin its segments, schedule
        its expiry (and, growing, its completion deadline)."""
        if len(self._clips) >= self.limits.max_clips:
            raise LimitReached(f"at most {self.limits.max_clips} clips at once")
        per_stream = sum(1 for c in self._clips.values() if c.stream_id == clip.stream_id)
        if per_stream >= self.limits.max_clips_per_stream:
            raise LimitReached(f"at most {self.limits.max_clips_per_stream} clips per stream")
        segments = [seg for cr in clip.renditions for seg in self._held(clip.stream_id, cr)]
        self._check_budget(clip, segments)
        for seg in segments:
            self._pin(seg)
        self._clips[clip.id] = clip
        self._schedule(clip.expiration, TimerKind.EXPIRE, clip.id)
        if clip.state is ClipState.GROWING:
            self._stream(clip.stream_id).growing.append(clip.id)
            self._schedule(
                clip.requested_end + self.limits.completion_grace, TimerKind.DEADLINE, clip.id
            )
        return clip

    def _held(self, stream_id: str, cr: ClipRendition) -> list[_Segment]:
        """The stored segments of a new clip's rendition. It was cut from the DVR just now, so
        they are a run of the rendition's window: found by one bisect on seq rather than a
        lookup each (an hour's clip has 5,400); else, one by one (SegmentGone if one is)."""
        refs = cr.segments
        stream = self._streams.get(stream_id)
        r = stream.renditions.get(cr.source) if stream is not None and refs else None
        if r is not None:
            window = r.segments
            i = bisect.bisect_left(window, refs[0].key.seq, key=lambda seg: seg.ref.key.seq)
            run = list(itertools.islice(window, i, i + len(refs)))
            if len(run) == len(refs) and all(
                seg.ref.key is ref.key or seg.ref.key == ref.key
                for seg, ref in zip(run, refs, strict=True)
            ):
                return run
        found = [self._segments.get(ref.key) for ref in refs]
        if any(seg is None for seg in found):
            raise SegmentGone("a segment of the cut left the DVR meanwhile")
        return [seg for seg in found if seg is not None]

    def _check_budget(self, clip: Clip, segments: list[_Segment]) -> None:
        """Refuse a clip whose pinned bytes (now and still to come) would pass the budget."""
        new = sum(s.ref.cost for s in segments if not s.pins)  # renditions share none
        future = self._future_bytes(clip)
        reserved = sum(
            self._future_bytes(self._clips[cid])
            for stream in self._streams.values()
            for cid in stream.growing
        )
        if self._pinned_bytes + reserved + new + future > self.budget:
            raise BudgetExceeded(
                f"the clip would hold {new + future} more bytes; clips already hold "
                f"{self._pinned_bytes + reserved} of the {self.budget}-byte memory budget"
            )

    def _future_bytes(self, clip: Clip) -> int:
        if clip.state is not ClipState.GROWING:
            return 0
        stream = self._streams.get(clip.stream_id)
        total = 0
        for cr in clip.renditions:
            r = stream.renditions.get(cr.source) if stream is not None else None
            last = r.last if r is not None else None
            if r is None or last is None or last.ref.end >= clip.requested_end:
                continue
            total += int(r.bitrate() / 8 * (clip.requested_end - last.ref.end))
        return total

    def _pin(self, seg: _Segment) -> None:
        if seg.pins == 0:
            self._pinned_bytes += seg.ref.cost
        seg.pins += 1

    def _unpin(self, seg: _Segment) -> None:
        seg.pins -= 1
        if seg.pins == 0:
            self._pinned_bytes -= seg.ref.cost
            if not seg.in_dvr:
                self._clip_only_bytes -= seg.ref.cost
                self._forget(seg)

    def _feed(self, clip: Clip, seg: _Segment) -> Clip:
        """A growing clip takes every new segment of its ladder that meets its range."""
        ref = seg.ref
        renditions = list(clip.renditions)
        for k, cr in enumerate(renditions):
            if cr.source != ref.key.rendition:
                continue
            in_range = ref.start < clip.requested_end and ref.end > clip.requested_start
            newer = not cr.segments or ref.key.seq > cr.segments[-1].key.seq
            if in_range and newer:
                self._pin(seg)
                renditions[k] = dataclasses.replace(cr, segments=(*cr.segments, ref))
        clip = dataclasses.replace(clip, renditions=tuple(renditions))
        stream = self._streams[clip.stream_id]
        if not any(
            self._source_short_of(stream, cr.source, clip.requested_end) for cr in renditions
        ):
            clip = self._complete(clip, None)
        self._clips[clip.id] = clip
        return clip

    @staticmethod
    def _source_short_of(stream: _Stream, rendition: str, end: float) -> bool:
        r = stream.renditions.get(rendition)
        last = r.last if r is not None else None
        return last is None or last.ref.end < end - END_EPSILON

    def _complete(self, clip: Clip, note: str | None) -> Clip:
        check_transition(clip.state, ClipState.COMPLETE)
        stream = self._streams.get(clip.stream_id)
        if stream is not None and clip.id in stream.growing:
            stream.growing.remove(clip.id)
        done = dataclasses.replace(
            clip, state=ClipState.COMPLETE, completed_at=self.clock(), note=note
        )
        self._clips[clip.id] = done
        return done

    async def clip(self, stream_id: str, clip_id: str) -> Clip:
        """A live clip of that stream; an expired one is gone even before its timer fires."""
        clip = self._clips.get(clip_id)
        if clip is None or clip.stream_id != stream_id or clip.expiration <= self.clock():
            raise ClipNotFound(f"no clip {clip_id!r} on stream {stream_id!r}")
        return clip

    async def clips(self, stream_id: str) -> list[Clip]:
        now = self.clock()
        return sorted(
            (c for c in self._clips.values() if c.stream_id == stream_id and c.expiration > now),
            key=lambda c: c.created_at,
        )

    async def all_clips(self) -> list[Clip]:
        now = self.clock()
        return [c for c in self._clips.values() if c.expiration > now]

    async def update_clip(
        self,
        clip_id: str,
        state: ClipState,
        *,
        video_id: int | None = None,
        vod_error: str | None = None,
    ) -> Clip:
        """Move a clip along its life (the VOD steps); the transition table says what may."""
        clip = self._clips.get(clip_id)
        if clip is None:
            raise ClipNotFound(f"no clip {clip_id!r}")
        check_transition(clip.state, state)
        changes: dict[str, object] = {"state": state}
        if video_id is not None:
            changes["video_id"] = video_id
        if vod_error is not None:
            changes["vod_error"] = vod_error
        clip = dataclasses.replace(clip, **changes)  # type: ignore[arg-type]
        self._clips[clip_id] = clip
        return clip

    async def put_clip_media(self, stream_id: str, clip_id: str, name: str, data: bytes) -> None:
        """Keep bytes a clip made (its re-encoded segments) until it expires; they are held by
        that clip alone, so they count as its pinned bytes."""
        clip = self._clips.get(clip_id)
        if clip is None or clip.stream_id != stream_id or clip.expiration <= self.clock():
            return
        media = self._clip_media.setdefault(clip_id, {})
        old = media.get(name)
        size = len(data) - (len(old) if old is not None else 0)
        if size > 0:
            self._make_room(size)
        media[name] = data
        self._clip_only_bytes += size
        self._pinned_bytes += size

    async def clip_media(self, stream_id: str, clip_id: str, name: str) -> bytes | None:
        clip = self._clips.get(clip_id)
        if clip is None or clip.stream_id != stream_id:
            return None
        return self._clip_media.get(clip_id, {}).get(name)

    # ---- timers --------------------------------------------------------------------------

    def _schedule(self, when: float, kind: TimerKind, clip_id: str) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, clip_id))

    async def hold_save(self, clip_id: str, until: float | None) -> None:
        if until is None:
            self._save_holds.pop(clip_id, None)
            return
        self._save_holds[clip_id] = until
        self._schedule(until, TimerKind.SAVE, clip_id)

    async def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    async def fire_due(self) -> list[Timer]:
        """Fire every timer that is due: completion deadlines complete growing clips (with
        what they have), expiries free clips. Returns what happened, for the services' hooks."""
        now = self.clock()
        fired: list[Timer] = []
        while self._timers and self._timers[0][0] <= now:
            when, _, kind, clip_id = heapq.heappop(self._timers)
            clip = self._clips.get(clip_id)
            if clip is None:
                continue
            if kind is TimerKind.EXPIRE:
                self._save_holds.pop(clip_id, None)
                fired.append(Timer(kind, self._expire(clip)))
            elif kind is TimerKind.SAVE:
                # Only the latest hold counts (each renewal scheduled a newer one).
                if self._save_holds.get(clip_id) == when and clip.state is ClipState.SAVING:
                    del self._save_holds[clip_id]
                    fired.append(Timer(kind, clip))
            elif clip.state is ClipState.GROWING:
                done = self._complete(clip, "the ingest stopped before the clip's end")
                fired.append(Timer(kind, done))
        return fired

    def _expire(self, clip: Clip) -> Clip:
        del self._clips[clip.id]
        self._expired += 1
        stream = self._streams.get(clip.stream_id)
        if stream is not None and clip.id in stream.growing:
            stream.growing.remove(clip.id)
        for cr in clip.renditions:
            for ref in cr.segments:
                self._unpin(self._segments[ref.key])
        made = sum(map(len, self._clip_media.pop(clip.id, {}).values()))
        self._clip_only_bytes -= made
        self._pinned_bytes -= made
        return dataclasses.replace(clip, state=ClipState.EXPIRED)

    # ---- reading -------------------------------------------------------------------------

    async def init(self, init_id: str) -> InitSegment:
        init = self._inits.get(init_id)
        if init is None:
            raise NotFound(f"no init segment {init_id}")
        return init

    async def segment_data(self, key: SegmentKey) -> bytes:
        return self._segment(key).data

    async def segment_tables(self, key: SegmentKey) -> PreparedSegment:
        return self._segment(key).tables

    async def segments_tables(self, keys: Sequence[SegmentKey]) -> list[PreparedSegment]:
        return [self._segment(key).tables for key in keys]

    def _segment(self, key: SegmentKey) -> _Segment:
        seg = self._segments.get(key)
        if seg is None:
            raise NotFound(f"segment {key.rendition}/{key.seq} of {key.stream_id!r} is gone")
        return seg

    async def stats(self) -> StoreStats:
        return StoreStats(
            dvr_bytes=self._dvr_bytes,
            clip_only_bytes=self._clip_only_bytes,
            pinned_bytes=self._pinned_bytes,
            budget=self.budget,
            streams=len(self._streams),
            clips=len(self._clips),
            growing_clips=sum(len(s.growing) for s in self._streams.values()),
            dvr_segments=self._dvr_segments,
            evicted_segments=self._evicted,
            expired_clips=self._expired,
            init_bytes=self._init_bytes,
            uploading_bytes=self._uploading,
        )

    async def close(self) -> None:
        pass
