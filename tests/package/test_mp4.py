"""The progressive MP4 layout: box order, exact samples, timeline, ranges, huge files."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import subprocess
from array import array
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.media.model import InitSegment, Track
from packager.package.mp4 import LayoutSegment, Mp4Layout, build_layout
from packager.package.tables import prepare_segment
from tests.mp4_support import (
    AAC_FRAME,
    decode_with_ffmpeg,
    fixture_init,
    fixture_segments,
    read_moov,
    source_sample_hashes,
    top_boxes,
)
from tests.stored_segment import Segment


def _layout(segments: Sequence[Segment]) -> Mp4Layout:
    """Built as a caller with a store would: segments by key, tables prepared at ingest."""
    return build_layout(
        [LayoutSegment(k, s.init, prepare_segment(s.init, s.media)) for k, s in enumerate(segments)]
    )


def _reader(segments: Sequence[Segment]) -> Callable[[Hashable], bytes]:
    def read(key: Hashable) -> bytes:
        assert isinstance(key, int)
        return segments[key].data

    return read


def _body(segments: Sequence[Segment], layout: Mp4Layout | None = None) -> bytes:
    layout = layout or _layout(segments)
    return b"".join(layout.iter_range(read=_reader(segments)))


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
    segments = fixture_segments(1, [0, 1, 2])
    layout = _layout(segments)
    body = _body(segments, layout)
    assert len(body) == layout.size
    assert [b[0] for b in top_boxes(body)] == [b"ftyp", b"moov", b"mdat"]
    assert top_boxes(body)[-1][3] == layout.size
    assert body.startswith(layout.header)


@pytest.mark.parametrize(
    ("rendition", "indexes"), [(0, [0, 1, 2, 3, 4, 5]), (2, [2, 3]), (1, [5, 6, 7])]
)
def test_every_sample_is_the_source_bytes(rendition: int, indexes: list[int]) -> None:
    segments = fixture_segments(rendition, indexes)
    body = _body(segments)
    movie = read_moov(body)
    for handler in ("vide", "soun"):
        got = [
            hashlib.sha256(body[a:b]).hexdigest() for a, b in movie.track(handler).sample_ranges()
        ]
        assert got == source_sample_hashes(segments, handler)


def test_tables_keep_durations_composition_offsets_and_keyframes() -> None:
    segments = fixture_segments(2, [1, 2, 3])
    movie = read_moov(_body(segments))
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
    movie = read_moov(_body(segments))
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
    movie = read_moov(_body(segments))
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
    layout = _layout(segments)
    movie = read_moov(_body(segments, layout))
    video, audio = movie.track("vide"), movie.track("soun")
    assert len(video.chunk_offsets) == len(audio.chunk_offsets) == 4
    assert video.stsc == [(1, 60, 1)]
    for v, a, seg in zip(video.chunk_offsets, audio.chunk_offsets, segments, strict=True):
        assert a == v + seg.media.tracks[0].total_size  # audio right after its segment's video
    # ffmpeg stores each segment's video then audio back to back: one piece per segment, by key.
    pieces = list(layout.pieces_in_range())
    assert pieces[0] == (None, 0, len(layout.header))
    assert [key for key, _, _ in pieces[1:]] == [0, 1, 2, 3]
    for (_, offset, length), seg in zip(pieces[1:], segments, strict=True):
        assert offset == seg.media.tracks[0].offsets[0]
        assert length == sum(t.total_size for t in seg.media.tracks)
    assert layout.keys() == {0, 1, 2, 3}


_RANGE_SEGMENTS = fixture_segments(0, [3, 4])
_RANGE_LAYOUT = _layout(_RANGE_SEGMENTS)
_RANGE_BODY = _body(_RANGE_SEGMENTS, _RANGE_LAYOUT)


@settings(max_examples=300, deadline=None)
@given(st.integers(-10, _RANGE_LAYOUT.size + 10), st.integers(-10, _RANGE_LAYOUT.size + 10))
def test_any_range_of_the_layout_is_that_slice_of_the_file(a: int, b: int) -> None:
    got = b"".join(_RANGE_LAYOUT.iter_range(a, b, _reader(_RANGE_SEGMENTS)))
    assert got == _RANGE_BODY[max(a, 0) : max(b, 0)]
    pieces = list(_RANGE_LAYOUT.pieces_in_range(a, b))
    assert sum(n for _, _, n in pieces) == len(got)


def test_a_range_in_the_middle_reads_only_the_segment_it_covers() -> None:
    segments = fixture_segments(0, list(range(12)))
    layout = _layout(segments)
    k = 7
    first = layout.piece_keys.index(k)
    start = layout.starts[first] + 1000
    asked: list[Hashable] = []

    def read(key: Hashable) -> bytes:
        asked.append(key)
        return _reader(segments)(key)

    views = list(layout.iter_range(start, start + 5000, read))
    assert asked == [k]  # nothing before the range, nothing after it
    source = segments[k].media.tracks[0].offsets[0]  # where the segment's samples begin
    assert [bytes(v) for v in views] == [segments[k].data[source + 1000 : source + 6000]]


def test_a_layout_by_reference_needs_a_reader() -> None:
    with pytest.raises(TypeError, match="pass `read`"):
        b"".join(_RANGE_LAYOUT.iter_range())


def test_stored_segments_still_build_with_views_of_their_bytes() -> None:
    """The compatibility path for today's callers (packager/http): a list of Segment gives the
    same file, its pieces views of the stored bytes, readable without a reader."""
    segments = fixture_segments(1, [2, 3, 4])
    layout = build_layout(segments)
    body = _body(segments)  # the same file through keys and a reader
    assert b"".join(layout.iter_range()) == body
    assert b"".join(layout.iter_range(10, 300_000)) == body[10:300_000]
    assert layout.size == sum(len(p) for p in layout.pieces) == len(body)
    assert all(p.obj is seg.data for p, seg in zip(layout.pieces[1:], segments, strict=True))


def test_a_saved_file_is_a_layout_of_one_piece_that_is_its_own_bytes() -> None:
    """How packager/http/videos.py serves a VOD file it mapped in: key = the view itself."""
    data = bytes(range(256)) * 40
    view = memoryview(data)
    layout = Mp4Layout(b"", (view,), array("Q", [0]), len(view))
    assert b"".join(layout.iter_range()) == data
    assert b"".join(layout.iter_range(100, 5000)) == data[100:5000]
    assert [bytes(p) for p in layout.pieces] == [data]


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
    movie = read_moov(_body(segments))
    video = movie.track("vide")
    assert struct.unpack_from(">I", video.stsd, 12) == (2,)
    assert video.stsc == [(1, 60, 1), (3, 60, 2)]
    assert struct.unpack_from(">I", movie.track("soun").stsd, 12) == (1,)


def test_ffmpeg_decodes_a_clip_across_a_discontinuity_from_zero(
    tmp_path: Path, ffmpeg_exe: str
) -> None:
    segments = fixture_segments(0, [4, 5, 0, 1])
    path = tmp_path / "clip.mp4"
    path.write_bytes(_body(segments))
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
    ours.write_bytes(_body(segments))
    assert _frame_hashes(ffmpeg_exe, ours) == _frame_hashes(ffmpeg_exe, source)
    ours_pcm = _decoded(ffmpeg_exe, ours, "a", "s16le")
    source_pcm = _decoded(ffmpeg_exe, source, "a", "s16le")
    frame = 4  # bytes per stereo s16 sample
    assert len(ours_pcm) == len(source_pcm) - trim * frame
    assert ours_pcm == source_pcm[trim * frame :]
