"""The MP4 builder as it was before per-segment tables (commit 62dca25), kept as the reference
the new one is checked against: header bytes and pieces must be equal, byte for byte.

It walks every sample in Python (O(samples)); only its interface changed: it takes anything with
`data`, `init` and `media` (so synthetic segments need no real bytes), and returns the header
and its pieces as (segment index, start, end) instead of views.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import accumulate, pairwise
from typing import Protocol

from packager.media import boxes, boxwriter
from packager.media.model import InitSegment, SegmentMedia, Track, TrackSamples


class SegmentLike(Protocol):
    @property
    def data(self) -> object: ...
    @property
    def init(self) -> InitSegment: ...
    @property
    def media(self) -> SegmentMedia: ...


@dataclass(frozen=True, slots=True)
class ReferenceLayout:
    header: bytes
    pieces: list[tuple[int, int, int]]  # (index of the segment, start, end) after the header
    size: int


FTYP = boxwriter.ftyp(b"isom", 0x200, (b"isom", b"iso2", b"avc1", b"mp41"))
HANDLER_NAMES = {"vide": "VideoHandler", "soun": "SoundHandler"}
FULL_VOLUME = 0x100
# A forward jump of the source's timestamps up to this is followed (a gap in the file); past it
# the jump is taken for a restart, and the tracks go on from where they ended.
MAX_FOLLOWED_GAP = Fraction(10)
# Audio overlapping its predecessor by up to this is followed by dropping the overlapping frames.
MAX_DROPPED_OVERLAP = Fraction(1, 2)


@dataclass(frozen=True, slots=True)
class TrackTable:
    """One output track in numbers: everything its `trak` needs, none of the sample bytes."""

    track: Track  # the first init's description: handler, timescale, size, language
    sample_entries: bytes  # the stsd's entries, one per distinct description in the clip
    entry_count: int
    durations: array[int]
    sizes: array[int]
    cts_offsets: array[int]
    sync: array[int]
    chunk_samples: array[int]  # samples in each chunk, in decode order
    chunk_entries: array[int]  # 1-based sample description of each chunk
    chunk_offsets: array[int]  # where each chunk starts, from the start of the mdat payload
    empty: int  # presentation time before the media edit, movie timescale
    media_time: int  # composition time where the media edit starts, track timescale
    edit_duration: int  # length of the media edit, movie timescale

    @property
    def media_duration(self) -> int:
        return sum(self.durations)


def progressive_header(
    tables: Sequence[TrackTable], movie_timescale: int, payload_size: int, created: int = 0
) -> bytes:
    """ftyp + moov + mdat header for a payload whose chunks lie at the tables' offsets.

    The moov's size depends only on stco vs co64, never on the offsets' values: size it once
    with 32-bit offsets, switch to co64 if the last chunk would start past 4 GiB, then fill.
    """
    mdat_header = boxwriter.box_header(b"mdat", payload_size)
    fixed = [_stbl_tables(t) for t in tables]
    duration = max((t.empty + t.edit_duration for t in tables), default=0)
    head = boxwriter.mvhd(movie_timescale, duration, len(tables) + 1, created)

    def moov(offsets: Callable[[TrackTable], bytes]) -> bytes:
        traks = [
            _trak(t, number, stbl_tables, offsets(t), created)
            for number, (t, stbl_tables) in enumerate(zip(tables, fixed, strict=True), start=1)
        ]
        return boxwriter.box(b"moov", head, *traks)

    def blank(wide: bool) -> Callable[[TrackTable], bytes]:
        return lambda t: bytes(boxwriter.chunk_offsets_size(len(t.chunk_offsets), wide))

    wide = False
    base = len(FTYP) + len(moov(blank(wide))) + len(mdat_header)
    last = max((max(t.chunk_offsets, default=0) for t in tables), default=0)
    if base + last > boxwriter.U32_MAX:
        wide = True
        base = len(FTYP) + len(moov(blank(wide))) + len(mdat_header)

    def filled(t: TrackTable) -> bytes:
        return boxwriter.chunk_offsets([base + o for o in t.chunk_offsets], wide)

    return FTYP + moov(filled) + mdat_header


def _stbl_tables(t: TrackTable) -> bytes:
    """Everything in stbl but the chunk offsets: built once, it is the O(samples) part."""
    parts = [
        boxwriter.stsd(t.sample_entries, t.entry_count),
        boxwriter.stts(t.durations),
    ]
    if any(t.cts_offsets):
        parts.append(boxwriter.ctts(t.cts_offsets))
    sync = boxwriter.stss(t.sync)
    if sync is not None:
        parts.append(sync)
    parts.append(boxwriter.stsc(t.chunk_samples, t.chunk_entries))
    parts.append(boxwriter.stsz(t.sizes))
    return b"".join(parts)


def _trak(t: TrackTable, track_id: int, tables: bytes, offsets: bytes, created: int) -> bytes:
    track = t.track
    handler = track.handler.encode("latin-1")
    stbl = boxwriter.box(b"stbl", tables, offsets)
    minf = boxwriter.box(b"minf", boxwriter.media_header(handler), boxwriter.dinf(), stbl)
    mdia = boxwriter.box(
        b"mdia",
        boxwriter.mdhd(track.timescale, t.media_duration, track.language, created),
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
    return boxwriter.box(b"trak", head, boxwriter.elst(edits), mdia)


# ---- from segments to tables ---------------------------------------------------------------


@dataclass(eq=False)
class _TrackBuilder:
    """Accumulates one output track while the clip's segments are walked in order."""

    track: Track
    entries: dict[bytes, int] = field(default_factory=dict)  # stsd box -> first entry index
    entry_bytes: list[bytes] = field(default_factory=list)
    entry_count: int = 0
    durations: array[int] = field(default_factory=lambda: array("I"))
    sizes: array[int] = field(default_factory=lambda: array("I"))
    cts: array[int] = field(default_factory=lambda: array("i"))
    sync: array[int] = field(default_factory=lambda: array("B"))
    chunk_samples: array[int] = field(default_factory=lambda: array("I"))
    chunk_entries: array[int] = field(default_factory=lambda: array("I"))
    chunk_offsets: array[int] = field(default_factory=lambda: array("Q"))
    # Source presentation time of the first shown sample, and its composition time here.
    first_shown: Fraction | None = None
    first_composition: int = 0
    # Clip time (seconds, in the source's presentation terms) where the first sample decodes,
    # and the decode ticks so far: the running end is origin + ticks / timescale.
    origin: Fraction | None = None
    ticks: int = 0

    @property
    def end(self) -> Fraction:
        assert self.origin is not None
        return self.origin + Fraction(self.ticks, self.track.timescale)

    def follows(self, begin: Fraction) -> bool:
        """Whether a segment whose first sample decodes at `begin` can go on this timeline."""
        if self.origin is None:
            return True
        gap = begin - self.end
        if gap > MAX_FOLLOWED_GAP:
            return False
        if self.track.is_audio:
            return gap >= -MAX_DROPPED_OVERLAP
        # Video frames are never dropped (the next may reference them): the overlap must fit
        # inside the boundary frame's duration.
        last = self.durations[-1] if self.durations else 0
        return gap * self.track.timescale > 1 - last

    def align(self, begin: Fraction, samples: TrackSamples, source: Track) -> int:
        """Place the segment's first sample at `begin` on this track's timeline: the gap or
        overlap goes into the boundary sample's duration, after dropping audio frames that
        overlap their predecessor by more than half. Returns how many leading samples to drop."""
        if self.origin is None:
            self.origin = begin
            return 0
        timescale = self.track.timescale
        ratio = Fraction(timescale, source.timescale)
        delta = round((begin - self.origin) * timescale) - self.ticks
        last = self.durations[-1] if self.durations else 0
        skip = 0
        if self.track.is_audio:
            # Drop a frame that overlaps by more than half, or whose overlap the boundary
            # frame is too short to absorb.
            while skip < samples.count - 1:
                duration = round(samples.durations[skip] * ratio)
                if 2 * delta >= -duration and (last + delta >= 1 or not self.durations):
                    break
                delta += duration
                skip += 1
        if delta and self.durations:
            boundary = max(1, last + delta)
            self.ticks += boundary - last
            self.durations[-1] = boundary
        return skip

    def entry_for(self, source: Track) -> int:
        """1-based index of the source's sample description, added on first sight."""
        index = self.entries.get(source.stsd)
        if index is None:
            entries, count = _sample_entries(source.stsd)
            index = self.entries[source.stsd] = self.entry_count + 1
            self.entry_bytes.append(entries)
            self.entry_count += count
        return index

    def add_chunk(
        self, samples: TrackSamples, lo: int, hi: int, source: Track, offset: int
    ) -> None:
        if source.timescale == self.track.timescale:
            self.durations.extend(samples.durations[lo:hi])
            self.cts.extend(samples.cts_offsets[lo:hi])
            self.ticks += sum(samples.durations[lo:hi])
        else:  # a new init with another clock: rescale, rounding on the running sum
            ratio = Fraction(self.track.timescale, source.timescale)
            ends = [round(t * ratio) for t in accumulate(samples.durations[lo:hi], initial=0)]
            self.durations.extend(b - a for a, b in pairwise(ends))
            self.cts.extend(round(c * ratio) for c in samples.cts_offsets[lo:hi])
            self.ticks += ends[-1]
        self.sizes.extend(samples.sizes[lo:hi])
        self.sync.extend(samples.sync[lo:hi])
        self.chunk_samples.append(hi - lo)
        self.chunk_entries.append(self.entry_for(source))
        self.chunk_offsets.append(offset)

    def note_start(
        self, samples: TrackSamples, source: Track, init: InitSegment, shift: Fraction
    ) -> None:
        """Where the track's first segment in the clip is shown, in the clip's timeline."""
        dts = samples.base_decode_time
        composition = min(
            d + c
            for d, c in zip(
                accumulate(samples.durations, initial=dts), samples.cts_offsets, strict=False
            )
        )
        empty, media_time = _edit_offset(source, init.movie_timescale)
        self.first_shown = empty + Fraction(composition - media_time, source.timescale) + shift
        # Here the first sample decodes at 0: its composition time is the same distance on.
        self.first_composition = round(
            (composition - dts) * Fraction(self.track.timescale, source.timescale)
        )

    def table(
        self, window_start: Fraction, window_end: Fraction, movie_timescale: int
    ) -> TrackTable | None:
        """The finished track, placed in the presentation window; None if it shows nothing there."""
        assert self.first_shown is not None
        cts = self.cts
        media_time = self.first_composition
        low = min(cts, default=0)
        if low < 0:  # ctts version 0 is what every player reads: shift, and let the edit say so
            cts = array("i", (c - low for c in cts))
            media_time -= low
        timescale = self.track.timescale
        shown_end = self.first_shown + Fraction(sum(self.durations), timescale)
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
            durations=self.durations,
            sizes=self.sizes,
            cts_offsets=cts,
            sync=self.sync,
            chunk_samples=self.chunk_samples,
            chunk_entries=self.chunk_entries,
            chunk_offsets=self.chunk_offsets,
            empty=empty,
            media_time=media_time,
            edit_duration=round((end - window_start) * movie_timescale) - empty,
        )


def _edit_offset(track: Track, movie_timescale: int) -> tuple[Fraction, int]:
    """(seconds of empty edits before the media, media time shown then) from the init's elst."""
    empty = 0
    for edit in track.edits:
        if edit.media_time == -1:
            empty += edit.duration
        else:
            return Fraction(empty, movie_timescale), edit.media_time
    return Fraction(empty, movie_timescale), 0


def _decode_begin(samples: TrackSamples, source: Track, init: InitSegment) -> Fraction:
    """When the first sample decodes, in seconds of the source's presentation timeline (the
    init's edit list applied), so that tracks can be compared with one another."""
    empty, media_time = _edit_offset(source, init.movie_timescale)
    return empty + Fraction(samples.base_decode_time - media_time, source.timescale)


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


def _runs(samples: TrackSamples) -> list[tuple[int, int]]:
    """Sample index ranges whose bytes are contiguous in the segment: the chunks of the mdat."""
    offsets, sizes = samples.offsets, samples.sizes
    n = len(sizes)
    if n == 0:
        return []
    if array("Q", accumulate(sizes[:-1], initial=offsets[0])) == offsets:
        return [(0, n)]
    runs: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, n):
        if offsets[i] != offsets[i - 1] + sizes[i - 1]:
            runs.append((lo, i))
            lo = i
    runs.append((lo, n))
    return runs


def build_layout(segments: Sequence[SegmentLike], created: float = 0.0) -> ReferenceLayout:
    """The progressive MP4 of one rendition's segments; `created` (unix seconds) goes in mvhd."""
    if not segments:
        raise ValueError("an MP4 needs at least one segment")
    first_init = segments[0].init
    builders = [_TrackBuilder(t) for t in first_init.tracks]
    handlers = [t.handler for t in first_init.tracks]
    ranks = [handlers[:i].count(h) for i, h in enumerate(handlers)]
    main = next(b for b in builders if b.track is first_init.main)
    pieces: list[tuple[object, int, int, int]] = []
    payload = 0
    shift = Fraction(0)  # added to source times: moves on when the source timeline restarts
    for index, seg in enumerate(segments):
        present: list[tuple[_TrackBuilder, TrackSamples, Track, Fraction]] = []
        for builder, rank in zip(builders, ranks, strict=True):
            source = _source_track(seg.init, builder.track, rank)
            samples = seg.media.track(source.track_id) if source is not None else None
            if source is None or samples is None or samples.count == 0:
                continue
            present.append((builder, samples, source, _decode_begin(samples, source, seg.init)))
        if not all(b.follows(begin + shift) for b, _, _, begin in present):
            anchor = next((x for x in present if x[0] is main and main.origin is not None), None)
            if anchor is not None:
                shift = main.end - anchor[3]
            else:  # no main-track sample here: start after whatever ended last
                ends = [b.end for b in builders if b.origin is not None]
                shift = max(ends) - min(begin for *_, begin in present)
        chunks: list[tuple[int, int, _TrackBuilder, TrackSamples, int, int, Track]] = []
        for builder, samples, source, begin in present:
            if builder.first_shown is None:
                builder.note_start(samples, source, seg.init, shift)
            skip = builder.align(begin + shift, samples, source)
            for run_lo, hi in _runs(samples):
                lo = max(run_lo, skip)
                if lo >= hi:
                    continue
                start = samples.offsets[lo]
                end = samples.offsets[hi - 1] + samples.sizes[hi - 1]
                chunks.append((start, end, builder, samples, lo, hi, source))
        # Output offsets follow the segment's own order; each track still takes its chunks
        # in decode order (chunks were listed so), as stsc/stco number them.
        place: dict[int, int] = {}
        for k in sorted(range(len(chunks)), key=lambda k: chunks[k][0]):
            start, end = chunks[k][0], chunks[k][1]
            place[k] = payload
            payload += end - start
            if pieces and pieces[-1][0] is seg.data and pieces[-1][3] == start:
                pieces[-1] = (seg.data, pieces[-1][1], pieces[-1][2], end)
            else:
                pieces.append((seg.data, index, start, end))
        for k, (_, _, builder, samples, lo, hi, source) in enumerate(chunks):
            builder.add_chunk(samples, lo, hi, source, place[k])
    if main.first_shown is None:
        raise ValueError("the segments hold no sample of the main track")
    movie_timescale = main.track.timescale
    window_start = main.first_shown
    window_end = window_start + Fraction(sum(main.durations), main.track.timescale)
    tables = [
        table
        for b in builders
        if b.first_shown is not None
        and (table := b.table(window_start, window_end, movie_timescale)) is not None
    ]
    header = progressive_header(
        tables, movie_timescale, payload, round(created) + boxwriter.MAC_EPOCH if created else 0
    )
    return ReferenceLayout(
        header, [(k, start, end) for _, k, start, end in pieces], len(header) + payload
    )
