"""Per-segment tables prepared at ingest, and their join: checked against the samples they were
made from, decoded here with struct and expanded with plain loops, not by the code under test."""

from __future__ import annotations

import struct
from fractions import Fraction
from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.media.model import SegmentMedia, TrackSamples
from packager.media.prepared import PreparedSegment, PreparedTrack
from packager.package.tables import (
    TableJoin,
    prepare_segment,
    reencode,
    trim,
)
from tests.mp4_support import SEGMENTS_PER_RENDITION, fixture_segments
from tests.package.synthetic import TrackPlan, ladder_init, samples, segment
from tests.stored_segment import Segment

FIXTURES = [
    seg
    for rendition in range(3)
    for seg in fixture_segments(rendition, range(SEGMENTS_PER_RENDITION))
]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0] + 1, v)
        else:
            out.append((1, v))
    return out


def _entries(data: bytes | memoryview, fmt: str) -> list[tuple[int, ...]]:
    return list(struct.iter_unpack(fmt, data))


def _expand(entries: list[tuple[int, ...]]) -> list[int]:
    return [v for count, v in entries for _ in range(count)]


def _assert_describes(prepared: PreparedTrack, s: TrackSamples) -> None:
    """Everything the prepared track says, against the samples themselves."""
    n = s.count
    assert prepared.track_id == s.track_id
    assert prepared.base_decode_time == s.base_decode_time
    assert prepared.count == n
    assert prepared.duration == sum(s.durations)
    assert prepared.last_duration == s.durations[-1]
    assert prepared.sizes == struct.pack(f">{n}I", *s.sizes)
    assert prepared.sample_size == (s.sizes[0] if len(set(s.sizes)) == 1 else -1)
    stts = _entries(prepared.stts, ">II")
    assert stts == _runs(list(s.durations))  # maximal runs, in order
    ctts = _entries(prepared.ctts, ">Ii")
    assert ctts == _runs(list(s.cts_offsets))
    assert (prepared.cts_min, prepared.cts_max) == (min(s.cts_offsets), max(s.cts_offsets))
    assert (prepared.cts_first, prepared.cts_last) == (s.cts_offsets[0], s.cts_offsets[-1])
    dts = list(accumulate(s.durations, initial=0))
    assert prepared.composition_start == min(
        d + c for d, c in zip(dts, s.cts_offsets, strict=False)
    )
    numbers = [i for i, flag in enumerate(s.sync) if flag]
    if len(numbers) == n:
        assert prepared.sync is None
    else:
        assert prepared.sync is not None
        assert [v for (v,) in _entries(prepared.sync, ">I")] == numbers
    # Chunks: in decode order, each the bytes of its samples back to back, split where not.
    lo = 0
    for count, start, end, _ in struct.iter_unpack("<4q", prepared.chunks):
        hi = lo + count
        assert start == s.offsets[lo] and end == s.offsets[hi - 1] + s.sizes[hi - 1]
        assert all(s.offsets[i + 1] == s.offsets[i] + s.sizes[i] for i in range(lo, hi - 1))
        if hi < n:
            assert s.offsets[hi] != s.offsets[hi - 1] + s.sizes[hi - 1]
        lo = hi
    assert lo == n


@pytest.mark.parametrize("seg", FIXTURES, ids=lambda seg: seg.name)
def test_a_prepared_segment_describes_every_sample_of_the_fixture_ladder(seg: Segment) -> None:
    prepared = prepare_segment(seg.init, seg.media)
    assert prepared.track_ids == tuple(t.track_id for t in seg.media.tracks)
    for track, s in zip(prepared.tracks, seg.media.tracks, strict=True):
        _assert_describes(track, s)
    # Its pieces are its chunks in its own byte order, neighbours joined: here one per segment.
    first = min(t.offsets[0] for t in seg.media.tracks)
    total = sum(t.total_size for t in seg.media.tracks)
    assert _int64s(prepared.piece_starts) == [first]
    assert _int64s(prepared.piece_lengths) == [total] == [prepared.payload]


def _int64s(data: bytes) -> list[int]:
    return [v for (v,) in struct.iter_unpack("<q", data)]


def _track(plan: TrackPlan, track_id: int = 2) -> TrackSamples:
    return samples(track_id, plan, 1000)[0]


def test_chunks_split_where_the_bytes_do_and_are_placed_in_byte_order() -> None:
    init = ladder_init()
    video = TrackPlan(0, [512] * 4, [10, 20, 30, 40], gaps=[0, 0, 5, 0])
    audio = TrackPlan(0, [1024] * 3, [7, 8, 9])
    seg = segment(init, [(2, audio), (1, video)])  # audio's bytes first
    prepared = prepare_segment(init, seg.media)
    v, a = prepared.tracks
    _assert_describes(v, seg.media.tracks[0])
    _assert_describes(a, seg.media.tracks[1])
    # Audio [100, 124), video [124, 154) then a 5-byte hole, [159, 229).
    assert [row[3] for row in struct.iter_unpack("<4q", a.chunks)] == [0]
    assert [row[3] for row in struct.iter_unpack("<4q", v.chunks)] == [24, 54]
    assert _int64s(prepared.piece_starts) == [100, 159]
    assert _int64s(prepared.piece_lengths) == [54, 70]
    assert prepared.payload == 124


def test_a_segment_whose_track_is_not_in_its_init_is_refused() -> None:
    init = ladder_init()
    media = SegmentMedia((_track(TrackPlan(0, [1], [1]), track_id=9),))
    with pytest.raises(ValueError, match="not in the segment's init"):
        prepare_segment(init, media)


def _synthetic_segments() -> list[PreparedSegment]:
    init = ladder_init()
    return [
        prepare_segment(init, segment(init, plans).media)
        for plans in (
            [(1, TrackPlan(5, [512, 0, 1], [3, 0, 9], cts=[-5, 0, 7], sync=[0, 0, 0]))],
            [(1, TrackPlan(2**40, [2**31] * 3, [1, 1, 1])), (2, TrackPlan(0, [1024], [4]))],
        )
    ]


def test_prepared_segments_survive_a_shared_store() -> None:
    """to_bytes/from_bytes: what Redis would hold gives back equal tables, and damaged or
    foreign bytes are refused, not misread."""
    for prepared in [prepare_segment(s.init, s.media) for s in FIXTURES] + _synthetic_segments():
        data = prepared.to_bytes()
        assert PreparedSegment.from_bytes(data) == prepared
    first = FIXTURES[0]
    blob = prepare_segment(first.init, first.media).to_bytes()
    for bad in (blob[:-1], blob[:20], blob + b"\0", b"\2" + blob[1:], b""):
        with pytest.raises(ValueError):
            PreparedSegment.from_bytes(bad)


def _sliced(s: TrackSamples, skip: int) -> TrackSamples:
    return TrackSamples(
        s.track_id,
        s.base_decode_time + sum(s.durations[:skip]),
        s.durations[skip:],
        s.sizes[skip:],
        s.offsets[skip:],
        s.cts_offsets[skip:],
        s.sync[skip:],
    )


TRIMS = [
    TrackPlan(0, [1024] * 6, [5, 6, 7, 8, 9, 10]),  # within the first runs: bytes sliced
    TrackPlan(0, [1024] * 4 + [512], [4] * 5),  # sizes all alike
    TrackPlan(0, [1024] * 5, [9, 4, 4, 4, 4]),  # alike once the first is dropped
    TrackPlan(0, [1024, 512, 1024, 1024], [3, 3, 9, 9]),  # past the first stts run
    TrackPlan(0, [1024] * 4, [3, 5, 7, 9], cts=[0, 5, 5, 5]),  # past the first ctts run
    TrackPlan(0, [1024] * 4, [3, 5, 7, 9], sync=[1, 0, 1, 1]),  # sync samples numbered
    TrackPlan(0, [1024] * 5, [3, 5, 7, 9, 2], gaps=[0, 0, 4, 0, 1]),  # several chunks
]


@pytest.mark.parametrize("plan", TRIMS)
@pytest.mark.parametrize("skip", [1, 2, 3])
def test_dropping_leading_frames_gives_the_tables_of_what_is_left(
    plan: TrackPlan, skip: int
) -> None:
    s = _track(plan)
    prepared = prepare_segment(ladder_init(), SegmentMedia((s,))).tracks[0]
    for kept in (trim(prepared, skip), reencode(prepared, skip)):
        _assert_describes(kept, _sliced(s, skip))


def test_a_new_clock_rounds_each_chunk_on_its_running_sum() -> None:
    s = _track(
        TrackPlan(
            7,
            [1001, 1001, 1002, 1001, 1001],
            [5] * 5,
            cts=[0, 2002, 1001, 0, 3],
            gaps=[0, 0, 0, 8, 0],
        )
    )
    prepared = prepare_segment(ladder_init(), SegmentMedia((s,))).tracks[0]
    ratio = Fraction(48000, 30000)
    scaled = reencode(prepared, 0, ratio)
    expected = []
    for chunk in ([1001, 1001, 1002], [1001, 1001]):  # the bytes break after the third sample
        ends = [round(t * ratio) for t in accumulate(chunk, initial=0)]
        expected += [b - a for a, b in pairwise(ends)]
    assert _expand(_entries(scaled.stts, ">II")) == expected
    assert _expand(_entries(scaled.ctts, ">Ii")) == [round(c * ratio) for c in s.cts_offsets]
    assert scaled.sizes == prepared.sizes


# ---- the join ----------------------------------------------------------------------------------

# durations, composition offsets, sizes, sync flags, byte gaps, then the last sample's new
# duration (a boundary edit) or None
Piece = tuple[list[int], list[int], list[int], list[int], list[int], int | None]
PIECE = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0, 1, 512, 1024]), min_size=n, max_size=n),
        st.lists(st.sampled_from([-2, 0, 0, 3]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0, 5, 5, 9]), min_size=n, max_size=n),
        st.lists(st.sampled_from([1, 1, 0]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0, 0, 2]), min_size=n, max_size=n),  # byte gaps: chunks
        st.none() | st.sampled_from([1, 7, 1024]),  # then the last sample's new duration
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECE, min_size=1, max_size=8))
def test_joined_tables_are_one_pass_over_all_the_samples(pieces: list[Piece]) -> None:
    """Whatever the pieces and the boundary edits, the joined entries are what one pass over
    the concatenated samples (with the edits applied) would write."""
    join = TableJoin()
    durations: list[int] = []
    cts: list[int] = []
    sizes: list[int] = []
    sync: list[int] = []
    chunks: list[tuple[int, int]] = []  # (samples, offset) expected
    base = 0
    for k, (d, c, z, y, gaps, new_last) in enumerate(pieces):
        s = _track(TrackPlan(0, d, z, cts=c, sync=y, gaps=gaps))
        prepared = prepare_segment(ladder_init(), SegmentMedia((s,))).tracks[0]
        join.add(prepared, entry=1 + k % 2, base=base)
        for count, _, _, place in struct.iter_unpack("<4q", prepared.chunks):
            chunks.append((count, base + place))
        base += 10_000
        durations += d
        cts += c
        sizes += z
        sync += y
        if new_last is not None:
            join.set_last_duration(new_last)
            durations[-1] = new_last
        assert join.duration == sum(durations)
        assert join.last_duration == durations[-1]
    tables = join.finish()
    assert tables.sample_count == len(durations)
    assert tables.duration == sum(durations)
    count, parts = tables.stts
    assert _entries(b"".join(parts), ">II") == _runs(durations) and count == len(_runs(durations))
    shift = max(0, -min(cts))
    assert tables.cts_shift == shift
    shifted = [v + shift for v in cts]
    if any(shifted):
        assert tables.ctts is not None
        count, parts = tables.ctts
        assert _entries(b"".join(parts), ">II") == _runs(shifted) and count == len(_runs(shifted))
    else:
        assert tables.ctts is None
    if all(sync):
        assert tables.stss is None
    else:
        assert tables.stss is not None
        assert [v for (v,) in _entries(tables.stss, ">I")] == [
            i + 1 for i, f in enumerate(sync) if f
        ]
    if len(set(sizes)) == 1 and sizes[0] > 0:
        assert tables.sample_size == sizes[0]
    else:
        assert tables.sample_size == 0
        assert b"".join(tables.sizes) == struct.pack(f">{len(sizes)}I", *sizes)
    assert list(tables.chunk_offsets) == [offset for _, offset in chunks]
    expected_stsc: list[tuple[int, int, int]] = []
    entries = [1 + k % 2 for k, p in enumerate(pieces) for _ in range(_chunk_count(p))]
    for number, ((n, _), entry) in enumerate(zip(chunks, entries, strict=True), start=1):
        if not expected_stsc or expected_stsc[-1][1:] != (n, entry):
            expected_stsc.append((number, n, entry))
    assert _entries(tables.stsc, ">III") == expected_stsc


def _chunk_count(piece: Piece) -> int:
    gaps = piece[4]
    return 1 + sum(1 for g in gaps[1:] if g)


def test_a_boundary_edit_can_join_the_run_before() -> None:
    """[1024 x3, 512] whose last frame is lengthened to 1024: one run of four, not three runs."""
    join = TableJoin()
    s = _track(TrackPlan(0, [1024, 1024, 1024, 512], [1, 2, 3, 4]))
    join.add(prepare_segment(ladder_init(), SegmentMedia((s,))).tracks[0], 1, 0)
    join.set_last_duration(1024)
    count, parts = join.finish().stts
    assert (count, b"".join(parts)) == (1, struct.pack(">II", 4, 1024))
