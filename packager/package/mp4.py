"""A clip rendition as one progressive MP4, computed rather than assembled (sans-IO).

Like nginx-vod-module: the sample tables of the clip's fragments become a `moov`, written
before the `mdat`; the `mdat` payload is the fragments' own sample bytes, sent from where they
lie. `Mp4Layout` is that file as pieces by reference, (segment key, offset, length) with their
place in the file, so any byte range is served without producing the bytes before it, and the
layout holds no view of a live object: the caller resolves a key to the segment's bytes,
wherever the store keeps them (in-process, Redis).

Layout of the `mdat`: per segment, one chunk per track per run of contiguous samples, in the
order the segment stores them (ffmpeg writes the video run, then the audio run). That keeps
audio and video interleaved every segment, `stsc`/`stco` a few entries per segment, and
neighbouring chunks that were neighbours in the source become one piece.

Timeline: each track's decode times start at 0 and follow the source's own (tfdt): a sample
decodes here, relative to the track's first, exactly when it does in the source, to the tick.
Encoders leave gaps and overlaps between segments (a dropped or repeated AAC frame, a stall);
chaining sample durations instead carried each one forward, 21 ms per overlap, 0.2 s of audio
drift after two minutes. A gap or a small overlap is absorbed where it occurs, in the duration
of the sample before it; an audio frame that overlaps its predecessor by more than half is
dropped. Where the source timeline cannot be followed (a new init, time going back, a jump of
more than MAX_FOLLOWED_GAP: an encoder restart), the main track goes on right where it ended,
so the file lasts what the playlists say, and the other tracks keep the new segment's own offset
to it (audio that would overlap drops its overlapping frames).

The presentation is the main (video) track's: from its first shown frame to its end, so the
file lasts exactly the clip's duration. Each track's place in it comes from the source's own
presentation time (tfdt, composition offsets and the init's edit list), so audio and video stay
in sync exactly as the encoder made them: a track that starts later gets an empty edit, a track
that starts earlier (audio cut before the keyframe, AAC priming) is trimmed by its edit's
media_time; the video's media_time is its composition delay (B-frames).

A frame-accurate build (`Cut`) only moves that window: it starts at the first frame asked for
and stops where the last one asked for stops showing (packager.package.frames says which, on
the wall clock); the boundary segments lose what is neither shown nor needed to decode what is.

Cost: O(segments), not O(samples). Each segment's share of the tables is prepared once, at
ingest (packager.package.tables); a build joins those shares and fixes the boundaries. The
timeline is computed with Fractions only where it must be (a track's first segment, a new init
or clock, a restart); from there on a track is in an integer *regime*: while the init and the
source timeline's shift stay the same, a segment's tfdt maps to the track's ticks by adding one
constant, and `follows` is a comparison against integer thresholds computed once, so a boundary
costs a few integer operations. An hour of 1080p builds in about 7 ms against 128 ms per
sample (10 s: 0.26 against 0.6 ms); what remains is a Python step per segment and per table,
and copying the 1.9 MB moov once (bench/layout_build.py). tests/package/reference_mp4.py, the
per-sample builder this replaced, must produce the same bytes.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import accumulate, repeat
from typing import Protocol

from packager.media import boxes, boxwriter
from packager.media.model import InitSegment, SegmentMedia, Track
from packager.media.prepared import PreparedSegment, PreparedTrack, little_endian
from packager.package.frames import edit_offset, presentation, track_times
from packager.package.tables import (
    JoinedTables,
    TableJoin,
    place_chunks,
    prepare_segment,
    reencode,
    restrict,
    trim,
)

FTYP = boxwriter.ftyp(b"isom", 0x200, (b"isom", b"iso2", b"avc1", b"mp41"))
HANDLER_NAMES = {"vide": "VideoHandler", "soun": "SoundHandler"}
FULL_VOLUME = 0x100
# A forward jump of the source's timestamps up to this is followed (a gap in the file); past it
# the jump is taken for a restart, and the tracks go on from where they ended.
MAX_FOLLOWED_GAP = Fraction(10)
# Audio overlapping its predecessor by up to this is followed by dropping the overlapping frames.
MAX_DROPPED_OVERLAP = Fraction(1, 2)
_ROW = struct.Struct("<4q")
_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class LayoutSegment:
    """What a build needs of one segment, by value: no bytes, only how to find them."""

    key: Hashable  # opaque to the layout; the caller's reader resolves it to the segment's bytes
    init: InitSegment
    prepared: PreparedSegment


@dataclass(frozen=True, slots=True)
class Mp4Layout:
    """The whole MP4 as pieces by reference: piece i is `piece_keys[i]`'s bytes from
    `offsets[i]`, at `starts[i]` in the file, up to where the next piece starts. A key of None
    is the header; a key that is itself bytes or a memoryview stands for those bytes (a saved
    file mapped in, or a layout of in-process segments built through the compatibility path)."""

    header: bytes  # ftyp + moov + mdat header
    piece_keys: tuple[Hashable, ...]
    starts: array[int]  # offset in the file of each piece
    size: int
    offsets: array[int] | None = None  # offset of each piece in its source; None: all 0

    def pieces_in_range(
        self, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[Hashable, int, int]]:
        """(key, offset in the source, length) covering [start, end), found by bisection:
        nothing before `start` is touched."""
        start = max(0, start)
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return
        starts, count = self.starts, len(self.starts)
        i = bisect_right(starts, start) - 1
        while i < count and starts[i] < end:
            at = starts[i]
            stop = starts[i + 1] if i + 1 < count else self.size
            lo, hi = max(start, at), min(end, stop)
            source = self.offsets[i] if self.offsets is not None else 0
            yield self.piece_keys[i], source + lo - at, hi - lo
            i += 1

    def keys(self) -> set[Hashable]:
        """The segments the file reads from (not the header)."""
        return {key for key in self.piece_keys if key is not None}

    def iter_range(
        self,
        start: int = 0,
        end: int | None = None,
        read: Callable[[Hashable], bytes | memoryview] | None = None,
    ) -> Iterator[memoryview]:
        """The bytes [start, end) as views; `read` turns a key into its segment's bytes."""
        for key, offset, length in self.pieces_in_range(start, end):
            if key is None:
                data: bytes | memoryview = self.header
            elif read is not None:
                data = read(key)
            elif isinstance(key, bytes | memoryview):
                data = key
            else:
                raise TypeError(f"piece key {key!r} is a reference: pass `read`")
            yield memoryview(data)[offset : offset + length]

    @property
    def pieces(self) -> tuple[memoryview, ...]:
        """Every piece as a view, for layouts whose keys are their own bytes (compatibility)."""
        return tuple(self.iter_range())


@dataclass(frozen=True, slots=True)
class TrackTable:
    """One output track in numbers: everything its `trak` needs, none of the sample bytes."""

    track: Track  # the first init's description: handler, timescale, size, language
    sample_entries: bytes  # the stsd's entries, one per distinct description in the clip
    entry_count: int
    tables: JoinedTables
    empty: int  # presentation time before the media edit, movie timescale
    media_time: int  # composition time where the media edit starts, track timescale
    edit_duration: int  # length of the media edit, movie timescale


def progressive_header(
    tables: Sequence[TrackTable], movie_timescale: int, payload_size: int, created: int = 0
) -> bytes:
    """ftyp + moov + mdat header for a payload whose chunks lie at the tables' offsets.

    The moov's size depends only on stco vs co64, never on the offsets' values: size it with
    32-bit offsets, switch to co64 if the last chunk would start past 4 GiB, then fill. The
    tables are nested as parts and joined once (an hour's are megabytes).
    """
    mdat_header = boxwriter.box_header(b"mdat", payload_size)
    stbls = [_stbl_tables(t) for t in tables]
    duration = max((t.empty + t.edit_duration for t in tables), default=0)
    head = boxwriter.mvhd(movie_timescale, duration, len(tables) + 1, created)

    def moov(offsets: Sequence[bytes | boxwriter.Parts]) -> boxwriter.Parts:
        traks = [
            _trak(t, number, stbl, chunk_offsets, created)
            for number, (t, stbl, chunk_offsets) in enumerate(
                zip(tables, stbls, offsets, strict=True), start=1
            )
        ]
        return boxwriter.nest(b"moov", head, *traks)

    def blank(wide: bool) -> list[bytes | boxwriter.Parts]:
        sizes = (boxwriter.chunk_offsets_size(len(t.tables.chunk_offsets), wide) for t in tables)
        return [boxwriter.Parts([], size) for size in sizes]

    wide = False
    base = len(FTYP) + moov(blank(wide)).size + len(mdat_header)
    last = max((max(t.tables.chunk_offsets, default=0) for t in tables), default=0)
    if base + last > boxwriter.U32_MAX:
        wide = True
        base = len(FTYP) + moov(blank(wide)).size + len(mdat_header)
    filled = [boxwriter.chunk_offsets_at(t.tables.chunk_offsets, base, wide) for t in tables]
    whole = moov(filled)
    return boxwriter.Parts([FTYP, whole, mdat_header], base).join()  # base: their sizes


def _stbl_tables(t: TrackTable) -> list[bytes | boxwriter.Parts]:
    """Everything in stbl but the chunk offsets, as parts: the entries are the joined ones."""
    j = t.tables
    stts_count, stts = j.stts
    parts: list[bytes | boxwriter.Parts] = [
        boxwriter.stsd(t.sample_entries, t.entry_count),
        boxwriter.table_box(b"stts", 0, stts_count, boxwriter.Parts(list(stts), 8 * stts_count)),
    ]
    if j.ctts is not None:  # version 0: the join shifted every offset to zero or more
        count, entries = j.ctts
        parts.append(
            boxwriter.table_box(b"ctts", 0, count, boxwriter.Parts(list(entries), 8 * count))
        )
    if j.stss is not None:
        stss = boxwriter.Parts([j.stss], len(j.stss))
        parts.append(boxwriter.table_box(b"stss", 0, len(j.stss) // 4, stss))
    stsc = boxwriter.Parts([j.stsc], len(j.stsc))
    parts.append(boxwriter.table_box(b"stsc", 0, len(j.stsc) // 12, stsc))
    sizes = boxwriter.Parts(list(j.sizes), 4 * j.sample_count)
    parts.append(boxwriter.stsz_box(j.sample_size, j.sample_count, sizes))
    return parts


def _trak(
    t: TrackTable,
    track_id: int,
    stbl_tables: list[bytes | boxwriter.Parts],
    offsets: bytes | boxwriter.Parts,
    created: int,
) -> boxwriter.Parts:
    track = t.track
    handler = track.handler.encode("latin-1")
    stbl = boxwriter.nest(b"stbl", *stbl_tables, offsets)
    minf = boxwriter.nest(b"minf", boxwriter.media_header(handler), boxwriter.dinf(), stbl)
    mdia = boxwriter.nest(
        b"mdia",
        boxwriter.mdhd(track.timescale, t.tables.duration, track.language, created),
        boxwriter.hdlr(handler, HANDLER_NAMES.get(track.handler, "DataHandler")),
        minf,
    )
    edits = [(t.empty, -1)] if t.empty else []
    edits.append((t.edit_duration, t.media_time))
    head = boxwriter.tkhd(
        track_id,
        t.empty + t.edit_duration,
        width=track.width if track.is_video else 0,
        height=track.height if track.is_video else 0,
        volume=FULL_VOLUME if track.is_audio else 0,
        created=created,
    )
    return boxwriter.nest(b"trak", head, boxwriter.elst(edits), mdia)


# ---- the clip's timeline, segment by segment -----------------------------------------------


@dataclass(eq=False)
class _Track:
    """One output track while the clip's segments are walked in order: timeline and tables."""

    track: Track  # the first init's
    rank: int  # among the first init's tracks of its handler
    audio: bool = field(init=False)
    tables: TableJoin = field(default_factory=TableJoin)
    entries: dict[bytes, int] = field(default_factory=dict)  # stsd box -> first entry index
    entry_bytes: list[bytes] = field(default_factory=list)
    entry_count: int = 0
    # Source presentation time of the first shown sample, and its composition time here.
    first_shown: Fraction | None = None
    first_composition: int = 0
    # Clip time (seconds, in the source's presentation terms) where the first sample decodes;
    # the decode ticks so far are `tables.duration`.
    origin: Fraction | None = None
    # The integer regime, for samples of `regime_init` while the source's shift stays
    # `regime_shift`: there the boundary's delta is `base + tfdt - ticks`, and `follows` holds
    # while delta <= max_delta, and delta >= min_delta (audio) or delta + last >= min_reach.
    regime_init: InitSegment | None = None
    regime_shift: Fraction | None = None
    base: int = 0
    max_delta: int = 0
    min_delta: int = 0
    min_reach: int = 0
    # With delta 0 (|phi| < 1/2: max_delta >= 9 and min_delta <= 0 always hold), the shortest
    # boundary sample that needs nothing done: video follows if last >= min_reach, audio drops
    # no frame if last >= 1.
    min_last: int = 2**63

    def __post_init__(self) -> None:
        self.audio = self.track.is_audio

    @property
    def end(self) -> Fraction:
        assert self.origin is not None
        return self.origin + Fraction(self.tables.duration, self.track.timescale)

    def follows(self, begin: Fraction) -> bool:
        """Whether a segment whose first sample decodes at `begin` can go on this timeline."""
        if self.origin is None:
            return True
        gap = begin - self.end
        if gap > MAX_FOLLOWED_GAP:
            return False
        if self.audio:
            return gap >= -MAX_DROPPED_OVERLAP
        # Video frames are never dropped (the next may reference them): the overlap must fit
        # inside the boundary frame's duration.
        return gap * self.track.timescale > 1 - self.tables.last_duration

    def align(self, begin: Fraction, samples: PreparedTrack, source: Track) -> int:
        """Place the segment's first sample at `begin` on this track's timeline; returns how
        many leading samples to drop (see `absorb`)."""
        if self.origin is None:
            self.origin = begin
            return 0
        delta = round((begin - self.origin) * self.track.timescale) - self.tables.duration
        return self.absorb(delta, samples, Fraction(self.track.timescale, source.timescale))

    def absorb(self, delta: int, samples: PreparedTrack, ratio: Fraction | None = None) -> int:
        """The gap (or overlap, < 0) of `delta` ticks goes into the boundary sample's duration,
        after dropping audio frames that overlap their predecessor by more than half, or whose
        overlap the boundary frame is too short to absorb. Returns how many were dropped."""
        tables = self.tables
        has = tables.count > 0
        last = tables.last_duration
        skip = 0
        if self.audio and samples.count > 1:
            durations = samples.durations()
            while skip < samples.count - 1:
                duration = next(durations)
                if ratio is not None and ratio != 1:
                    duration = round(duration * ratio)
                if 2 * delta >= -duration and (last + delta >= 1 or not has):
                    break
                delta += duration
                skip += 1
        if delta and has:
            tables.set_last_duration(max(1, last + delta))
        return skip

    def enter_regime(
        self, init: InitSegment, shift: Fraction, begin: Fraction, samples: PreparedTrack
    ) -> None:
        """After an exact step: the integer terms in which the next segments of `init` follow.

        x = (begin + shift - origin) * timescale is where the exact step rounds; for a later
        segment of the same init, x moves by its tfdt's difference, an integer: so
        round(x) - ticks = base + tfdt - ticks, unless x is halfway between two ticks (round
        half to even then depends on the parity), where every segment takes the exact step.
        """
        assert self.origin is not None
        timescale = self.track.timescale
        f = (begin + shift - self.origin) * timescale - samples.base_decode_time
        base = round(f)
        phi = f - base  # gap * timescale = delta + phi
        if abs(phi) * 2 == 1:
            self.regime_init = None
            return
        self.regime_init, self.regime_shift, self.base = init, shift, base
        self.max_delta = math.floor(MAX_FOLLOWED_GAP * timescale - phi)
        self.min_delta = math.ceil(-MAX_DROPPED_OVERLAP * timescale - phi)
        self.min_reach = math.floor(1 - phi) + 1
        self.min_last = 1 if self.audio else self.min_reach

    def entry_for(self, source: Track) -> int:
        """1-based index of the source's sample description, added on first sight."""
        index = self.entries.get(source.stsd)
        if index is None:
            entries, count = _sample_entries(source.stsd)
            index = self.entries[source.stsd] = self.entry_count + 1
            self.entry_bytes.append(entries)
            self.entry_count += count
        return index

    def note_start(
        self, samples: PreparedTrack, source: Track, init: InitSegment, shift: Fraction
    ) -> None:
        """Where the track's first segment in the clip is shown, in the clip's timeline."""
        dts = samples.base_decode_time
        composition = dts + samples.composition_start
        empty, media_time = edit_offset(source, init.movie_timescale)
        self.first_shown = empty + Fraction(composition - media_time, source.timescale) + shift
        # Here the first sample decodes at 0: its composition time is the same distance on.
        self.first_composition = round(
            samples.composition_start * Fraction(self.track.timescale, source.timescale)
        )

    def table(
        self, window_start: Fraction, window_end: Fraction, movie_timescale: int
    ) -> TrackTable | None:
        """The finished track, placed in the presentation window; None if it shows nothing there."""
        assert self.first_shown is not None
        joined = self.tables.finish()
        # ctts version 0 is what every player reads: the join shifted the offsets, the edit says so
        media_time = self.first_composition + joined.cts_shift
        timescale = self.track.timescale
        shown_end = self.first_shown + Fraction(joined.duration, timescale)
        start = max(self.first_shown, window_start)
        end = min(shown_end, window_end)
        if end <= start:
            return None
        media_time += round((start - self.first_shown) * timescale)
        empty = round((start - window_start) * movie_timescale)
        return TrackTable(
            track=self.track,
            sample_entries=b"".join(self.entry_bytes),
            entry_count=self.entry_count,
            tables=joined,
            empty=empty,
            media_time=media_time,
            edit_duration=round((end - window_start) * movie_timescale) - empty,
        )


def _decode_begin(base_decode_time: int, source: Track, init: InitSegment) -> Fraction:
    """When the first sample decodes, in seconds of the source's presentation timeline (the
    init's edit list applied), so that tracks can be compared with one another."""
    empty, media_time = edit_offset(source, init.movie_timescale)
    return empty + Fraction(base_decode_time - media_time, source.timescale)


def _sample_entries(stsd: bytes) -> tuple[bytes, int]:
    """The entries of an stsd box (after its version, flags and entry_count) and their count."""
    box = next(boxes.iter_boxes(stsd))
    p = box.payload_start
    count = int.from_bytes(stsd[p + 4 : p + 8], "big")
    return stsd[p + 8 : box.end], count


def _source_track(init: InitSegment, track: Track, rank: int) -> Track | None:
    """The track of a (maybe later) init that continues `track`: same handler, same rank."""
    if init.track(track.track_id) is track:
        return track
    same = [t for t in init.tracks if t.handler == track.handler]
    return same[rank] if rank < len(same) else None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How segments of one init, with samples of one set of tracks, map onto the output."""

    # (output track, index in PreparedSegment.tracks, source track, stsd entry), output order
    items: tuple[tuple[_Track, int, Track, int], ...]
    # Every prepared track is used, in the output's order: the prepared chunk places hold.
    regular: bool


class _Clip:
    """The clip being built: its tracks' timelines and tables, and the mdat's pieces."""

    def __init__(self, first_init: InitSegment) -> None:
        handlers = [t.handler for t in first_init.tracks]
        self.tracks = [
            _Track(t, handlers[:i].count(t.handler)) for i, t in enumerate(first_init.tracks)
        ]
        self.main = next(b for b in self.tracks if b.track is first_init.main)
        self.shift = Fraction(0)  # added to source times: moves on when the source restarts
        self.plans: dict[tuple[int, tuple[int, ...]], _Plan] = {}
        # Per segment: its key, its pieces' starts and lengths (little-endian int64).
        self.layout: list[tuple[Hashable, bytes, bytes]] = []
        self.payload = 0
        # A frame-accurate cut's presentation window, on this clip's timeline (seconds).
        self.window_start: Fraction | None = None
        self.window_end: Fraction | None = None

    def plan(self, init: InitSegment, prepared: PreparedSegment) -> _Plan:
        key = (id(init), prepared.track_ids)
        plan = self.plans.get(key)
        if plan is None:
            ids = prepared.track_ids
            items = []
            for b in self.tracks:
                source = _source_track(init, b.track, b.rank)
                if source is None or source.track_id not in ids:
                    continue
                items.append((b, ids.index(source.track_id), source, b.entry_for(source)))
            indexes = [i for _, i, _, _ in items]
            regular = indexes == list(range(len(ids)))
            plan = self.plans[key] = _Plan(tuple(items), regular)
        return plan

    def add(self, seg: LayoutSegment) -> None:
        init, prepared = seg.init, seg.prepared
        plan = self.plan(init, prepared)
        tracks = prepared.tracks
        shift = self.shift
        for b, i, _, _ in plan.items:
            tables = b.tables
            if (
                b.regime_init is not init
                or b.regime_shift is not shift
                or b.base + tracks[i].base_decode_time != tables.duration
                or tables.last_duration < b.min_last
            ):
                break
        else:  # every track follows its source to the tick: the segment goes in as prepared
            if plan.regular:
                payload = self.payload
                for b, i, _, entry in plan.items:
                    b.tables.add(tracks[i], entry, payload)
                self.layout.append((seg.key, prepared.piece_starts, prepared.piece_lengths))
                self.payload = payload + prepared.payload
                return
        self._add_in_regime(seg, plan)

    def _add_in_regime(self, seg: LayoutSegment, plan: _Plan) -> None:
        """A boundary with a gap or overlap: absorbed in integers where every track is in its
        regime and follows, else by the exact step."""
        init, prepared = seg.init, seg.prepared
        tracks = prepared.tracks
        shift = self.shift
        deltas = []
        for b, i, _, _ in plan.items:
            if b.regime_init is not init or b.regime_shift is not shift:
                break
            tables = b.tables
            delta = b.base + tracks[i].base_decode_time - tables.duration
            if delta > b.max_delta:
                break
            if b.audio:
                if delta < b.min_delta:
                    break
            elif delta + tables.last_duration < b.min_reach:
                break
            deltas.append(delta)
        else:
            pieces = []
            trimmed = False
            for (b, i, _, entry), delta in zip(plan.items, deltas, strict=True):
                samples = tracks[i]
                if delta or (b.audio and b.tables.last_duration < 1):
                    skip = b.absorb(delta, samples)
                    if skip:
                        samples = trim(samples, skip)
                        trimmed = True
                pieces.append((b, samples, entry))
            self._lay_out(seg.key, prepared, pieces, plan.regular and not trimmed)
            return
        self._add_exactly(seg, plan)

    def _add_exactly(self, seg: LayoutSegment, plan: _Plan) -> None:
        """The timeline step in Fractions, as first written: for a track's first segment, a
        new init or clock, a restart; it leaves each track in a regime for the next ones."""
        init = seg.init
        present = []
        for b, i, source, entry in plan.items:
            samples = seg.prepared.tracks[i]
            begin = _decode_begin(samples.base_decode_time, source, init)
            present.append((b, samples, source, entry, begin))
        if not all(b.follows(begin + self.shift) for b, _, _, _, begin in present):
            main = self.main
            anchor = next((x for x in present if x[0] is main and main.origin is not None), None)
            if anchor is not None:
                self.shift = main.end - anchor[4]
            else:  # no main-track sample here: start after whatever ended last
                ends = [b.end for b in self.tracks if b.origin is not None]
                self.shift = max(ends) - min(begin for *_, begin in present)
        shift = self.shift
        pieces = []
        changed = False
        for b, samples, source, entry, begin in present:
            if b.first_shown is None:
                b.note_start(samples, source, init, shift)
            skip = b.align(begin + shift, samples, source)
            if source.timescale != b.track.timescale:  # a new init with another clock
                piece = reencode(samples, skip, Fraction(b.track.timescale, source.timescale))
                b.regime_init = None
            else:
                piece = trim(samples, skip)
                b.enter_regime(init, shift, begin, samples)
            changed = changed or piece is not samples
            pieces.append((b, piece, entry))
        self._lay_out(seg.key, seg.prepared, pieces, plan.regular and not changed)

    def _lay_out(
        self,
        key: Hashable,
        prepared: PreparedSegment,
        pieces: list[tuple[_Track, PreparedTrack, int]],
        as_prepared: bool,
    ) -> None:
        """The segment's chunks go where `prepare_segment` placed them, or, when samples were
        dropped or some of the segment's tracks are not in the clip, are laid out again the
        same way: output offsets follow the segment's own byte order, while each track takes
        its chunks in decode order, as stsc/stco number them."""
        payload = self.payload
        if as_prepared:
            for b, samples, entry in pieces:
                b.tables.add(samples, entry, payload)
            self.layout.append((key, prepared.piece_starts, prepared.piece_lengths))
            self.payload += prepared.payload
            return
        chunks = [
            (start, end) for _, samples, _ in pieces for _, start, end, _ in samples.chunk_rows()
        ]
        places, starts, lengths, size = place_chunks(chunks)
        at = 0
        for b, samples, entry in pieces:
            n = len(samples.chunks) // _ROW.size
            b.tables.add(samples, entry, payload, places[at : at + n])
            at += n
        self.layout.append((key, little_endian(starts), little_endian(lengths)))
        self.payload += size

    def mp4(self, created: float) -> Mp4Layout:
        main = self.main
        if main.first_shown is None:
            raise ValueError("the segments hold no sample of the main track")
        movie_timescale = main.track.timescale
        window_start = main.first_shown
        window_end = window_start + Fraction(main.tables.duration, main.track.timescale)
        if self.window_start is not None and self.window_end is not None:
            window_start, window_end = self.window_start, self.window_end
        tables = [
            table
            for b in self.tracks
            if b.first_shown is not None
            and (table := b.table(window_start, window_end, movie_timescale)) is not None
        ]
        header = progressive_header(
            tables,
            movie_timescale,
            self.payload,
            round(created) + boxwriter.MAC_EPOCH if created else 0,
        )
        # Piece 0 is the header; each segment's pieces start where the ones before end.
        keys: list[Hashable] = [None]
        sources = array("q", [0])
        lengths = array("q", [len(header)])
        if all(len(starts) == 8 for _, starts, _ in self.layout):
            keys.extend(key for key, _, _ in self.layout)
        else:
            keys.extend(k for key, starts, _ in self.layout for k in repeat(key, len(starts) // 8))
        sources.frombytes(b"".join(starts for _, starts, _ in self.layout))
        lengths.frombytes(b"".join(ends for _, _, ends in self.layout))
        if not _LITTLE:
            sources[1:] = array("q", struct.unpack(f"<{len(sources) - 1}q", sources[1:].tobytes()))
            lengths[1:] = array("q", struct.unpack(f"<{len(lengths) - 1}q", lengths[1:].tobytes()))
        starts = array("q", accumulate(lengths[:-1], initial=0))
        return Mp4Layout(header, tuple(keys), starts, len(header) + self.payload, sources)


class StoredSegment(Protocol):
    """Today's in-process segment (tests/stored_segment.py), as the compatibility
    path of `build_layout` reads it."""

    @property
    def data(self) -> bytes: ...
    @property
    def init(self) -> InitSegment: ...
    @property
    def media(self) -> SegmentMedia: ...


@dataclass(frozen=True, slots=True)
class Cut:
    """A frame-accurate build (packager.package.frames.Window): presentation starts at main
    composition time `head` of segment `head_segment` (an index into the segments built, the
    first of which holds that frame's keyframe) and stops at composition time `tail` of the last
    segment. Nothing is re-encoded: the edit list starts at that frame, and the frames before
    it, from its keyframe on, are decoded but not shown."""

    head_segment: int
    head: int
    tail: int


def build_layout(
    segments: Sequence[LayoutSegment] | Sequence[StoredSegment],
    created: float = 0.0,
    cut: Cut | None = None,
) -> Mp4Layout:
    """The progressive MP4 of one rendition's segments; `created` (unix seconds) goes in mvhd;
    with `cut`, frame-accurate (see Cut).

    Compatibility: stored segments (with `data`, `init`, `media`) are prepared here, O(samples),
    and keyed by views of their own bytes, so `iter_range` needs no reader. Callers that pass
    `LayoutSegment`s with the tables prepared at ingest get the O(segments) build.
    """
    if not segments:
        raise ValueError("an MP4 needs at least one segment")
    ready = [
        s
        if isinstance(s, LayoutSegment)
        else LayoutSegment(memoryview(s.data), s.init, prepare_segment(s.init, s.media))
        for s in segments
    ]
    if cut is not None:
        ready = _trim_for_cut(ready, cut)
    clip = _Clip(ready[0].init)
    last = len(ready) - 1
    for k, seg in enumerate(ready):
        clip.add(seg)
        if cut is not None and k == cut.head_segment:
            clip.window_start = presentation(seg.init.main, seg.init, cut.head) + clip.shift
        if cut is not None and k == last:
            clip.window_end = presentation(seg.init.main, seg.init, cut.tail) + clip.shift
    return clip.mp4(created)


def _trim_for_cut(segments: list[LayoutSegment], cut: Cut) -> list[LayoutSegment]:
    """Drop what a frame-accurate cut neither shows nor needs: main samples before the keyframe
    of the first shown frame, and after the last one a shown frame needs in decode order (a
    B-frame's later reference stays, hidden by the edit); audio frames that end more than one
    frame (the decoder's pre-roll) before the first shown frame, or start at its end or later."""
    if not 0 <= cut.head_segment < len(segments):
        raise ValueError(f"cut.head_segment {cut.head_segment} is not one of the segments")
    last = len(segments) - 1
    keeps: dict[int, dict[int, tuple[int, int]]] = {}
    for k in {0, last}:
        seg = segments[k]
        init, by_id = seg.init, {t.track_id: t for t in seg.prepared.tracks}
        main = init.main
        if main.track_id not in by_id:
            raise ValueError("a cut's boundary segment holds no sample of its main track")
        times = track_times(main, init, by_id[main.track_id], Fraction(0))
        lo, hi = 0, times.count
        head_here = k == cut.head_segment
        if k == 0:
            at = times.composition.index(cut.head) if head_here else times.count - 1
            lo = max((i for i in range(at + 1) if times.sync[i]), default=0)
        if k == last:
            shown = [
                i
                for i, c in enumerate(times.composition)
                if c < cut.tail and (not head_here or c >= cut.head)
            ]
            if not shown:
                raise ValueError("a cut shows no frame of its last segment")
            hi = max(shown) + 1
        keep = {main.track_id: (lo, hi)}
        audio = init.audio
        if audio is not None and audio is not main and audio.track_id in by_id:
            sound = track_times(audio, init, by_id[audio.track_id], Fraction(0))
            a_lo, a_hi = 0, sound.count
            if head_here:
                begin = presentation(main, init, cut.head)
                ends = [sound.at(d + n) for d, n in zip(sound.decode, sound.durations, strict=True)]
                a_lo = max(0, next((i for i, e in enumerate(ends) if e > begin), sound.count) - 1)
            if k == last:
                end = presentation(main, init, cut.tail)
                a_hi = sum(1 for d in sound.decode if sound.at(d) < end)
            keep[audio.track_id] = (a_lo, max(a_lo, a_hi))
        keeps[k] = keep
    out = list(segments)
    for k, keep in keeps.items():
        seg = out[k]
        out[k] = LayoutSegment(seg.key, seg.init, restrict(seg.prepared, keep))
    return out
