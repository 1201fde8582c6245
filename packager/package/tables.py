"""A segment's share of a progressive MP4's sample tables, prepared once at ingest (sans-IO).

Everything a segment adds to the tables of a clip's `moov` (ISO/IEC 14496-12 §8.6, §8.7) is
known when it arrives: its stsz entries, its stts and ctts runs, its sync samples, and its chunks
(runs of contiguous sample bytes) with their place in the mdat relative to the segment.
`prepare_segment` computes that once, as ready big-endian entries; a clip's tables are then a
join of those pieces (`TableJoin`): O(segments) Python for an O(samples) result, whose bytes are
copied once, in C, when the header is joined.

A join has only the boundaries to fix: runs that meet (stts, ctts, stsc) merge, sample numbers
(stss) and chunk offsets move on, and the timeline may edit what meets there: the duration of
the last sample before the boundary (a gap or overlap absorbed, `set_last_duration`) and a
prefix of the next segment's samples (an overlapping AAC frame dropped, `trim`).

`PreparedSegment` (packager.media.prepared) is plain ints and bytes. An hour of
the ladder's 1080p rendition (30 fps video with B-frames, 48 kHz AAC, 2 s segments) is 2.5 MB
as `to_bytes`, 4.2 MB as objects in the heap, next to 8.4 MB for the `TrackSamples` arrays
each segment keeps today (bench/layout_build.py, tracemalloc). Preparing costs about what
parsing does (35 against 38 us a segment): B-frame offsets change nearly every sample, and
their runs and the earliest composition time are a Python step per sample.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate, compress, pairwise
from operator import add, attrgetter, ne
from typing import cast

from packager.media.boxwriter import big_endian
from packager.media.model import InitSegment, SegmentMedia, TrackSamples
from packager.media.prepared import (
    CTS_RUN,
    ROW,
    RUN,
    PreparedSegment,
    PreparedTrack,
    from_big_endian,
    little_endian,
)

# ---- preparing: one segment, at ingest -------------------------------------------------------


def _run_entries(values: array[int], typecode: str) -> tuple[bytes, array[int]]:
    """Maximal runs of equal neighbours as big-endian (count, value) entries, and the runs'
    values. This runs at ingest, next to parsing: constant tables (durations, audio's offsets)
    take one C-speed count; B-frame offsets change nearly every sample, where a plain loop
    beats C-speed passes that build their intermediate lists (5 against 10 us for 60)."""
    n = len(values)
    first = values[0]
    same = values.count(first)
    if same == n:
        return big_endian(array(typecode, [n, first])), array(typecode, [first])
    if same == n - 1 and values[-1] != first:  # AAC's last frame of a loop, cut short
        return big_endian(array(typecode, [n - 1, first, 1, values[-1]])), values[-2:]
    pairs = array(typecode)
    append = pairs.append
    count = 0
    for value in values:
        if value == first:
            count += 1
        else:
            append(count)
            append(first)
            first, count = value, 1
    append(count)
    append(first)
    return big_endian(pairs), pairs[1::2]


def _byte_runs(samples: TrackSamples) -> list[tuple[int, int]]:
    """Sample index ranges whose bytes are contiguous in the segment: the chunks of the mdat."""
    offsets, sizes = samples.offsets, samples.sizes
    n = len(sizes)
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


def _prepare_track(
    samples: TrackSamples, runs: list[tuple[int, int]], places: Sequence[int]
) -> PreparedTrack:
    durations, sizes, cts = samples.durations, samples.sizes, samples.cts_offsets
    n = len(sizes)
    stts, _ = _run_entries(durations, "I")
    ctts, cts_runs = _run_entries(cts, "i")
    cts_min, cts_max = min(cts_runs), max(cts_runs)
    if cts_min == cts_max == 0:
        composition_start = 0  # decode times never go back: the first sample is shown first
    else:
        composition_start = int(min(map(add, accumulate(durations, initial=0), cts)))
    flags = bytes(samples.sync)
    sync = None
    if 0 in flags:  # as stss reads them (§8.6.2): one find per sync sample, not per sample
        numbers = array("I")
        pos = flags.find(1)
        while pos != -1:
            numbers.append(pos)
            pos = flags.find(1, pos + 1)
        sync = big_endian(numbers)
    rows = []
    for (lo, hi), place in zip(runs, places, strict=True):
        end = samples.offsets[hi - 1] + sizes[hi - 1]
        rows.append(ROW.pack(hi - lo, samples.offsets[lo], end, place))
    return PreparedTrack(
        track_id=samples.track_id,
        base_decode_time=samples.base_decode_time,
        count=n,
        duration=durations[0] * n if len(stts) == 8 else sum(durations),
        last_duration=durations[-1],
        composition_start=composition_start,
        sample_size=sizes[0] if sizes.count(sizes[0]) == n else -1,
        cts_min=cts_min,
        cts_max=cts_max,
        cts_first=cts[0],
        cts_last=cts[-1],
        place=places[0],
        sizes=big_endian(sizes if sizes.typecode == "I" else array("I", sizes)),
        stts=stts,
        ctts=ctts,
        sync=sync,
        chunks=b"".join(rows),
    )


def place_chunks(
    chunks: Sequence[tuple[int, int]],
) -> tuple[list[int], list[int], list[int], int]:
    """Chunks (source start, end), listed per track and run, laid out in the segment's byte
    order: (place of each, piece starts, piece lengths, payload); a stable sort keeps the
    listing order of chunks that tie, neighbours in the source become one piece."""
    places = [0] * len(chunks)
    starts: list[int] = []
    lengths: list[int] = []
    payload = 0
    last_end = -1
    order: Sequence[int] = range(len(chunks))
    if any(a[0] > b[0] for a, b in pairwise(chunks)):
        order = sorted(order, key=lambda k: chunks[k][0])
    for k in order:
        start, end = chunks[k]
        places[k] = payload
        payload += end - start
        if starts and last_end == start:
            lengths[-1] += end - start
        else:
            starts.append(start)
            lengths.append(end - start)
        last_end = end
    return places, starts, lengths, payload


def prepare_segment(init: InitSegment, media: SegmentMedia) -> PreparedSegment:
    """Everything every clip's MP4 needs of this segment, computed once, at ingest."""
    present = [s for s in media.tracks if s.count]
    for s in present:
        if init.track(s.track_id) is None:
            raise ValueError(f"track {s.track_id} is not in the segment's init")
    return _prepare_tracks(present)


def _prepare_tracks(present: Sequence[TrackSamples]) -> PreparedSegment:
    """Tracks' samples (each with some) as one segment's share of the tables and the mdat."""
    runs = [_byte_runs(s) for s in present]
    chunks = [
        (s.offsets[lo], s.offsets[hi - 1] + s.sizes[hi - 1])
        for s, track_runs in zip(present, runs, strict=True)
        for lo, hi in track_runs
    ]
    places, starts, lengths, payload = place_chunks(chunks)
    tracks = []
    at = 0
    for s, track_runs in zip(present, runs, strict=True):
        tracks.append(_prepare_track(s, track_runs, places[at : at + len(track_runs)]))
        at += len(track_runs)
    return PreparedSegment(tuple(tracks), little_endian(starts), little_endian(lengths), payload)


# ---- what a clip's timeline does to a segment's samples ------------------------------------


def trim(track: PreparedTrack, skip: int) -> PreparedTrack:
    """The track without its first `skip` samples (frames the timeline drops). Chunk places
    are left as they were: the caller lays a trimmed segment out again."""
    if skip == 0:
        return track
    c0, d0 = RUN.unpack_from(track.stts)
    k0, v0 = CTS_RUN.unpack_from(track.ctts)
    samples, start, end, place = ROW.unpack_from(track.chunks)
    if not (skip < c0 and skip < k0 and skip < samples and track.sync is None):
        return reencode(track, skip)
    # Within the first runs (a dropped AAC frame): the tables' bytes are sliced, not rebuilt;
    # the first runs keep a sample each, so the offsets' range and ends stay as they were.
    cut = 4 * skip
    sizes = track.sizes[cut:]
    sample_size = track.sample_size
    if sample_size < 0 and sizes[:4] * (track.count - skip) == sizes:
        sample_size = int.from_bytes(sizes[:4], "big")
    if skip == 1:  # the usual drop: one AAC frame
        dropped = int.from_bytes(track.sizes[:4], "big")
    else:
        dropped = sum(from_big_endian("I", track.sizes[:cut]))
    composition_start = track.composition_start
    if track.cts_min != 0 or track.cts_max != 0:
        s = track.samples()
        composition_start = int(
            min(map(add, accumulate(s.durations[skip:], initial=0), s.cts_offsets[skip:]))
        )
    return PreparedTrack(
        track_id=track.track_id,
        base_decode_time=track.base_decode_time + skip * d0,
        count=track.count - skip,
        duration=track.duration - skip * d0,
        last_duration=track.last_duration,
        composition_start=composition_start,
        sample_size=sample_size,
        cts_min=track.cts_min,
        cts_max=track.cts_max,
        cts_first=track.cts_first,
        cts_last=track.cts_last,
        place=place,
        sizes=sizes,
        stts=RUN.pack(c0 - skip, d0) + track.stts[8:],
        ctts=CTS_RUN.pack(k0 - skip, v0) + track.ctts[8:],
        sync=None,
        chunks=ROW.pack(samples - skip, start + dropped, end, place) + track.chunks[ROW.size :],
    )


def reencode(track: PreparedTrack, skip: int = 0, ratio: Fraction | None = None) -> PreparedTrack:
    """The track from sample `skip` on, through its per-sample arrays; with `ratio`, its
    durations and composition offsets moved to another clock (a new init's timescale), each
    chunk's durations rounded on their running sum from the chunk's start."""
    s = track.samples()
    runs: list[tuple[int, int]] = []
    lo = 0
    for samples, _, _, _ in track.chunk_rows():
        if lo + samples > skip:
            runs.append((max(lo, skip) - skip, lo + samples - skip))
        lo += samples
    durations, cts = s.durations[skip:], s.cts_offsets[skip:]
    if ratio is not None and ratio != 1:
        scaled = array("I")
        for a, b in runs:
            ends = [round(t * ratio) for t in accumulate(durations[a:b], initial=0)]
            scaled.extend(y - x for x, y in pairwise(ends))
        durations = scaled
        cts = array("i", (round(c * ratio) for c in cts))
    kept = TrackSamples(
        s.track_id,
        s.base_decode_time + sum(s.durations[:skip]),
        durations,
        s.sizes[skip:],
        s.offsets[skip:],
        cts,
        s.sync[skip:],
    )
    return _prepare_track(kept, runs, [0] * len(runs))


# ---- joining: one output track of one clip ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinedTables:
    """One output track's sample tables, entries ready for their boxes."""

    sample_count: int
    duration: int  # sum of the sample durations, the boundary edits included
    stts: tuple[int, list[bytes | memoryview]]  # (entry count, entries)
    ctts: tuple[int, list[bytes | memoryview]] | None  # None: every offset is 0
    stss: bytes | None  # sync sample numbers; None: every sample is one
    stsc: bytes  # (first_chunk, samples_per_chunk, sample_description_index) entries
    sample_size: int  # stsz's shared size, or 0 and `sizes` holds one entry per sample
    sizes: list[bytes]
    chunk_offsets: array[int]  # from the start of the mdat payload
    cts_shift: int  # added to every composition offset so that none is negative


_COUNT = attrgetter("count")
_SAMPLE_SIZE = attrgetter("sample_size")
_PLACE = attrgetter("place")
_CHUNKS = attrgetter("chunks")


class TableJoin:
    """One output track's tables, joined from its segments' pieces in decode order.

    `add` and `set_last_duration` only record (a clip's walk stays a few steps per segment);
    `finish` joins each table in one pass, with C-speed passes wherever no boundary needs
    Python: a clip's moov is built once, and this is most of its cost.
    """

    __slots__ = ("_added", "_places", "duration", "last_duration", "patches")

    def __init__(self) -> None:
        # (piece, stsd entry of its chunks, where its segment starts in the payload)
        self._added: list[tuple[PreparedTrack, int, int]] = []
        self._places: dict[int, list[int]] = {}  # piece -> its chunks' places, laid out again
        self.patches: dict[int, int] = {}  # piece -> the duration its last sample takes
        self.duration = 0  # sum of the sample durations so far
        self.last_duration = 0  # of the last sample so far

    @property
    def count(self) -> int:
        """Pieces so far (each has a sample at least)."""
        return len(self._added)

    def add(
        self, piece: PreparedTrack, entry: int, base: int, places: list[int] | None = None
    ) -> None:
        """A piece's samples, their chunks described by stsd entry `entry` and placed at `base`
        plus the piece's own places, or at `base` plus `places` (a segment laid out again)."""
        self._added.append((piece, entry, base))
        if places is not None:
            self._places[len(self._added) - 1] = places
        self.duration += piece.duration
        self.last_duration = piece.last_duration

    def set_last_duration(self, duration: int) -> None:
        """The duration of the last sample so far (§8.6.1.2): a boundary's gap or overlap."""
        self.duration += duration - self.last_duration
        self.last_duration = duration
        self.patches[len(self._added) - 1] = duration

    def finish(self) -> JoinedTables:
        pieces = [piece for piece, _, _ in self._added]
        cts_lo = min(map(attrgetter("cts_min"), pieces))
        cts_hi = max(map(attrgetter("cts_max"), pieces))
        shift = -cts_lo if cts_lo < 0 else 0
        ctts = None
        if cts_lo + shift != 0 or cts_hi + shift != 0:
            parts = _join_ctts(pieces)
            if shift:  # version 0, the one every player reads: no offset below zero
                entries = from_big_endian("i", b"".join(parts))
                entries[1::2] = array("i", map(shift.__add__, entries[1::2]))
                parts = [big_endian(entries)]
            ctts = (sum(map(len, parts)) // 8, parts)
        shared = set(map(_SAMPLE_SIZE, pieces))
        sample_size = shared.pop() if len(shared) == 1 else 0
        stts = _join_stts(pieces, self.patches)
        descriptions = [entry for _, entry, _ in self._added]
        bases = [base for _, _, base in self._added]
        stsc, offsets = _join_chunks(pieces, descriptions, bases, self._places)
        return JoinedTables(
            sample_count=sum(map(_COUNT, pieces)),
            duration=self.duration,
            stts=(sum(map(len, stts)) // 8, stts),
            ctts=ctts,
            stss=_join_sync(pieces),
            stsc=stsc,
            sample_size=max(sample_size, 0),  # all empty: a table of zeros (§8.7.3.2)
            sizes=[p.sizes for p in pieces],
            chunk_offsets=offsets,
            cts_shift=shift,
        )


def _join_stts(pieces: list[PreparedTrack], patches: dict[int, int]) -> list[bytes | memoryview]:
    """stts entries: runs merge across pieces. The last run stays open (count, value) until a
    run of another value comes: a clip of constant durations is one entry, for O(1) bytes."""
    pack, unpack_from = RUN.pack, RUN.unpack_from
    parts: list[bytes | memoryview] = []
    count, value = 0, -1  # the open run; durations are never negative
    for k, p in enumerate(pieces):
        runs = p.stts
        if patches and k in patches:  # its last sample's duration changed: the tail only
            tail, last = unpack_from(runs, len(runs) - 8)
            entries = [(tail - 1, last), (1, patches[k])] if tail > 1 else [(1, patches[k])]
            if len(runs) > 8:
                entries.insert(0, unpack_from(runs, len(runs) - 16))
                if len(runs) > 16:  # the runs before those go in as they are
                    first, v = unpack_from(runs)
                    if v == value:
                        parts.append(pack(count + first, v))
                    else:
                        if value >= 0:
                            parts.append(pack(count, value))
                        parts.append(runs[:8])
                    if len(runs) > 24:
                        parts.append(memoryview(runs)[8:-16])
                    count, value = 0, -1
            for c, v in entries:
                if v == value:
                    count += c
                else:
                    if value >= 0:
                        parts.append(pack(count, value))
                    count, value = c, v
        elif len(runs) == 8:
            v = p.last_duration
            if v == value:
                count += p.count
            else:
                if value >= 0:
                    parts.append(pack(count, value))
                count, value = p.count, v
        else:
            first, v = unpack_from(runs)
            if v == value:
                parts.append(pack(count + first, v))
            else:
                if value >= 0:
                    parts.append(pack(count, value))
                parts.append(runs[:8])
            if len(runs) > 16:
                parts.append(memoryview(runs)[8:-8])
            count, value = unpack_from(runs, len(runs) - 8)
    parts.append(pack(count, value))
    return parts


def _join_ctts(pieces: list[PreparedTrack]) -> list[bytes | memoryview]:
    """ctts entries: each piece's go in whole, as prepared; where a piece starts with the
    value the one before ended with (rare: offsets follow the frame order), the two entries
    become one. B-frame video has an entry per sample or two: no Python step for those."""
    pack = CTS_RUN.pack
    parts: list[bytes | memoryview] = []
    last = None
    for p in pieces:
        runs = p.ctts
        if p.cts_first == last:
            before = parts[-1]
            (count,) = struct.unpack_from(">I", before, len(before) - 8)
            (first,) = struct.unpack_from(">I", runs)
            merged = pack(count + first, last)
            if len(before) == 8:
                parts[-1] = merged
            else:
                parts[-1] = memoryview(before)[:-8]
                parts.append(merged)
            if len(runs) > 8:
                parts.append(memoryview(runs)[8:])
        else:
            parts.append(runs)
        last = p.cts_last
    return parts


def _join_sync(pieces: list[PreparedTrack]) -> bytes | None:
    """stss: 1-based sample numbers of the sync samples, or None when every sample is one."""
    syncs = [p.sync for p in pieces]
    if syncs.count(None) == len(syncs):
        return None
    if None not in syncs and set(map(len, cast(list[bytes], syncs))) == {4}:
        # A keyframe a segment, the usual case: the numbers are the pieces' bases moved on.
        bases = accumulate(map(_COUNT, pieces), initial=1)
        indexes = from_big_endian("I", b"".join(cast(list[bytes], syncs)))
        return big_endian(array("I", map(add, indexes, bases)))
    numbers = array("I")
    base = 1
    for p, sync in zip(pieces, syncs, strict=True):
        if sync is None:
            numbers.extend(range(base, base + p.count))
        elif len(sync) == 4:  # a keyframe a segment: the usual case
            numbers.append(int.from_bytes(sync, "big") + base)
        else:
            numbers.extend(map(base.__add__, from_big_endian("I", sync)))
        base += p.count
    return big_endian(numbers)


def _join_chunks(
    pieces: list[PreparedTrack],
    entries: list[int],
    bases: list[int],
    places: dict[int, list[int]],
) -> tuple[bytes, array[int]]:
    """stsc entries, and each chunk's offset in the payload. One chunk per piece (the usual
    case) is done by C-speed passes: offsets are bases plus places, and stsc entries start
    wherever (samples, entry) changes."""
    if set(map(len, map(_CHUNKS, pieces))) == {ROW.size}:
        chunk_places = list(map(_PLACE, pieces))
        for k, explicit in places.items():
            chunk_places[k] = explicit[0]
        offsets = array("q", map(add, bases, chunk_places))
        counts = list(map(_COUNT, pieces))
        keys = list(zip(counts, entries, strict=True))
        firsts = [0, *compress(range(1, len(keys)), map(ne, keys[1:], keys[:-1]))]
        stsc = array("I", [0]) * (3 * len(firsts))
        stsc[0::3] = array("I", map((1).__add__, firsts))
        stsc[1::3] = array("I", map(counts.__getitem__, firsts))
        stsc[2::3] = array("I", map(entries.__getitem__, firsts))
        return big_endian(stsc), offsets
    offsets = array("q")
    stsc = array("I")
    last: tuple[int, int] | None = None
    for k, (p, entry, base) in enumerate(zip(pieces, entries, bases, strict=True)):
        own = places.get(k)
        for j, (count, _, _, place) in enumerate(p.chunk_rows()):
            offsets.append(base + (own[j] if own is not None else place))
            if last != (count, entry):
                last = (count, entry)
                stsc.extend((len(offsets), count, entry))
    return big_endian(stsc), offsets


def restrict(prepared: PreparedSegment, keep: dict[int, tuple[int, int]]) -> PreparedSegment:
    """The segment with only samples [lo, hi) of each track named in `keep` (decode order; the
    others whole): a frame-accurate cut's boundary segment. Laid out again as `prepare_segment`
    lays a segment out; O(samples of this segment)."""
    kept: list[TrackSamples] = []
    for track in prepared.tracks:
        lo, hi = keep.get(track.track_id, (0, track.count))
        if lo >= hi:
            continue
        s = track.samples()
        kept.append(
            TrackSamples(
                s.track_id,
                s.base_decode_time + sum(s.durations[:lo]),
                s.durations[lo:hi],
                s.sizes[lo:hi],
                s.offsets[lo:hi],
                s.cts_offsets[lo:hi],
                s.sync[lo:hi],
            )
        )
    return _prepare_tracks(kept)
