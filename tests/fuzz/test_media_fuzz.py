"""Hostile ISO-BMFF against the box parsers: a consistent result or BadMedia, quickly, in bounded memory.

Inputs are the real fixture init and media segments, mutated (see strategies.py): sizes that lie
(0, 1 with huge or tiny 64-bit sizes, past the end, below the header), truncation at every box
boundary, nesting 10,000 deep, trun sample counts up to 2**32 - 1 with and without per-sample
fields, random tfhd/trun flags, tfdt versions 0 and 1.
"""

from __future__ import annotations

import time
import tracemalloc
from bisect import bisect_right
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packager.errors import BadMedia
from packager.media import hevc
from packager.media.boxes import box32, iter_boxes
from packager.media.codecs import avc_codec, hevc_codec, mp4a_codec
from packager.media.fragment import MAX_SAMPLES_PER_SEGMENT, parse_segment
from packager.media.init import MAX_EDITS, MAX_TRACKS, parse_init
from packager.media.model import InitSegment, SegmentMedia
from packager.media.rewrite import shift_decode_times
from tests.conftest import Hev1
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import count_case, examples
from tests.media.real_media import with_hvcc_arrays

pytestmark = pytest.mark.fuzz

TIME_LIMIT = 1.0  # seconds per parse
# What a parse may allocate beyond its input: sample tables are ~21 bytes per sample, so even
# the 200,000-sample limit needs ~5 MB; 50 MB leaves room and still catches a lying count.
MEMORY_LIMIT = 50 << 20

T = TypeVar("T")


def parse_or_bad_media(parse: Callable[[], T]) -> T | BadMedia:
    """The parser's result or its BadMedia; any other exception fails the property.

    Run twice: timed as it runs in production, then under tracemalloc (which slows
    allocation-heavy Python several times) for its peak allocation."""
    t0 = time.perf_counter()
    try:
        result: T | BadMedia = parse()
    except BadMedia as exc:
        result = exc
    seconds = time.perf_counter() - t0
    assert seconds < TIME_LIMIT, f"parse took {seconds:.2f} s"
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    again: T | BadMedia
    try:
        again = parse()
    except BadMedia as exc:
        again = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if started_here:
            tracemalloc.stop()
    assert type(again) is type(result), "the same input parsed twice gave different outcomes"
    assert peak < MEMORY_LIMIT, f"parse allocated {peak / 1e6:.1f} MB"
    return result


# ---- what a consistent result is -------------------------------------------------------------


def check_init(init: InitSegment) -> None:
    assert 1 <= len(init.tracks) <= MAX_TRACKS
    ids = [t.track_id for t in init.tracks]
    assert len(set(ids)) == len(ids) and all(0 < i < 2**32 for i in ids)
    assert init.movie_timescale > 0
    for t in init.tracks:
        assert t.timescale > 0
        assert isinstance(t.codec, str) and isinstance(t.handler, str)
        assert len(t.edits) <= MAX_EDITS
        assert len(t.language) == 2
        # The stsd is reused verbatim in progressive MP4s: it must be one whole box.
        (stsd,) = iter_boxes(t.stsd)
        assert stsd.type == b"stsd" and stsd.end == len(t.stsd)
    assert init.main in init.tracks


def check_segment(media: SegmentMedia, data: bytes, init: InitSegment) -> None:
    """Every sample lies inside an mdat of the segment; the per-field arrays agree."""
    mdats = sorted((b.payload_start, b.end) for b in iter_boxes(data) if b.type == b"mdat")
    starts = [lo for lo, _ in mdats]
    total = 0
    assert media.tracks, "a parsed segment has samples"
    for track in media.tracks:
        assert init.track(track.track_id) is not None
        n = track.count
        total += n
        assert len(track.durations) == len(track.offsets) == len(track.cts_offsets) == n
        assert len(track.sync) == n
        assert track.base_decode_time >= 0
        for off, size in zip(track.offsets, track.sizes, strict=True):
            k = bisect_right(starts, off) - 1
            assert k >= 0 and off + size <= mdats[k][1], (off, size, mdats)
        assert set(track.sync) <= {0, 1}
    assert sum(t.count for t in media.tracks) > 0
    assert total <= MAX_SAMPLES_PER_SEGMENT


# ---- properties ------------------------------------------------------------------------------


@examples(3)
@given(data=st.one_of(fz.hostile_segment(), fz.hostile_init(), st.binary(max_size=256)))
def test_box_walk_tiles_the_buffer_or_refuses(data: bytes) -> None:
    count_case("media: iter_boxes")
    result = parse_or_bad_media(lambda: list(iter_boxes(data)))
    if isinstance(result, BadMedia):
        return
    pos = 0
    for box in result:
        assert box.start == pos and box.header_size in (8, 16)
        assert box.end - box.start >= box.header_size
        if box.end - box.payload_start < 1 << 16:
            leaf = parse_or_bad_media(lambda b=box: box32(data, b))  # type: ignore[misc]
            assert isinstance(leaf, (bytes, BadMedia))
        pos = box.end
    assert pos == len(data)


@examples(6)
@given(data=fz.hostile_init())
def test_hostile_init_parses_consistently_or_is_bad_media(data: bytes) -> None:
    count_case("media: parse_init")
    result = parse_or_bad_media(lambda: parse_init(data))
    if not isinstance(result, BadMedia):
        check_init(result)


@examples(8)
@given(rendition=fz.rendition_ids, d=st.data())
def test_hostile_segment_parses_consistently_or_is_bad_media(
    rendition: str, d: st.DataObject
) -> None:
    count_case("media: parse_segment")
    init = parse_init(fz.init_bytes(rendition))
    data = d.draw(fz.hostile_segment(rendition))
    result = parse_or_bad_media(lambda: parse_segment(data, init))
    if not isinstance(result, BadMedia):
        check_segment(result, data, init)


@examples(3)
@given(init_data=fz.hostile_init(), rendition=fz.rendition_ids, index=fz.segment_indexes)
def test_real_segment_against_a_hostile_init(init_data: bytes, rendition: str, index: int) -> None:
    """An init that parses but lies (trex defaults, track ids, timescales) meets real fragments."""
    count_case("media: segment vs hostile init")
    init = parse_or_bad_media(lambda: parse_init(init_data))
    if isinstance(init, BadMedia):
        return
    data = fz.segment_bytes(rendition, index)
    result = parse_or_bad_media(lambda: parse_segment(data, init))
    if not isinstance(result, BadMedia):
        check_segment(result, data, init)


def flipped(d: st.DataObject, data: bytes, lo: int, hi: int) -> bytes:
    """`data` with a few bytes of [lo, hi) changed."""
    buf = bytearray(data)
    for _ in range(d.draw(st.integers(1, 3))):
        buf[d.draw(st.integers(lo, hi - 1))] ^= d.draw(st.integers(1, 255))
    return bytes(buf)


@examples(3)
@given(d=st.data())
def test_hev1_becomes_hvc1_or_says_why(hev1: dict[str, Hev1], d: st.DataObject) -> None:
    """Real x265 hev1 output, damaged: a consistent hvc1 init, or Unconvertible (the reason
    the stream's JSON gives) or BadMedia, never another exception."""
    count_case("media: hev1 as hvc1")
    made = hev1[d.draw(st.sampled_from(["in_band", "entry_only"]))]
    init_data = made.init if d.draw(st.booleans()) else with_hvcc_arrays(made.init, [])
    segment = made.segments[0]
    # One kind of damage a case, so that most cases still reach the conversion.
    how = d.draw(st.sampled_from(["tree", "hvcC", "hvcC", "samples", "samples"]))
    if how == "tree":
        marks: list[int] = []
        init_data = fz.serialize(d.draw(fz.mutate_tree(fz.parse_tree(init_data))), marks)
        init_data = d.draw(fz.byte_damage(init_data, marks))
    elif how == "hvcC":  # its header, array counts, NAL lengths and the sets themselves
        at = init_data.index(b"hvcC")
        init_data = flipped(d, init_data, at + 4, at - 4 + int.from_bytes(init_data[at - 4 : at]))
    else:  # NAL unit lengths and headers, in-band parameter sets
        mdat = segment.index(b"mdat")
        segment = flipped(d, segment, mdat + 4, min(len(segment), mdat + 4 + 4096))
    init = parse_or_bad_media(lambda: parse_init(init_data))
    if isinstance(init, BadMedia) or not hevc.is_hev1(init.video):
        return
    media = parse_or_bad_media(lambda: parse_segment(segment, init))
    if isinstance(media, BadMedia):
        return

    def convert() -> bytes | None:
        try:
            return hevc.as_hvc1(init, segment, media)
        except hevc.Unconvertible:
            return None

    out = parse_or_bad_media(convert)
    if isinstance(out, bytes):
        converted = parse_or_bad_media(lambda: parse_init(out))
        if not isinstance(converted, BadMedia):
            assert converted.video is not None and converted.video.codec.startswith("hvc1")
            assert [t.track_id for t in converted.tracks] == [t.track_id for t in init.tracks]


@examples(2)
@given(
    kind=st.sampled_from(["avc", "hevc", "esds"]),
    payload=st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=8).map(lambda b: b"\x01" + b),
        st.binary(max_size=40).map(lambda b: b"\x00\x00\x00\x00\x03" + b),
    ),
)
def test_codec_records_give_a_string_or_bad_media(kind: str, payload: bytes) -> None:
    count_case("media: codec strings")
    read = {
        "avc": lambda: avc_codec("avc1", payload),
        "hevc": lambda: hevc_codec("hvc1", payload),
        "esds": lambda: mp4a_codec(memoryview(payload)),
    }[kind]
    result = parse_or_bad_media(read)
    assert isinstance(result, (str, BadMedia))


@examples(2)
@given(data=fz.hostile_segment(), shift=st.integers(0, 2**40))
def test_shifting_decode_times_keeps_the_size_or_is_bad_media(data: bytes, shift: int) -> None:
    count_case("media: shift_decode_times")
    result = parse_or_bad_media(lambda: shift_decode_times(data, {1: shift, 2: shift}))
    if not isinstance(result, BadMedia):
        assert len(result) == len(data)


# ---- exhaustive, not random: every box boundary, every box's size lie -------------------------


def _files() -> list[tuple[str, bytes, bool]]:
    """(label, bytes, is an init) of rendition 0: the ladder's renditions share one structure."""
    return [("init", fz.init_bytes("0"), True)] + [
        (f"index{i}", fz.segment_bytes("0", i), False) for i in (0, 5)
    ]


def _parse(data: bytes, is_init: bool) -> None:
    init = parse_init(fz.init_bytes("0"))
    result = parse_or_bad_media(lambda: parse_init(data) if is_init else parse_segment(data, init))
    if isinstance(result, InitSegment):
        check_init(result)
    elif isinstance(result, SegmentMedia):
        check_segment(result, data, init)


@pytest.mark.parametrize("label, data, is_init", _files(), ids=[f[0] for f in _files()])
def test_truncation_at_every_box_boundary_is_bad_media_or_consistent(
    label: str, data: bytes, is_init: bool
) -> None:
    marks: list[int] = []
    fz.serialize(fz.parse_tree(data), marks)
    for cut in sorted({m + d for m in marks for d in (-1, 0, 1, 8, 9) if 0 <= m + d < len(data)}):
        count_case("media: every truncation")
        _parse(data[:cut], is_init)


@pytest.mark.parametrize("label, data, is_init", _files(), ids=[f[0] for f in _files()])
def test_every_box_lying_about_its_size_is_bad_media_or_consistent(
    label: str, data: bytes, is_init: bool
) -> None:
    tree = fz.parse_tree(data)
    for k in range(len(fz.flatten(tree))):
        for large in (False, True):
            lies = fz.SIZE_LIES_64 if large else fz.SIZE_LIES_32
            choices: list[int | str] = [*lies, "true+1", "true-1"]
            for lie in choices:
                count_case("media: every size lie")
                copy = fz.parse_tree(data)
                parent, i = fz.flatten(copy)[k]
                node = parent[i]
                node.large = large
                if isinstance(lie, str):
                    true = len(fz.serialize([node]))
                    node.size_lie = true + (1 if lie == "true+1" else -1)
                else:
                    node.size_lie = lie
                _parse(fz.serialize(copy), is_init)
