"""Write the ISO-BMFF boxes of a progressive MP4 `moov`, and of an fMP4 media segment
(ISO/IEC 14496-12), sans-IO.

Why not pymp4 for all of it (checked with pymp4 1.4.0 on construct 2.8.8, Python 3.11):
- It cannot *build* any box holding an `Array`/`GreedyRange` (ftyp, mvhd, tkhd, mdhd):
  construct 2.8.8 tests `collections.Sequence`, which Python 3.10 removed. Parsing works.
- It has no `ctts` and no `edts`/`elst`, and every box it writes is 32-bit size-prefixed, so
  no 64-bit `mdat` header past 4 GiB.
- Its sample tables (stts, stss, stsz, stsc, stco, co64) take one construct object per entry
  and build them field by field in pure Python: an hour of video + audio is ~277k samples.
So pymp4 builds the few fixed boxes it can (hdlr, vmhd, smhd, dref) and parses everything in
the tests; the tables are packed here from `array`s in one `tobytes()` each.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from pymp4.parser import Box as Mp4Box

U32_MAX = 2**32 - 1
MAC_EPOCH = 2_082_844_800  # seconds from 1904-01-01 (the MP4 epoch) to 1970-01-01
UNITY_MATRIX = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_MATRIX = struct.pack(">9i", *UNITY_MATRIX)


def box(typ: bytes, *payload: bytes) -> bytes:
    """A box with a 32-bit size: every moov box is far below 4 GiB."""
    size = 8 + sum(len(p) for p in payload)
    if size > U32_MAX:
        raise ValueError(f"box {typ!r} of {size} bytes needs a 64-bit size")
    return b"".join((struct.pack(">I4s", size, typ), *payload))


def full_box(typ: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(typ, struct.pack(">I", (version << 24) | flags), *payload)


def box_header(typ: bytes, payload_size: int) -> bytes:
    """Header for a box whose payload is sent separately: 64-bit `largesize` when it must (§4.2)."""
    if 8 + payload_size <= U32_MAX:
        return struct.pack(">I4s", 8 + payload_size, typ)
    return struct.pack(">I4sQ", 1, typ, 16 + payload_size)


def big_endian(values: array[int]) -> bytes:
    """An array's items as big-endian bytes, in C: one copy, no per-item Python work."""
    if sys.byteorder == "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _u32_array(values: Iterable[int]) -> array[int]:
    out = array("I")  # "I" is 32-bit on every platform CPython supports
    out.extend(values)
    return out


def _run_lengths(values: Sequence[int]) -> tuple[list[int], list[int]]:
    """Collapse equal neighbours: (counts, values)."""
    counts: list[int] = []
    runs: list[int] = []
    last = None
    for v in values:
        if v == last:
            counts[-1] += 1
        else:
            counts.append(1)
            runs.append(v)
            last = v
    return counts, runs


def _pairs(typecode: str, first: Sequence[int], second: Sequence[int]) -> array[int]:
    out = array(typecode, [0]) * (2 * len(first))
    out[0::2] = array(typecode, first)
    out[1::2] = array(typecode, second)
    return out


def ftyp(major: bytes, minor: int, compatible: Sequence[bytes]) -> bytes:
    return box(b"ftyp", major, struct.pack(">I", minor), *compatible)


def mvhd(timescale: int, duration: int, next_track_id: int, created: int = 0) -> bytes:
    """Movie header; version 1 when a time or the duration needs 64 bits (§8.2.2)."""
    tail = struct.pack(">iH10x", 0x10000, 0x100) + _MATRIX + bytes(24)
    tail += struct.pack(">I", next_track_id)
    if max(duration, created) > U32_MAX:
        times = struct.pack(">QQIQ", created, created, timescale, duration)
        return full_box(b"mvhd", 1, 0, times, tail)
    return full_box(
        b"mvhd", 0, 0, struct.pack(">IIII", created, created, timescale, duration), tail
    )


def tkhd(
    track_id: int,
    duration: int,
    width: int = 0,
    height: int = 0,
    volume: int = 0,
    alternate_group: int = 0,
    created: int = 0,
) -> bytes:
    """Track header: enabled + in movie; width/height in pixels, written as 16.16 (§8.3.2)."""
    tail = struct.pack(">8xhhhH", 0, alternate_group, volume, 0) + _MATRIX
    tail += struct.pack(">II", width << 16, height << 16)
    if max(duration, created) > U32_MAX:
        head = struct.pack(">QQI4xQ", created, created, track_id, duration)
        return full_box(b"tkhd", 1, 3, head, tail)
    return full_box(
        b"tkhd", 0, 3, struct.pack(">III4xI", created, created, track_id, duration), tail
    )


def mdhd(timescale: int, duration: int, language: bytes, created: int = 0) -> bytes:
    """Media header; `language` is the packed ISO-639-2 code as mdhd stores it (2 bytes)."""
    if max(duration, created) > U32_MAX:
        head = struct.pack(">QQIQ", created, created, timescale, duration)
        return full_box(b"mdhd", 1, 0, head, language, bytes(2))
    head = struct.pack(">IIII", created, created, timescale, duration)
    return full_box(b"mdhd", 0, 0, head, language, bytes(2))


@cache
def hdlr(handler: bytes, name: str) -> bytes:
    built: bytes = Mp4Box.build({"type": b"hdlr", "handler_type": handler, "name": name})
    return built


@cache
def media_header(handler: bytes) -> bytes:
    """vmhd / smhd / nmhd, whichever the handler takes (§12.1.2, §12.2.2, §8.4.5.2)."""
    if handler == b"vide":
        built: bytes = Mp4Box.build(
            {"type": b"vmhd", "graphics_mode": 0, "opcolor": {"red": 0, "green": 0, "blue": 0}}
        )
        return built
    if handler == b"soun":
        built = Mp4Box.build({"type": b"smhd", "balance": 0})
        return built
    return full_box(b"nmhd", 0, 0)


@cache
def dinf() -> bytes:
    """One self-contained data reference: the samples are in this file."""
    dref: bytes = Mp4Box.build(
        {
            "type": b"dref",
            "data_entries": [
                {"type": b"url ", "location": None, "flags": {"self_contained": True}}
            ],
        }
    )
    return box(b"dinf", dref)


def elst(entries: Sequence[tuple[int, int]]) -> bytes:
    """Edit list of (segment_duration in movie timescale, media_time in track timescale or -1).

    Wrapped in its `edts`. Version 1 when a value needs 64 bits (§8.6.6).
    """
    wide = any(d > U32_MAX or not -(2**31) <= t < 2**31 for d, t in entries)
    fmt = ">Qqhh" if wide else ">Iihh"
    body = b"".join(struct.pack(fmt, d, t, 1, 0) for d, t in entries)
    return box(
        b"edts", full_box(b"elst", 1 if wide else 0, 0, struct.pack(">I", len(entries)), body)
    )


def stsd(entries: bytes, count: int) -> bytes:
    """Sample descriptions: the sample entries of the init segment(s), verbatim."""
    return full_box(b"stsd", 0, 0, struct.pack(">I", count), entries)


def stts(durations: Sequence[int]) -> bytes:
    """Decoding time to sample: run-length of sample durations (§8.6.1.2)."""
    counts, deltas = _run_lengths(durations)
    table = _pairs("I", counts, deltas)
    return full_box(b"stts", 0, 0, struct.pack(">I", len(counts)), big_endian(table))


def ctts(offsets: Sequence[int]) -> bytes:
    """Composition offsets, run-length; version 1 (signed) only if one is negative (§8.6.1.3)."""
    counts, values = _run_lengths(offsets)
    signed = any(v < 0 for v in values)
    table = _pairs("i" if signed else "I", counts, values)  # counts stay < 2**31 either way
    return full_box(
        b"ctts", 1 if signed else 0, 0, struct.pack(">I", len(counts)), big_endian(table)
    )


def stss(sync: Sequence[int]) -> bytes | None:
    """Sync samples (1-based numbers), or None when every sample is one: then stss is omitted."""
    raw = isinstance(sync, array) and sync.typecode == "B"
    flags = bytes(sync) if raw else bytes(1 if s else 0 for s in sync)
    if 0 not in flags:
        return None
    numbers = array("I")
    pos = flags.find(1)
    while pos != -1:  # one step per keyframe (every ~2 s), not per sample
        numbers.append(pos + 1)
        pos = flags.find(1, pos + 1)
    return full_box(b"stss", 0, 0, struct.pack(">I", len(numbers)), big_endian(numbers))


def stsz(sizes: array[int]) -> bytes:
    """Sample sizes; one shared size and no table when they are all equal (§8.7.3.2)."""
    if len(sizes) and min(sizes) == max(sizes):
        return full_box(b"stsz", 0, 0, struct.pack(">II", sizes[0], len(sizes)))
    table = sizes if sizes.typecode == "I" else _u32_array(sizes)
    return full_box(b"stsz", 0, 0, struct.pack(">II", 0, len(sizes)), big_endian(table))


def stsc(samples_per_chunk: Sequence[int], description_index: Sequence[int]) -> bytes:
    """Sample to chunk: one entry per run of chunks alike in size and description (§8.7.4)."""
    firsts: list[int] = []
    counts: list[int] = []
    descriptions: list[int] = []
    for chunk, (n, d) in enumerate(zip(samples_per_chunk, description_index, strict=True), start=1):
        if counts and counts[-1] == n and descriptions[-1] == d:
            continue
        firsts.append(chunk)
        counts.append(n)
        descriptions.append(d)
    table = _u32_array(v for row in zip(firsts, counts, descriptions, strict=True) for v in row)
    return full_box(b"stsc", 0, 0, struct.pack(">I", len(firsts)), big_endian(table))


def chunk_offsets(offsets: Sequence[int], wide: bool) -> bytes:
    """stco, or co64 when `wide` (an offset reaches 4 GiB) (§8.7.5)."""
    if wide:
        return full_box(
            b"co64", 0, 0, struct.pack(">I", len(offsets)), big_endian(array("Q", offsets))
        )
    if offsets and max(offsets) > U32_MAX:
        raise ValueError("chunk offset past 4 GiB needs co64")
    return full_box(b"stco", 0, 0, struct.pack(">I", len(offsets)), big_endian(_u32_array(offsets)))


def chunk_offsets_size(count: int, wide: bool) -> int:
    """Bytes of the stco/co64 box for `count` chunks, known before the offsets are."""
    return 16 + count * (8 if wide else 4)


# ---- a moov as parts, joined once ------------------------------------------------------------


class Parts:
    """Bytes still to be joined, with their total size. Boxes nest as parts, so a moov whose
    tables are megabytes (an hour of samples) is copied once, by the final join, rather than
    once per nesting level (stbl, minf, mdia, trak, moov) as `box()` would."""

    __slots__ = ("items", "size")

    def __init__(self, items: list[bytes | memoryview | Parts], size: int) -> None:
        self.items = items
        self.size = size

    @classmethod
    def of(cls, items: Sequence[bytes | memoryview]) -> Parts:
        return cls(list(items), sum(map(len, items)))

    def join(self) -> bytes:
        flat: list[bytes | memoryview] = []
        self._flatten(flat)
        return b"".join(flat)

    def _flatten(self, out: list[bytes | memoryview]) -> None:
        for item in self.items:
            if isinstance(item, Parts):
                item._flatten(out)
            else:
                out.append(item)


def nest(typ: bytes, *children: bytes | Parts) -> Parts:
    """A box around `children`, as parts (32-bit size, like `box`)."""
    size = 8 + sum(c.size if isinstance(c, Parts) else len(c) for c in children)
    if size > U32_MAX:
        raise ValueError(f"box {typ!r} of {size} bytes needs a 64-bit size")
    return Parts([struct.pack(">I4s", size, typ), *children], size)


def table_box(typ: bytes, version: int, entry_count: int, entries: Parts) -> Parts:
    """A full box of `entry_count` ready entries: stts, ctts, stss, stsc (§8.6, §8.7)."""
    return nest(typ, struct.pack(">II", version << 24, entry_count), entries)


def stsz_box(sample_size: int, sample_count: int, entries: Parts) -> Parts:
    """Sample sizes from ready entries; none when `sample_size` is shared (§8.7.3.2)."""
    head = struct.pack(">III", 0, sample_size, sample_count)
    return nest(b"stsz", head, entries if sample_size == 0 else Parts([], 0))


def chunk_offsets_at(offsets: array[int], base: int, wide: bool) -> bytes:
    """stco, or co64 when `wide`, for chunks at `base` + each offset (§8.7.5)."""
    table = array("Q" if wide else "I", map(base.__add__, offsets))
    count = struct.pack(">I", len(table))
    return full_box(b"co64" if wide else b"stco", 0, 0, count, big_endian(table))


# ---- fragmented MP4: one media segment ------------------------------------------------------

_SYNC_FLAGS = 0x02000000  # sample_depends_on = 2 (an I-frame): a sync sample (§8.8.3.1)
_NON_SYNC_FLAGS = 0x01010000  # depends on others, sample_is_non_sync_sample
# trun: data-offset, then per sample duration, size, flags and composition offset (§8.8.8).
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
_DEFAULT_BASE_IS_MOOF = 0x020000


@dataclass(frozen=True, slots=True)
class TrackFragment:
    """One track's samples in a media segment: tables and the sample bytes back to back."""

    track_id: int
    base_decode_time: int
    durations: Sequence[int]
    sizes: Sequence[int]
    sync: Sequence[int]
    cts_offsets: Sequence[int]
    data: bytes | memoryview


def _traf(t: TrackFragment, data_offset: int) -> bytes:
    n = len(t.sizes)
    rows = array("I", [0]) * (4 * n)
    rows[0::4] = array("I", t.durations)
    rows[1::4] = array("I", t.sizes)
    rows[2::4] = array("I", (_SYNC_FLAGS if s else _NON_SYNC_FLAGS for s in t.sync))
    rows[3::4] = array("I", (c & U32_MAX for c in t.cts_offsets))  # trun v1: signed
    return box(
        b"traf",
        full_box(b"tfhd", 0, _DEFAULT_BASE_IS_MOOF, struct.pack(">I", t.track_id)),
        full_box(b"tfdt", 1, 0, struct.pack(">Q", t.base_decode_time)),
        full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", n, data_offset), big_endian(rows)),
    )


def media_segment(sequence: int, tracks: Sequence[TrackFragment]) -> bytes:
    """styp + moof + mdat: what an encoder pushes (CMAF-style, one moof, every track's samples
    back to back in one mdat, offsets from the moof: default-base-is-moof)."""
    styp = box(b"styp", b"msdh", struct.pack(">I", 0), b"msdh", b"msix")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    # Each traf's size does not depend on its data offset's value: size with zeros, then fill.
    moof_size = 8 + len(mfhd) + sum(len(_traf(t, 0)) for t in tracks)
    offset = moof_size + 8
    trafs = []
    for t in tracks:
        trafs.append(_traf(t, offset))
        offset += len(t.data)
    moof = box(b"moof", mfhd, *trafs)
    payload = sum(len(t.data) for t in tracks)
    return b"".join((styp, moof, box_header(b"mdat", payload), *(bytes(t.data) for t in tracks)))
