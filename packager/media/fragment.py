"""Parse an fMP4 media segment's moof/traf (tfhd, tfdt, trun) into per-track sample tables.

A segment is `[styp] [sidx...] (moof mdat)+`. Parsing happens once, at ingest; the result
(`SegmentMedia`) is kept with the segment, so playlists and MP4 layouts never parse again.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

from packager.errors import BadMedia
from packager.media import boxes
from packager.media.boxes import Box
from packager.media.init import parse_leaf
from packager.media.model import InitSegment, SegmentMedia, TrackSamples

# Declared counts are checked against these and against the real bytes before pymp4 builds
# per-sample objects, so a lying trun cannot make us allocate without bound.
MAX_SAMPLES_PER_SEGMENT = 200_000
_TRUN_FIELD_BYTES = {0x100: 4, 0x200: 4, 0x400: 4, 0x800: 4}
_NON_SYNC = 0x10000  # sample_is_non_sync_sample bit of the sample flags (§8.8.3.1)


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


def parse_segment(data: bytes, init: InitSegment) -> SegmentMedia:
    """Read every moof of a media segment against its init segment. Raises BadMedia."""
    top = list(boxes.iter_boxes(data))
    mdats = [(b.payload_start, b.end) for b in top if b.type == b"mdat"]
    tracks: dict[int, _Track] = {}
    total = 0
    seen_moof = False
    for box in top:
        if box.type != b"moof":
            continue
        seen_moof = True
        data_end = box.start  # the implicit base of a traf is where the previous one's data ended
        for traf in boxes.children(data, box):
            if traf.type == b"traf":
                count, data_end = _read_traf(data, box, traf, data_end, init, tracks, mdats)
                total += count
                if total > MAX_SAMPLES_PER_SEGMENT:
                    raise BadMedia(f"more than {MAX_SAMPLES_PER_SEGMENT} samples in a segment")
    if not seen_moof:
        raise BadMedia("media segment has no moof box")
    if not any(t.sizes for t in tracks.values()):
        raise BadMedia("media segment holds no samples")
    order = [t.track_id for t in init.tracks if t.track_id in tracks]
    return SegmentMedia(tuple(tracks[tid].freeze() for tid in order))


def _flags_non_sync(flags: Any) -> bool:
    """pymp4 gives sample flags as a raw int in some fields and a Container in others."""
    if flags is None:
        return False
    if isinstance(flags, int):
        return bool(flags & _NON_SYNC)
    return bool(flags.sample_is_non_sync_sample)


def _read_traf(
    data: bytes,
    moof: Box,
    traf: Box,
    implicit_base: int,
    init: InitSegment,
    tracks: dict[int, _Track],
    mdats: list[tuple[int, int]],
) -> tuple[int, int]:
    """Append one traf's samples to its track; return (sample count, end of its data)."""
    tfhd_box = boxes.require(data, traf, b"tfhd")
    tfhd = parse_leaf(data, tfhd_box)
    track_id = int(tfhd.track_ID)
    info = init.track(track_id)
    if info is None:
        raise BadMedia(f"traf refers to track {track_id}, not in the init segment")
    if tfhd.flags.base_data_offset_present:
        base_offset = int(tfhd.base_data_offset)
    elif tfhd.flags.default_base_is_moof:
        base_offset = moof.start
    else:  # §8.8.7.1: the moof for the first traf, else the end of the previous traf's data
        base_offset = implicit_base
    default_duration = (
        tfhd.default_sample_duration
        if tfhd.default_sample_duration is not None
        else info.default_sample_duration
    )
    default_size = (
        tfhd.default_sample_size
        if tfhd.default_sample_size is not None
        else info.default_sample_size
    )
    default_non_sync = _flags_non_sync(
        tfhd.default_sample_flags
        if tfhd.default_sample_flags is not None
        else info.default_sample_flags
    )
    tfdt_box = boxes.find(data, traf, b"tfdt")
    track = tracks.get(track_id)
    if tfdt_box is not None:
        dts = int(parse_leaf(data, tfdt_box).baseMediaDecodeTime)
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
    for trun_box in boxes.children(data, traf):
        if trun_box.type != b"trun":
            continue
        _check_trun_size(data, trun_box)
        trun = parse_leaf(data, trun_box)
        offset = base_offset + trun.data_offset if trun.data_offset is not None else next_offset
        run_start = offset
        for i, s in enumerate(trun.sample_info):
            duration = s.sample_duration if s.sample_duration is not None else default_duration
            size = s.sample_size if s.sample_size is not None else default_size
            if i == 0 and trun.first_sample_flags is not None:
                non_sync = _flags_non_sync(trun.first_sample_flags)
            elif s.sample_flags is not None:
                non_sync = _flags_non_sync(s.sample_flags)
            else:
                non_sync = default_non_sync
            cts = s.sample_composition_time_offsets or 0
            if cts >= 2**31:  # version 0 is unsigned, but encoders write negatives there too
                cts -= 2**32
            track.durations.append(duration)
            track.sizes.append(size)
            track.offsets.append(offset)
            track.cts.append(cts)
            track.sync.append(0 if non_sync else 1)
            offset += size
        _check_in_mdat(track_id, run_start, offset, mdats)
        next_offset = offset
        count += int(trun.sample_count)
    track.next_dts = track.base + sum(track.durations)
    return count, next_offset


def _check_trun_size(data: bytes, box: Box) -> None:
    """The declared sample_count must fit the bytes of the box before pymp4 builds objects."""
    p = box.payload_start
    if box.end - p < 8:
        raise BadMedia("truncated trun box")
    flags = struct.unpack_from(">I", data, p)[0] & 0xFFFFFF
    count = struct.unpack_from(">I", data, p + 4)[0]
    per_sample = sum(n for bit, n in _TRUN_FIELD_BYTES.items() if flags & bit)
    fixed = 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
    if count > MAX_SAMPLES_PER_SEGMENT:
        raise BadMedia(f"trun declares {count} samples, more than {MAX_SAMPLES_PER_SEGMENT}")
    if fixed + count * per_sample > box.end - p:
        raise BadMedia(f"trun declares {count} samples, its box holds fewer")


def _check_in_mdat(track_id: int, start: int, end: int, mdats: list[tuple[int, int]]) -> None:
    if start == end:
        return
    if not any(lo <= start and end <= hi for lo, hi in mdats):
        raise BadMedia(f"track {track_id}: sample data [{start}, {end}) lies outside every mdat")
