"""Frame-accurate cuts, sans-IO: the wall-clock mapping, the window of frames shown, the HLS
pieces and their bytes, read back with readers that are not the writers'."""

from __future__ import annotations

import hashlib
import itertools
import struct
from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest

from packager.demo import load_ladder
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment
from packager.media.rewrite import avc_parameter_set_ids, merge_avc_configs
from packager.package.cuts import (
    Piece,
    PieceKind,
    Source,
    decode_durations,
    kept_segment,
    plan,
    regions,
    replace_sample_description,
)
from packager.package.frames import SegmentTimes, Window, segment_times, window
from packager.package.tables import prepare_segment
from packager.store.model import SegmentKey, SegmentRef
from tests.mp4_support import top_boxes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
T0 = 1_800_000_000.0
FPS = 30


@cache
def numbered(rendition: int) -> tuple[InitSegment, tuple[bytes, ...]]:
    ladder = load_ladder(FIXTURES / "numbered")[rendition]
    return ladder.parsed_init, ladder.segments


def refs_and_times(rendition: int = 0) -> tuple[list[SegmentRef], dict[int, SegmentTimes]]:
    """The numbered ladder's 6 segments as the store would hold them, starting at T0."""
    init, segments = numbered(rendition)
    refs, times = [], {}
    for i, data in enumerate(segments):
        prepared = prepare_segment(init, parse_segment(data, init))
        ref = SegmentRef(
            key=SegmentKey("demo", str(rendition), i),
            name=f"index{i}.m4s",
            init_id="init",
            start=T0 + 2 * i,
            duration=2.0,
            size=len(data),
            discontinuity=False,
            keyframe=True,
        )
        refs.append(ref)
        times[i] = segment_times(ref.start, init, prepared)
    return refs, times


def cut(first: int, count: int, rendition: int = 0) -> tuple[Window, list[Piece]]:
    refs, times = refs_and_times(rendition)
    found = window([r.duration for r in refs], times, T0 + first / FPS, T0 + (first + count) / FPS)
    assert found is not None
    return found, plan(refs, times, found, found.head_segment)


def test_a_segments_frames_tile_its_span_on_the_wall_clock() -> None:
    _, times = refs_and_times()
    seg = times[1]
    walls = sorted(seg.wall(c) for c in seg.main.composition)
    assert walls[0] == T0 + 2
    assert walls == pytest.approx([T0 + 2 + k / FPS for k in range(60)], abs=1e-6)
    # Audio is placed against the video as the encoder made it: its segments begin a few AAC
    # frames before the video's.
    assert seg.audio is not None
    assert -0.1 < float(seg.audio.at(seg.audio.decode[0])) < 0


@pytest.mark.parametrize(
    ("first", "count"), [(45, 90), (47, 30), (60, 45), (61, 1), (301, 59), (0, 360), (59, 2)]
)
def test_the_window_holds_exactly_the_frames_asked_for(first: int, count: int) -> None:
    found, pieces = cut(first, count)
    assert found.start == pytest.approx(T0 + first / FPS, abs=1e-6)
    assert found.duration == pytest.approx(count / FPS, abs=1e-9)
    assert sum(p.duration for p in pieces) == pytest.approx(count / FPS, abs=1e-9)
    assert pieces[0].start == pytest.approx(found.start, abs=1e-6)


def test_a_time_to_the_millisecond_names_the_frame_it_rounds_to() -> None:
    refs, times = refs_and_times()
    durations = [r.duration for r in refs]
    for frame in (46, 47, 61):
        t = round((T0 + frame / FPS) * 1000) / 1000
        found = window(durations, times, t, t + 1)
        assert found is not None and found.start == pytest.approx(T0 + frame / FPS, abs=1e-6)


def test_cuts_inside_gops_re_encode_only_the_partial_gops() -> None:
    _, pieces = cut(45, 90)  # mid-GOP 0 to mid-GOP 2: the tail is a decode-order prefix
    assert [p.kind for p in pieces] == [PieceKind.ENCODED, PieceKind.SOURCE, PieceKind.KEPT]
    assert pieces[0].frames == (45, 60) and len(pieces[0].pts) == 15
    _, pieces = cut(0, 360)  # whole GOPs: only the audio before the first frame is left out
    assert [p.kind for p in pieces] == [PieceKind.KEPT] + [PieceKind.SOURCE] * 5
    assert pieces[0].parts[0].video == (0, 60)
    _, pieces = cut(60, 45)  # from a keyframe, ending where B-frames need later references
    assert [p.kind for p in pieces] == [PieceKind.ENCODED]
    assert pieces[0].frames == (0, 45)


@pytest.mark.parametrize(("first", "count"), [(45, 90), (47, 30), (1, 358), (60, 45), (59, 2)])
def test_every_audio_frame_goes_to_one_piece_in_order(first: int, count: int) -> None:
    found, pieces = cut(first, count)
    _refs, times = refs_and_times()
    taken: list[tuple[int, int]] = []
    for piece in pieces:
        if piece.kind is PieceKind.SOURCE:
            audio = times[piece.segment].audio
            assert audio is not None
            taken += [(piece.segment, k) for k in range(audio.count)]
        for part in piece.parts if piece.kind is not PieceKind.SOURCE else ():
            taken += [(part.segment, k) for k in range(*part.audio)]
    assert taken == sorted(taken) and len(set(taken)) == len(taken)
    for (s1, k1), (s2, k2) in itertools.pairwise(taken):
        assert (s2, k2) == (s1, k1 + 1) or (s2 == s1 + 1 and k2 == 0), (s1, k1, s2, k2)
    # Within half an AAC frame of the video at its start, and at its end when that is cut.
    first_seg, first_k = taken[0]
    last_seg, last_k = taken[-1]
    audio_first, audio_last = times[first_seg].audio, times[last_seg].audio
    assert audio_first is not None and audio_last is not None
    begins = times[first_seg].start + float(audio_first.at(audio_first.decode[first_k]))
    last_start = times[last_seg].start + float(audio_last.at(audio_last.decode[last_k]))
    ends = last_start + audio_last.durations[last_k] / audio_last.timescale
    half = 512 / 48000
    assert abs(begins - found.start) <= half + 1e-6
    if found.tail != times[found.tail_segment].end:
        assert abs(ends - (found.start + found.duration)) <= half + 1e-6


def test_a_kept_piece_is_the_stored_samples_byte_for_byte() -> None:
    init, segments = numbered(0)
    _, pieces = cut(45, 90)
    kept = pieces[2]
    assert kept.kind is PieceKind.KEPT
    (part,) = kept.parts
    data = segments[part.segment]
    media = parse_segment(data, init)
    video, audio = media.track(1), media.track(2)
    assert video is not None and audio is not None
    made = kept_segment(kept, [Source(data, init, video, audio)], 7)
    out = parse_segment(made, init)
    out_video, out_audio = out.track(1), out.track(2)
    assert out_video is not None and out_audio is not None

    def hashes(blob: bytes, offsets: list[int], sizes: list[int]) -> list[str]:
        return [
            hashlib.sha256(blob[o : o + n]).hexdigest() for o, n in zip(offsets, sizes, strict=True)
        ]

    lo, hi = part.video
    assert hashes(made, list(out_video.offsets), list(out_video.sizes)) == hashes(
        data, list(video.offsets[lo:hi]), list(video.sizes[lo:hi])
    )
    assert out_video.base_decode_time == video.base_decode_time + sum(video.durations[:lo])
    assert list(out_video.cts_offsets) == list(video.cts_offsets[lo:hi])
    a_lo, a_hi = part.audio
    assert out_audio.count == a_hi - a_lo
    assert out_audio.base_decode_time == audio.base_decode_time + sum(audio.durations[:a_lo])


def test_re_encoded_frames_decode_in_order_and_no_later_than_shown() -> None:
    for first, count in [(45, 90), (47, 30), (59, 2), (61, 1)]:
        _, pieces = cut(first, count)
        for piece in pieces:
            if piece.kind is not PieceKind.ENCODED:
                continue
            durations = decode_durations(piece)
            assert all(d >= 1 for d in durations)
            decode = [piece.pts[0] + sum(durations[:k]) for k in range(len(durations))]
            assert all(d <= p for d, p in zip(decode, piece.pts, strict=True))
            if piece.decode_end is not None and len(piece.pts) >= 3:
                assert decode[-1] + durations[-1] <= piece.decode_end


@pytest.mark.parametrize("first", [45, 47, 60, 61])
def test_a_growing_clips_pieces_never_change_as_segments_arrive(first: int) -> None:
    """What a playlist listed while the clip grew is what it lists once complete."""
    refs, times = refs_and_times()
    t0, t1 = T0 + first / FPS, T0 + 10.5
    durations = [r.duration for r in refs]
    final = window(durations, times, t0, t1)
    assert final is not None
    complete = plan(refs, times, final, final.head_segment)
    for arrived in range(2, 6):
        so_far = {i: t for i, t in times.items() if i < arrived}
        found = window(durations[:arrived], so_far, t0, t1)
        assert found is not None
        growing = plan(refs[:arrived], so_far, found, found.head_segment)
        listed = [p for p in growing if refs[p.parts[-1].segment].end <= t1]
        assert listed == complete[: len(listed)], arrived


def test_the_regions_span_the_boundary_gops_only() -> None:
    refs, times = refs_and_times()
    found = window([2.0] * 6, times, T0 + 1.5, T0 + 11.5)
    assert found is not None
    assert regions(refs, found, 0) == [(0, 0), (5, 5)]


# ---- init segments: a new decoder configuration in the source's init ----------------------


def avcc_sets(stsd: bytes) -> tuple[list[bytes], list[bytes]]:
    """The SPS and PPS NAL units of the avcC in an stsd, read with struct (not the writer)."""
    at = stsd.index(b"avcC") + 4
    count = stsd[at + 5] & 0x1F
    pos = at + 6
    sps = []
    for _ in range(count):
        (n,) = struct.unpack_from(">H", stsd, pos)
        sps.append(stsd[pos + 2 : pos + 2 + n])
        pos += 2 + n
    count = stsd[pos]
    pos += 1
    pps = []
    for _ in range(count):
        (n,) = struct.unpack_from(">H", stsd, pos)
        pps.append(stsd[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return sps, pps


def test_an_init_takes_another_sample_description_and_keeps_everything_else() -> None:
    init, _ = numbered(0)
    other = parse_init((FIXTURES / "ladder" / "2" / "init_2.mp4").read_bytes())
    replaced = parse_init(replace_sample_description(init.data, 1, other.main.stsd))
    assert replaced.main.stsd == other.main.stsd
    assert replaced.audio is not None and init.audio is not None
    assert replaced.audio.stsd == init.audio.stsd
    for a, b in zip(replaced.tracks, init.tracks, strict=True):
        assert (a.track_id, a.timescale, a.edits, a.handler) == (
            b.track_id,
            b.timescale,
            b.edits,
            b.handler,
        )
    assert replaced.movie_timescale == init.movie_timescale
    boxes = top_boxes(replace_sample_description(init.data, 1, other.main.stsd))
    assert [b[0] for b in boxes] == [b"ftyp", b"moov"]
    with pytest.raises(ValueError, match="track 9"):
        replace_sample_description(init.data, 9, other.main.stsd)


def test_merged_avc_configurations_carry_both_parameter_sets() -> None:
    init, _ = numbered(0)
    other = parse_init((FIXTURES / "numbered" / "1" / "init_1.mp4").read_bytes())
    merged = merge_avc_configs(init.main.stsd, other.main.stsd)
    sps, pps = avcc_sets(merged)
    own_sps, own_pps = avcc_sets(init.main.stsd)
    other_sps, other_pps = avcc_sets(other.main.stsd)
    assert sps == own_sps + other_sps and pps == own_pps + other_pps
    assert struct.unpack_from(">I", merged)[0] == len(merged)
    reparsed = parse_init(replace_sample_description(init.data, 1, merged))
    assert reparsed.main.codec == init.main.codec  # profile and level from the first SPS
    assert avc_parameter_set_ids(init.main.stsd) == ({0}, {0})


def test_fraction_free_times_for_the_whole_ladder() -> None:
    """The mapping holds on both renditions: every frame of the loop at k/30 s."""
    for rendition in (0, 1):
        _, times = refs_and_times(rendition)
        walls = sorted(t.wall(c) for t in times.values() for c in t.main.composition)
        assert len(walls) == 360
        assert max(abs(w - (T0 + k / FPS)) for k, w in enumerate(walls)) < 1e-6
        assert all(isinstance(t.main.offset, Fraction) for t in times.values())
