"""hev1 made hvc1, judged by ffmpeg: real x265 output in, every frame decoded out."""

from __future__ import annotations

import pytest

from packager.media import hevc
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from tests.conftest import Hev1
from tests.media.real_media import (
    box_tree_is_consistent,
    frame_hashes,
    hvcc_arrays,
    with_hvcc_arrays,
)

VPS, SPS, PPS = 32, 33, 34
ENTRY = b"moov/trak/mdia/minf/stbl/stsd/"


def units(arrays: list[tuple[int, list[bytes]]], kind: int) -> list[bytes]:
    return [u for first, us in arrays if first & 0x3F == kind for u in us]


def sample_count(init: bytes, segments: list[bytes]) -> int:
    parsed = parse_init(init)
    return sum(parse_segment(s, parsed).tracks[0].count for s in segments)


def test_sets_only_in_the_samples_move_into_a_complete_hvcc_ffmpeg_decodes(
    hev1: dict[str, Hev1], ffmpeg_exe: str
) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    _, declared = hvcc_arrays(init)
    bare = with_hvcc_arrays(init, [])  # an encoder that leaves every set to the samples
    source = parse_init(bare)
    assert source.codecs.startswith("hev1.")

    out = hevc.as_hvc1(source, segments[0])

    fourcc, arrays = hvcc_arrays(out)
    assert fourcc == b"hvc1"
    # x265 wrote the same sets into the extradata and the samples: they are what moved.
    assert arrays == [(0x80 | kind, units(declared, kind)) for kind in (VPS, SPS, PPS)]
    assert ENTRY + b"hvc1/hvcC" in box_tree_is_consistent(out)
    converted = parse_init(out)
    assert converted.codecs == "hvc1" + source.codecs[4:]  # the header the encoder wrote
    (before,), (after,) = source.tracks, converted.tracks
    assert (after.track_id, after.timescale, after.width, after.height, after.edits) == (
        before.track_id,
        before.timescale,
        before.width,
        before.height,
        before.edits,
    )
    body = b"".join(segments)
    decoded = frame_hashes(ffmpeg_exe, out + body, "0:v")
    assert decoded == frame_hashes(ffmpeg_exe, init + body, "0:v")  # ffmpeg's own file
    assert len(decoded) == sample_count(init, segments) == 60


def test_sets_only_in_the_entry_are_claimed_complete_and_the_sei_left_as_it_was(
    hev1: dict[str, Hev1], ffmpeg_exe: str
) -> None:
    init, segments = hev1["entry_only"].init, hev1["entry_only"].segments
    _, declared = hvcc_arrays(init)
    assert all(not first & 0x80 for first, _ in declared)  # ffmpeg's hev1: incomplete

    out = hevc.as_hvc1(parse_init(init), segments[0])

    fourcc, arrays = hvcc_arrays(out)
    assert fourcc == b"hvc1"
    assert arrays[:3] == [(0x80 | kind, units(declared, kind)) for kind in (VPS, SPS, PPS)]
    assert arrays[3:] == [(f, us) for f, us in declared if f & 0x3F not in (VPS, SPS, PPS)]
    assert arrays[3:], "x265 declares its version in an SEI array"
    assert len(out) == len(init)  # only bits and the fourcc changed
    box_tree_is_consistent(out)
    decoded = frame_hashes(ffmpeg_exe, out + b"".join(segments), "0:v")
    assert len(decoded) == sample_count(init, segments)


def test_an_entry_without_hvcc_gets_one_whose_header_comes_from_the_sps(
    hev1: dict[str, Hev1], ffmpeg_exe: str
) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    without = init.replace(b"hvcC", b"free", 1)
    assert parse_init(without).codecs == "hev1"

    out = hevc.as_hvc1(parse_init(without), segments[0])

    assert parse_init(out).codecs == parse_init(init).codecs.replace("hev1", "hvc1")

    def children(data: bytes, fourcc: bytes) -> list[bytes]:
        inside = ENTRY + fourcc + b"/"
        return [p[len(inside) :] for p in box_tree_is_consistent(data) if p.startswith(inside)]

    assert children(out, b"hvc1") == [b"hvcC", *children(without, b"hev1")]  # first, then the rest
    decoded = frame_hashes(ffmpeg_exe, out + b"".join(segments), "0:v")
    assert len(decoded) == sample_count(init, segments)


def test_no_parameter_set_in_the_entry_or_the_first_segment_stays_hev1(
    hev1: dict[str, Hev1],
) -> None:
    init, segments = hev1["entry_only"].init, hev1["entry_only"].segments
    with pytest.raises(hevc.Unconvertible, match="no parameter sets"):
        hevc.as_hvc1(parse_init(with_hvcc_arrays(init, [])), segments[0])


def test_sets_that_change_stay_hev1(hev1: dict[str, Hev1]) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    other_segments = hev1["other_sets"].segments
    # The entry holds one SPS, the samples another under the same id.
    with pytest.raises(hevc.Unconvertible, match="differ from the sample entry"):
        hevc.as_hvc1(parse_init(init), other_segments[0])
    # Two SPS of one id in the sets to move: which one a picture meant is not known.
    _, declared = hvcc_arrays(init)
    _, other = hvcc_arrays(hev1["other_sets"].init)
    assert units(declared, SPS) != units(other, SPS)
    both = [(VPS, units(declared, VPS)), (SPS, units(declared, SPS) + units(other, SPS))]
    with pytest.raises(hevc.Unconvertible, match="changing"):
        hevc.as_hvc1(parse_init(with_hvcc_arrays(init, both)), segments[0])


def test_a_later_segment_with_other_sets_is_foreign_to_the_converted_init(
    hev1: dict[str, Hev1],
) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    other_segments = hev1["other_sets"].segments
    converted = parse_init(hevc.as_hvc1(parse_init(with_hvcc_arrays(init, [])), segments[0]))
    later = segments[1]
    assert hevc.foreign_sets(converted, later, parse_segment(later, converted)) is None
    other = other_segments[1]
    why = hevc.foreign_sets(converted, other, parse_segment(other, converted))
    assert why == "parameter sets only in-band and changing"


def test_an_unreadable_sps_stays_hev1(hev1: dict[str, Hev1]) -> None:
    init, segments = hev1["entry_only"].init, hev1["entry_only"].segments
    _, declared = hvcc_arrays(init)
    broken = [(VPS, units(declared, VPS)), (SPS, [b"\x42\x01\x01"]), (PPS, units(declared, PPS))]
    with pytest.raises(hevc.Unconvertible, match="unreadable SPS"):
        hevc.as_hvc1(parse_init(with_hvcc_arrays(init, broken)), segments[0])


def test_an_hvcc_whose_arrays_overrun_it_stays_hev1(hev1: dict[str, Hev1]) -> None:
    init, segments = hev1["entry_only"].init, hev1["entry_only"].segments
    lying = bytearray(with_hvcc_arrays(init, []))
    lying[lying.index(b"hvcC") + 4 + 22] = 3  # numOfArrays: 3, and none there
    with pytest.raises(hevc.Unconvertible, match="overrun"):
        hevc.as_hvc1(parse_init(bytes(lying)), segments[0])


def test_a_converted_init_turns_back_to_hev1_with_its_arrays_incomplete(
    hev1: dict[str, Hev1], ffmpeg_exe: str
) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    converted = hevc.as_hvc1(parse_init(with_hvcc_arrays(init, [])), segments[0])

    back = hevc.as_hev1(parse_init(converted))

    fourcc, arrays = hvcc_arrays(back)
    assert fourcc == b"hev1"
    assert arrays == [(first & 0x3F, us) for first, us in hvcc_arrays(converted)[1]]
    box_tree_is_consistent(back)
    decoded = frame_hashes(ffmpeg_exe, back + b"".join(segments), "0:v")
    assert len(decoded) == sample_count(init, segments)


def test_not_hev1_is_a_caller_error(hev1: dict[str, Hev1]) -> None:
    init, segments = hev1["entry_only"].init, hev1["entry_only"].segments
    converted = parse_init(hevc.as_hvc1(parse_init(init), segments[0]))
    with pytest.raises(ValueError, match="not an init"):
        hevc.as_hvc1(converted, segments[0])


def test_a_segment_of_more_nal_units_than_checked_stays_hev1(
    hev1: dict[str, Hev1], monkeypatch: pytest.MonkeyPatch
) -> None:
    init, segments = hev1["in_band"].init, hev1["in_band"].segments
    monkeypatch.setattr(hevc, "MAX_NAL_UNITS", 10)  # the first segment holds 30 pictures
    with pytest.raises(hevc.Unconvertible, match="more than 10 NAL units"):
        hevc.as_hvc1(parse_init(init), segments[0])
