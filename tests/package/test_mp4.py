"""The progressive MP4 layout: box order, exact samples, timeline, ranges, huge files."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import subprocess
from array import array
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.media.model import InitSegment, Track
from packager.package.mp4 import Mp4Layout, TrackTable, build_layout, progressive_header
from packager.store.segment import Segment
from tests.mp4_support import (
    AAC_FRAME,
    decode_with_ffmpeg,
    fixture_init,
    fixture_segments,
    read_moov,
    source_sample_hashes,
    top_boxes,
)


def _body(layout: Mp4Layout) -> bytes:
    return b"".join(layout.iter_range())


def _shown_at(track: Track, init: InitSegment, composition: int) -> Fraction:
    """Where the source shows a composition time: its init's edit list applied."""
    empty = sum(e.duration for e in track.edits if e.media_time == -1)
    media_time = next((e.media_time for e in track.edits if e.media_time != -1), 0)
    return Fraction(empty, init.movie_timescale) + Fraction(
        composition - media_time, track.timescale
    )


def _first_shown(seg: Segment, handler: str) -> Fraction:
    track = next(t for t in seg.init.tracks if t.handler == handler)
    samples = seg.media.track(track.track_id)
    assert samples is not None
    dts = samples.base_decode_time
    first = min(dts + sum(samples.durations[:i]) + c for i, c in enumerate(samples.cts_offsets))
    return _shown_at(track, seg.init, first)


def test_moov_comes_before_mdat_and_the_boxes_tile_the_file() -> None:
    layout = build_layout(fixture_segments(1, [0, 1, 2]))
    body = _body(layout)
    assert len(body) == layout.size
    assert [b[0] for b in top_boxes(body)] == [b"ftyp", b"moov", b"mdat"]
    assert top_boxes(body)[-1][3] == layout.size
    assert body.startswith(layout.header)


@pytest.mark.parametrize(
    ("rendition", "indexes"), [(0, [0, 1, 2, 3, 4, 5]), (2, [2, 3]), (1, [5, 6, 7])]
)
def test_every_sample_is_the_source_bytes(rendition: int, indexes: list[int]) -> None:
    segments = fixture_segments(rendition, indexes)
    body = _body(build_layout(segments))
    movie = read_moov(body)
    for handler in ("vide", "soun"):
        got = [
            hashlib.sha256(body[a:b]).hexdigest() for a, b in movie.track(handler).sample_ranges()
        ]
        assert got == source_sample_hashes(segments, handler)


def test_tables_keep_durations_composition_offsets_and_keyframes() -> None:
    segments = fixture_segments(2, [1, 2, 3])
    movie = read_moov(_body(build_layout(segments)))
    video, audio = movie.track("vide"), movie.track("soun")
    source_video = [seg.media.tracks[0] for seg in segments]
    assert video.durations == [d for s in source_video for d in s.durations]
    assert video.cts == [c for s in source_video for c in s.cts_offsets]
    assert video.sync == [1, 61, 121]
    assert audio.sync is None  # every AAC frame is a sync sample: no stss
    assert audio.durations == [d for seg in segments for d in seg.media.tracks[1].durations]
    assert (video.width, video.height) == (1920, 1080)
    assert video.stsd == fixture_init(2).video.stsd  # type: ignore[union-attr]


@pytest.mark.parametrize("first", [0, 1, 2, 4])
def test_video_and_audio_are_shown_from_zero_in_the_source_sync(first: int) -> None:
    segments = fixture_segments(2, [first, first + 1])
    movie = read_moov(_body(build_layout(segments)))
    video, audio = movie.track("vide"), movie.track("soun")
    # No empty edit: both tracks start at 0.
    assert len(video.edits) == 1 and len(audio.edits) == 1
    (_, video_start), (_, audio_start) = video.edits[0], audio.edits[0]
    # Video starts at its first shown frame: the B-frame delay of its first GOP.
    assert video_start == min(d + c for d, c in zip(_dts(video.durations), video.cts, strict=True))
    # Audio is trimmed to the source instant where that frame is shown: sync as in the source.
    source_video = _first_shown(segments[0], "vide")
    source_audio = _first_shown(segments[0], "soun")
    assert source_audio + Fraction(audio_start, 48000) == source_video
    assert 0 <= audio_start < 4 * 1024


def _dts(durations: list[int]) -> list[int]:
    out, t = [], 0
    for d in durations:
        out.append(t)
        t += d
    return out


def test_durations_are_exact() -> None:
    segments = fixture_segments(1, [1, 2, 3, 4])
    movie = read_moov(_body(build_layout(segments)))
    video, audio = movie.track("vide"), movie.track("soun")
    clip_seconds = Fraction(sum(s.main.duration for s in segments), 15360)
    assert movie.timescale == 15360
    assert Fraction(movie.duration, movie.timescale) == clip_seconds == 8
    assert video.tkhd_duration == movie.duration == video.edits[0][0]
    assert video.media_duration == sum(video.durations)
    assert audio.media_duration == sum(audio.durations)
    # Audio is shown up to the source's last sample, never past the video's end.
    assert audio.tkhd_duration <= movie.duration
    shown = Fraction(audio.media_duration - audio.edits[0][1], 48000)
    assert abs(Fraction(audio.tkhd_duration, 15360) - shown) <= Fraction(1, 15360)


def test_chunks_interleave_per_segment_and_coalesce_into_one_piece_per_segment() -> None:
    segments = fixture_segments(0, [0, 1, 2, 3])
    layout = build_layout(segments)
    movie = read_moov(_body(layout))
    video, audio = movie.track("vide"), movie.track("soun")
    assert len(video.chunk_offsets) == len(audio.chunk_offsets) == 4
    assert video.stsc == [(1, 60, 1)]
    for v, a, seg in zip(video.chunk_offsets, audio.chunk_offsets, segments, strict=True):
        assert a == v + seg.media.tracks[0].total_size  # audio right after its segment's video
    # ffmpeg stores each segment's video then audio back to back: one view per segment.
    assert len(layout.pieces) == 1 + len(segments)
    for piece, seg in zip(layout.pieces[1:], segments, strict=True):
        assert piece.obj is seg.data  # a view of the stored bytes, not a copy
        assert len(piece) == sum(t.total_size for t in seg.media.tracks)


_RANGE_LAYOUT = build_layout(fixture_segments(0, [3, 4]))
_RANGE_BODY = _body(_RANGE_LAYOUT)


@settings(max_examples=300, deadline=None)
@given(st.integers(-10, _RANGE_LAYOUT.size + 10), st.integers(-10, _RANGE_LAYOUT.size + 10))
def test_any_range_of_the_layout_is_that_slice_of_the_file(a: int, b: int) -> None:
    assert b"".join(_RANGE_LAYOUT.iter_range(a, b)) == _RANGE_BODY[max(a, 0) : max(b, 0)]


def test_a_range_in_the_middle_reads_only_the_pieces_it_covers() -> None:
    segments = fixture_segments(0, list(range(12)))
    layout = build_layout(segments)
    k = 7
    first = next(i for i, p in enumerate(layout.pieces) if p.obj is segments[k].data)
    start = layout.starts[first] + 1000
    views = list(layout.iter_range(start, start + 5000))
    assert len(views) == 1
    assert views[0].obj is segments[k].data
    source = segments[k].media.tracks[0].offsets[0]  # where the segment's samples begin
    assert bytes(views[0]) == segments[k].data[source + 1000 : source + 6000]


def _table(track: Track, count: int, size: int, duration: int, chunks: int) -> TrackTable:
    per = count // chunks
    return TrackTable(
        track=track,
        sample_entries=track.stsd[16:],
        entry_count=1,
        durations=array("I", [duration] * count),
        sizes=array("I", [size] * count),
        cts_offsets=array("i", [0] * count),
        sync=array("B", [1] * count),
        chunk_samples=array("I", [per] * chunks),
        chunk_entries=array("I", [1] * chunks),
        chunk_offsets=array("Q", [k * per * size for k in range(chunks)]),
        empty=0,
        media_time=0,
        edit_duration=count * duration,
    )


def test_a_file_past_4_gib_gets_co64_and_a_64_bit_mdat_header() -> None:
    """Numbers only: the table builder never needs the bytes it describes."""
    video = fixture_init(0).video
    assert video is not None
    table = _table(video, count=1200, size=4 << 20, duration=512, chunks=40)  # 4.7 GiB
    payload = 1200 * (4 << 20)
    header = progressive_header([table], 15360, payload)
    moov = next(b for b in top_boxes(header[: header.index(b"mdat") - 4]) if b[0] == b"moov")
    mdat_at = moov[3]
    assert struct.unpack_from(">I4sQ", header, mdat_at) == (1, b"mdat", 16 + payload)
    assert len(header) == mdat_at + 16
    track = read_moov(header[:mdat_at]).tracks[0]
    assert track.co64
    assert track.chunk_offsets == [len(header) + o for o in table.chunk_offsets]
    assert max(track.chunk_offsets) > 2**32


def test_a_file_below_4_gib_keeps_stco_and_a_32_bit_mdat_header() -> None:
    video = fixture_init(0).video
    assert video is not None
    table = _table(video, count=900, size=4 << 20, duration=512, chunks=30)  # 3.5 GiB
    header = progressive_header([table], 15360, 900 * (4 << 20))
    assert struct.unpack_from(">4s", header, len(header) - 4) == (b"mdat",)
    track = read_moov(header[: len(header) - 8]).tracks[0]
    assert not track.co64


def test_durations_past_32_bits_get_version_1_headers() -> None:
    audio = fixture_init(0).audio
    assert audio is not None
    table = _table(audio, count=4, size=10, duration=2**31, chunks=1)  # 2**33 ticks
    header = progressive_header([table], 48000, 40)
    movie = read_moov(header[: len(header) - 8])
    assert movie.duration == 2**33
    track = movie.tracks[0]
    assert track.media_duration == track.tkhd_duration == 2**33
    assert track.edits == [(2**33, 0)]


def _with_stsd(init: InitSegment, tweak: bytes) -> InitSegment:
    tracks = tuple(
        dataclasses.replace(t, stsd=t.stsd[: -len(tweak)] + tweak) if t.is_video else t
        for t in init.tracks
    )
    return dataclasses.replace(init, tracks=tracks)


def test_a_new_init_with_another_sample_description_adds_an_stsd_entry() -> None:
    segments = fixture_segments(0, [0, 1, 2, 3])
    same_bytes = dataclasses.replace(segments[0].init)  # re-sent init: equal, not identical
    other = _with_stsd(segments[0].init, b"\x00")
    segments[1] = dataclasses.replace(segments[1], init=same_bytes)
    segments[2] = dataclasses.replace(segments[2], init=other)
    segments[3] = dataclasses.replace(segments[3], init=other)
    movie = read_moov(_body(build_layout(segments)))
    video = movie.track("vide")
    assert struct.unpack_from(">I", video.stsd, 12) == (2,)
    assert video.stsc == [(1, 60, 1), (3, 60, 2)]
    assert struct.unpack_from(">I", movie.track("soun").stsd, 12) == (1,)


def test_ffmpeg_decodes_a_clip_across_a_discontinuity_from_zero(
    tmp_path: Path, ffmpeg_exe: str
) -> None:
    segments = fixture_segments(0, [4, 5, 0, 1])
    path = tmp_path / "clip.mp4"
    path.write_bytes(_body(build_layout(segments)))
    seen = decode_with_ffmpeg(ffmpeg_exe, str(path))
    assert seen.errors == ""
    assert seen.start == 0 and seen.video_first == 0
    assert abs(seen.audio_first) <= AAC_FRAME
    assert seen.duration == pytest.approx(8.0, abs=0.034)


def _decoded(ffmpeg: str, path: Path, stream: str, fmt: str) -> bytes:
    return subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-map", f"0:{stream}", "-f", fmt, "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def _frame_hashes(ffmpeg: str, path: Path) -> list[str]:
    """md5 of each decoded picture, without its timestamps (the source's do not start at 0)."""
    lines = _decoded(ffmpeg, path, "v", "framemd5").decode().splitlines()
    return [line.rsplit(",", 1)[1].strip() for line in lines if not line.startswith("#")]


@pytest.mark.parametrize(("indexes", "trim"), [([0, 1], 1024), ([1, 2], 2816)])
def test_decoded_sound_and_pictures_are_the_source_from_its_first_shown_frame(
    tmp_path: Path, ffmpeg_exe: str, indexes: list[int], trim: int
) -> None:
    """Sync, sample for sample: the source (init + fragments, its own edit lists applied by
    ffmpeg) and our file decode to the same frames, and to the same PCM once the audio the
    source plays before its first picture (`trim` samples: AAC priming, audio cut before the
    keyframe) is skipped."""
    segments = fixture_segments(0, indexes)
    source, ours = tmp_path / "source.mp4", tmp_path / "ours.mp4"
    source.write_bytes(fixture_init(0).data + b"".join(s.data for s in segments))
    ours.write_bytes(_body(build_layout(segments)))
    assert _frame_hashes(ffmpeg_exe, ours) == _frame_hashes(ffmpeg_exe, source)
    ours_pcm = _decoded(ffmpeg_exe, ours, "a", "s16le")
    source_pcm = _decoded(ffmpeg_exe, source, "a", "s16le")
    frame = 4  # bytes per stereo s16 sample
    assert len(ours_pcm) == len(source_pcm) - trim * frame
    assert ours_pcm == source_pcm[trim * frame :]
