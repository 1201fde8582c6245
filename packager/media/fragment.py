"""Parse an fMP4 media segment's moof/traf (tfhd, tfdt, trun) into per-track sample tables.

A segment is `[styp] [sidx...] (moof mdat)+`. Parsing happens once, at ingest; the result
(`SegmentMedia`) is kept with the segment, so playlists and MP4 layouts never parse again.

tfhd, tfdt and trun are read with struct rather than pymp4: pymp4 builds an object per sample
(a lying sample_count costs seconds and hundreds of MB before any check) and ~100 µs per
box, so a segment of many tiny trafs would block the event loop for seconds. Together with
the box budget below, the work of a parse is bounded by its real bytes, not by what they claim.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from packager.errors import BadMedia
from packager.media import boxes
from packager.media.boxes import Box
from packager.media.model import InitSegment, SegmentMedia, TrackSamples

# Declared counts are checked against this and against the real bytes before anything is
# allocated for them, so a lying trun cannot make us allocate or loop without bound.
MAX_SAMPLES_PER_SEGMENT = 200_000
# Boxes walked per segment. A 6 s low-latency segment with a fragment per video frame at
# 60 fps holds ~4,000; a hostile one of 8-byte boxes would hold millions.
MAX_BOXES_PER_SEGMENT = 50_000
_NON_SYNC = 0x10000  # sample_is_non_sync_sample bit of the sample flags (§8.8.3.1)
# tfhd flags (§8.8.7.1): optional fields in this order, and where the data offsets count from.
_TFHD_FIELDS = ((0x1, 8), (0x2, 4), (0x8, 4), (0x10, 4), (0x20, 4))
_BASE_DATA_OFFSET, _DEFAULT_BASE_IS_MOOF = 0x1, 0x20000
# trun flags (§8.8.8): two optional fields, then per sample the 32-bit fields the flags name.
_DATA_OFFSET, _FIRST_FLAGS = 0x1, 0x4
_DURATION, _SIZE, _FLAGS, _CTS = 0x100, 0x200, 0x400, 0x800
assert array("I").itemsize == 4


class _Track:
    """Mutable accumulator for one track while its trafs are read."""

    def __init__(self, track_id: int, base: int) -> None:
        self.track_id = track_id
        self.base = base
        self.next_dts = base
        self.durations: array[int] = array("I")
        self.sizes: array[int] = array("I")
        self.offsets: array[int] = array("Q")
        self.cts: array[int] = array("i")
        self.sync: array[int] = array("B")

    def freeze(self) -> TrackSamples:
        return TrackSamples(
            self.track_id, self.base, self.durations, self.sizes, self.offsets, self.cts, self.sync
        )


class _Walk:
    """Box walking with one budget for the whole segment."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.left = MAX_BOXES_PER_SEGMENT

    def boxes(self, start: int = 0, end: int | None = None) -> Iterator[Box]:
        for box in boxes.iter_boxes(self.data, start, end):
            self.left -= 1
            if self.left < 0:
                raise BadMedia(f"more than {MAX_BOXES_PER_SEGMENT} boxes in a media segment")
            yield box

    def children(self, box: Box) -> list[Box]:
        return list(self.boxes(box.payload_start, box.end))


@dataclass(frozen=True, slots=True)
class _Tfhd:
    track_id: int
    flags: int
    base_data_offset: int | None
    default_duration: int | None
    default_size: int | None
    default_flags: int | None


def parse_segment(data: bytes, init: InitSegment) -> SegmentMedia:
    """Read every moof of a media segment against its init segment. Raises BadMedia."""
    walk = _Walk(data)
    top = list(walk.boxes())
    mdats = [(b.payload_start, b.end) for b in top if b.type == b"mdat"]  # in file order
    tracks: dict[int, _Track] = {}
    total = 0
    seen_moof = False
    for box in top:
        if box.type != b"moof":
            continue
        seen_moof = True
        data_end = box.start  # the implicit base of a traf is where the previous one's data ended
        for traf in walk.children(box):
            if traf.type == b"traf":
                room = MAX_SAMPLES_PER_SEGMENT - total
                count, data_end = _read_traf(
                    data, box, walk.children(traf), data_end, init, tracks, mdats, room
                )
                total += count
    if not seen_moof:
        raise BadMedia("media segment has no moof box")
    if not any(t.sizes for t in tracks.values()):
        raise BadMedia("media segment holds no samples")
    # The samples' bytes add up to no more than the mdat boxes hold: runs may not share bytes.
    payload = sum(end - start for start, end in mdats)
    if sum(sum(t.sizes) for t in tracks.values()) > payload:
        raise BadMedia(f"the samples claim more bytes than the {payload} the mdat boxes hold")
    order = [t.track_id for t in init.tracks if t.track_id in tracks]
    return SegmentMedia(tuple(tracks[tid].freeze() for tid in order))


def _read_traf(
    data: bytes,
    moof: Box,
    children: list[Box],
    implicit_base: int,
    init: InitSegment,
    tracks: dict[int, _Track],
    mdats: list[tuple[int, int]],
    room: int,
) -> tuple[int, int]:
    """Append one traf's samples to its track; return (sample count, end of its data).

    `room` is how many more samples the segment may hold."""
    tfhd_box = next((b for b in children if b.type == b"tfhd"), None)
    if tfhd_box is None:
        raise BadMedia("traf has no tfhd box")
    tfhd = _read_tfhd(data, tfhd_box)
    track_id = tfhd.track_id
    info = init.track(track_id)
    if info is None:
        raise BadMedia(f"traf refers to track {track_id}, not in the init segment")
    if tfhd.base_data_offset is not None:
        base_offset = tfhd.base_data_offset
    elif tfhd.flags & _DEFAULT_BASE_IS_MOOF:
        base_offset = moof.start
    else:  # §8.8.7.1: the moof for the first traf, else the end of the previous traf's data
        base_offset = implicit_base
    default_duration = (
        tfhd.default_duration if tfhd.default_duration is not None else info.default_sample_duration
    )
    default_size = tfhd.default_size if tfhd.default_size is not None else info.default_sample_size
    default_flags = (
        tfhd.default_flags if tfhd.default_flags is not None else info.default_sample_flags
    )
    tfdt_box = next((b for b in children if b.type == b"tfdt"), None)
    track = tracks.get(track_id)
    if tfdt_box is not None:
        dts = _read_tfdt(data, tfdt_box)
        if track is not None and dts != track.next_dts:
            raise BadMedia(f"track {track_id}: tfdt {dts} does not follow {track.next_dts}")
    elif track is not None:
        dts = track.next_dts
    else:
        raise BadMedia(f"track {track_id}: first traf of the segment has no tfdt")
    if track is None:
        track = tracks[track_id] = _Track(track_id, dts)
    count = 0
    next_offset = base_offset
    for trun_box in children:
        if trun_box.type != b"trun":
            continue
        run = _read_trun(data, trun_box, room - count)
        n = run.count
        start = base_offset + run.data_offset if run.data_offset is not None else next_offset
        sizes = run.columns.get(_SIZE)
        end = start + (sum(sizes) if sizes is not None else default_size * n)
        if n:  # checked before the tables are built: a lying size allocates nothing
            _check_in_mdat(track_id, start, end, mdats)
            # Every sample is backed by bytes: a count that no byte pays for (200,000 empty
            # samples in 104 bytes) would cost megabytes of tables for nothing.
            if (min(sizes) if sizes is not None else default_size) == 0:
                raise BadMedia(f"track {track_id}: a sample of zero bytes")
        if sizes is None:
            sizes = array("I", [default_size]) * n
        durations = run.columns.get(_DURATION)
        if durations is None:
            durations = array("I", [default_duration]) * n
        flags = run.columns.get(_FLAGS)
        if flags is not None:
            sync = array("B", [0 if f & _NON_SYNC else 1 for f in flags])
        else:
            sync = array("B", [0 if default_flags & _NON_SYNC else 1]) * n
        if n and run.first_flags is not None:
            sync[0] = 0 if run.first_flags & _NON_SYNC else 1
        cts = run.columns.get(_CTS)
        # Signed whatever the version: version 0 is unsigned, but encoders write negatives there.
        track.cts.extend(array("i", cts.tobytes()) if cts is not None else array("i", [0]) * n)
        track.durations.extend(durations)
        track.sizes.extend(sizes)
        if n:
            track.offsets.extend(array("Q", accumulate(sizes[:-1], initial=start)))
        track.sync.extend(sync)
        track.next_dts += sum(durations)
        next_offset = end
        count += n
    return count, next_offset


def _read_tfhd(data: bytes, box: Box) -> _Tfhd:
    p, end = box.payload_start, box.end
    if end - p < 8:
        raise BadMedia("truncated tfhd box")
    word, track_id = struct.unpack_from(">II", data, p)
    flags = word & 0xFFFFFF
    p += 8
    if p + sum(n for bit, n in _TFHD_FIELDS if flags & bit) > end:
        raise BadMedia("truncated tfhd box")
    values: dict[int, int] = {}
    for bit, n in _TFHD_FIELDS:
        if flags & bit:
            values[bit] = int.from_bytes(data[p : p + n], "big")
            p += n
    return _Tfhd(
        track_id,
        flags,
        values.get(_BASE_DATA_OFFSET),
        values.get(0x8),
        values.get(0x10),
        values.get(0x20),
    )


def _read_tfdt(data: bytes, box: Box) -> int:
    p = box.payload_start
    version = data[p] if box.end > p else None
    width = {0: 4, 1: 8}.get(version) if version is not None else None
    if width is None:
        raise BadMedia(f"tfdt box of unknown version {version}")
    if box.end - p < 4 + width:
        raise BadMedia("truncated tfdt box")
    return int.from_bytes(data[p + 4 : p + 4 + width], "big")


@dataclass(frozen=True, slots=True)
class _Run:
    """One trun: per-sample fields as columns, absent ones missing from `columns`."""

    count: int
    data_offset: int | None
    first_flags: int | None
    columns: dict[int, array[int]]


def _read_trun(data: bytes, box: Box, room: int) -> _Run:
    """The declared sample_count is checked against `room` and against the bytes of the box
    before anything is allocated for it."""
    p, end = box.payload_start, box.end
    if end - p < 8:
        raise BadMedia("truncated trun box")
    word, count = struct.unpack_from(">II", data, p)
    flags = word & 0xFFFFFF
    if count > room:
        raise BadMedia(
            f"trun declares {count} samples, more than {MAX_SAMPLES_PER_SEGMENT} in a segment"
        )
    fields = [bit for bit in (_DURATION, _SIZE, _FLAGS, _CTS) if flags & bit]
    p += 8
    fixed = 4 * (bool(flags & _DATA_OFFSET) + bool(flags & _FIRST_FLAGS))
    table_size = 4 * len(fields) * count
    if fixed + table_size > end - p:
        raise BadMedia(f"trun declares {count} samples, its box holds fewer")
    data_offset = first_flags = None
    if flags & _DATA_OFFSET:
        (data_offset,) = struct.unpack_from(">i", data, p)
        p += 4
    if flags & _FIRST_FLAGS:
        (first_flags,) = struct.unpack_from(">I", data, p)
        p += 4
    table = array("I", data[p : p + table_size])
    if sys.byteorder == "little":
        table.byteswap()
    columns = {bit: table[k :: len(fields)] for k, bit in enumerate(fields)}
    return _Run(count, data_offset, first_flags, columns)


def _check_in_mdat(track_id: int, start: int, end: int, mdats: list[tuple[int, int]]) -> None:
    """The run's bytes lie inside one mdat's payload (found by bisection: a hostile segment
    may hold thousands of mdats)."""
    k = bisect_right(mdats, start, key=lambda m: m[0]) - 1
    if k < 0 or end > mdats[k][1]:
        raise BadMedia(f"track {track_id}: sample data [{start}, {end}) lies outside every mdat")
