"""The box writer: every box parses back, with pymp4 where it can read it, by hand where not."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymp4.parser import Box as Mp4Box

from packager.media import boxes, boxwriter
from packager.media.init import parse_init
from packager.media.model import Edit
from tests.mp4_support import LADDER_DIR

U32 = st.integers(0, 2**32 - 1)


def _entries(parsed: Any, *fields: str) -> list[tuple[int, ...]]:
    return [tuple(int(getattr(e, f)) for f in fields) for e in parsed.entries]


def _expand(rows: Sequence[tuple[int, ...]]) -> list[int]:
    return [v for n, v in rows for _ in range(n)]


@given(st.lists(st.sampled_from([512, 1024, 1001, 2**32 - 1]), max_size=300))
def test_stts_run_lengths_expand_to_the_durations(durations: list[int]) -> None:
    parsed = Mp4Box.parse(boxwriter.stts(durations))
    rows = _entries(parsed, "sample_count", "sample_delta")
    assert _expand(rows) == durations
    assert all(a[1] != b[1] for a, b in pairwise(rows))


def _read_ctts(data: bytes) -> tuple[int, list[int]]:
    version = data[8]
    (count,) = struct.unpack_from(">I", data, 12)
    fmt = ">Ii" if version else ">II"
    rows = [struct.unpack_from(fmt, data, 16 + 8 * k) for k in range(count)]
    return version, _expand(rows)


@given(st.lists(st.integers(0, 2**32 - 1), max_size=200))
def test_ctts_version_0_holds_unsigned_offsets(offsets: list[int]) -> None:
    data = boxwriter.ctts(offsets)
    assert data[4:8] == b"ctts"
    assert _read_ctts(data) == (0, offsets)


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=200))
def test_ctts_switches_to_signed_version_1_for_negative_offsets(offsets: list[int]) -> None:
    version, got = _read_ctts(boxwriter.ctts(offsets))
    assert got == offsets
    assert version == (1 if min(offsets) < 0 else 0)


def test_stss_lists_keyframes_and_is_omitted_when_all_samples_are_sync() -> None:
    sync = array("B", [1] + [0] * 59 + [1] + [0] * 59)
    parsed = Mp4Box.parse(boxwriter.stss(sync))
    assert _entries(parsed, "sample_number") == [(1,), (61,)]
    assert boxwriter.stss(array("B", [1] * 94)) is None
    assert boxwriter.stss([True, False, True]) == boxwriter.stss(array("B", [1, 0, 1]))


def test_stsz_shares_one_size_or_lists_each() -> None:
    same = Mp4Box.parse(boxwriter.stsz(array("I", [6] * 5)))
    assert (same.sample_size, same.sample_count, same.entry_sizes) == (6, 5, None)
    sizes = array("I", [10, 2**32 - 1, 3])
    listed = Mp4Box.parse(boxwriter.stsz(sizes))
    assert (listed.sample_size, listed.sample_count, list(listed.entry_sizes)) == (
        0,
        3,
        [10, 2**32 - 1, 3],
    )


def test_stsc_has_one_entry_per_run_of_alike_chunks() -> None:
    parsed = Mp4Box.parse(boxwriter.stsc([60, 60, 60, 30, 60, 60], [1, 1, 1, 1, 1, 2]))
    rows = _entries(parsed, "first_chunk", "samples_per_chunk", "sample_description_index")
    assert rows == [(1, 60, 1), (4, 30, 1), (5, 60, 1), (6, 60, 2)]


def test_chunk_offsets_use_stco_below_4_gib_and_co64_above() -> None:
    small = Mp4Box.parse(boxwriter.chunk_offsets([0, 2**32 - 1], wide=False))
    assert small.type == b"stco" and _entries(small, "chunk_offset") == [(0,), (2**32 - 1,)]
    wide = Mp4Box.parse(boxwriter.chunk_offsets([5, 2**32, 2**40], wide=True))
    assert wide.type == b"co64" and _entries(wide, "chunk_offset") == [(5,), (2**32,), (2**40,)]
    assert len(boxwriter.chunk_offsets([1, 2, 3], wide=True)) == boxwriter.chunk_offsets_size(
        3, True
    )
    assert len(boxwriter.chunk_offsets([1, 2, 3], wide=False)) == boxwriter.chunk_offsets_size(
        3, False
    )
    with pytest.raises(ValueError, match="co64"):
        boxwriter.chunk_offsets([2**32], wide=False)


@pytest.mark.parametrize(
    ("payload", "header"),
    [
        (0, struct.pack(">I4s", 8, b"mdat")),
        (2**32 - 9, struct.pack(">I4s", 2**32 - 1, b"mdat")),
        (2**32 - 8, struct.pack(">I4sQ", 1, b"mdat", 2**32 + 8)),
        (5 * 2**32, struct.pack(">I4sQ", 1, b"mdat", 5 * 2**32 + 16)),
    ],
)
def test_mdat_header_goes_64_bit_when_the_payload_needs_it(payload: int, header: bytes) -> None:
    assert boxwriter.box_header(b"mdat", payload) == header


@pytest.mark.parametrize("duration", [0, 2**32 - 1, 2**32, 2**40])
def test_headers_switch_to_version_1_past_32_bits(duration: int) -> None:
    version = 1 if duration > 2**32 - 1 else 0
    mvhd = Mp4Box.parse(boxwriter.mvhd(15360, duration, 3, created=3_900_000_000))
    assert (mvhd.version, mvhd.timescale, mvhd.duration, mvhd.next_track_ID) == (
        version,
        15360,
        duration,
        3,
    )
    assert list(mvhd.matrix) == list(boxwriter.UNITY_MATRIX)
    tkhd = Mp4Box.parse(boxwriter.tkhd(2, duration, 1920, 1080, volume=0, created=7))
    assert (tkhd.version, tkhd.flags, tkhd.track_ID, tkhd.duration) == (version, 3, 2, duration)
    assert (tkhd.width, tkhd.height) == (1920 << 16, 1080 << 16)
    mdhd = Mp4Box.parse(boxwriter.mdhd(48000, duration, b"\x55\xc4"))
    assert (mdhd.version, mdhd.timescale, mdhd.duration, mdhd.language) == (
        version,
        48000,
        duration,
        "und",
    )


def test_fixed_boxes_parse_with_pymp4() -> None:
    ftyp = Mp4Box.parse(boxwriter.ftyp(b"isom", 0x200, (b"isom", b"iso2", b"avc1", b"mp41")))
    assert ftyp.major_brand == b"isom" and list(ftyp.compatible_brands)[-1] == b"mp41"
    assert Mp4Box.parse(boxwriter.hdlr(b"soun", "SoundHandler")).handler_type == b"soun"
    assert Mp4Box.parse(boxwriter.media_header(b"vide")).type == b"vmhd"
    assert Mp4Box.parse(boxwriter.media_header(b"soun")).type == b"smhd"
    assert boxwriter.media_header(b"text")[4:8] == b"nmhd"
    dinf = boxwriter.dinf()
    dref = Mp4Box.parse(dinf[8:])
    assert dref.type == b"dref" and len(dref.data_entries) == 1


def _init_with_video_edits(edts: bytes) -> bytes:
    """The fixture init with its video trak's edts replaced, every enclosing size fixed."""
    data = bytearray((LADDER_DIR / "0" / "init_0.mp4").read_bytes())
    moov = next(b for b in boxes.iter_boxes(bytes(data)) if b.type == b"moov")
    trak = boxes.require(bytes(data), moov, b"trak")
    old = boxes.require(bytes(data), trak, b"edts")
    delta = len(edts) - old.size
    data[old.start : old.end] = edts
    for outer in (moov, trak):
        struct.pack_into(">I", data, outer.start, outer.size + delta)
    return bytes(data)


def test_the_fixture_init_carries_its_edit_lists() -> None:
    init = parse_init((LADDER_DIR / "2" / "init_2.mp4").read_bytes())
    assert init.video is not None and init.audio is not None
    assert init.video.edits == (Edit(3200, -1), Edit(0, 1024))
    assert init.audio.edits == (Edit(2176, -1), Edit(0, 0))


@pytest.mark.parametrize(
    "entries",
    [
        [(3200, -1), (0, 1024)],  # version 0
        [(2**32, -1), (7, 2**31)],  # version 1: both fields need 64 bits
    ],
)
def test_init_parser_reads_the_edit_lists_the_writer_writes(entries: list[tuple[int, int]]) -> None:
    edts = boxwriter.elst(entries)
    assert edts[16] == (1 if entries[0][0] >= 2**32 else 0)  # elst version byte
    init = parse_init(_init_with_video_edits(edts))
    assert init.video is not None
    assert init.video.edits == tuple(Edit(d, t) for d, t in entries)
