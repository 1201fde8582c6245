"""The progressive MP4 follows the source's own timestamps (tfdt), whatever the encoder left
between segments: overlaps, gaps, jumps, restarts, an hour of loops.

Every check reads the MP4 back with tests/mp4_support.py's reader (not the writer) and compares
each sample's place in the file's presentation timeline with its place in the source's: the
difference must be one constant for every sample of every track, so audio and video stay as
the encoder made them, with nothing carried forward from one boundary to the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Hashable, Sequence
from fractions import Fraction
from pathlib import Path

import pytest

from packager.media.fragment import parse_segment
from packager.media.model import Track
from packager.media.rewrite import shift_decode_times
from packager.package.mp4 import LayoutSegment, build_layout
from packager.package.tables import prepare_segment
from tests.mp4_support import (
    AAC_FRAME,
    decode_with_ffmpeg,
    fixture_segments,
    read_moov,
    source_sample_hashes,
)
from tests.stored_segment import Segment

AUDIO, VIDEO = 2, 1  # track ids of the fixture ladder
TICK = Fraction(1, 48000)  # the audio's (and the movie's) tick: the finest the file can say


def _body(segments: Sequence[Segment]) -> bytes:
    """The file as a caller with a store builds and reads it: by key, tables from ingest."""
    layout = build_layout(
        [LayoutSegment(k, s.init, prepare_segment(s.init, s.media)) for k, s in enumerate(segments)]
    )

    def read(key: Hashable) -> bytes:
        assert isinstance(key, int)
        return segments[key].data

    return b"".join(layout.iter_range(read=read))


def _shifted(segments: list[Segment], shifts: Sequence[dict[int, int]]) -> list[Segment]:
    """The segments with each one's tracks moved by its own tfdt shift (ticks per track id)."""
    out = []
    for seg, shift in zip(segments, shifts, strict=True):
        data = shift_decode_times(seg.data, shift) if shift else seg.data
        out.append(dataclasses.replace(seg, data=data, media=parse_segment(data, seg.init)))
    return out


def _source_time(track: Track, movie_timescale: int, dts: int) -> Fraction:
    """Seconds in the source's presentation terms: the init's edit list applied to a decode
    time (an empty edit delays the track; the media edit's start is its time zero)."""
    empty, media_time = Fraction(0), 0
    for edit in track.edits:
        if edit.media_time == -1:
            empty += Fraction(edit.duration, movie_timescale)
        else:
            media_time = edit.media_time
            break
    return empty + Fraction(dts - media_time, track.timescale)


def _offsets(segments: Sequence[Segment], body: bytes) -> dict[str, list[tuple[int, Fraction]]]:
    """Per handler, per sample the file carries: (source segment index, file time - source time),
    both decode times with each side's edit list applied."""
    movie = read_moov(body)
    out: dict[str, list[tuple[int, Fraction]]] = {}
    for handler in ("vide", "soun"):
        read = movie.track(handler)
        # The file's samples are the source's in order, less dropped frames: match them by hash.
        expected = source_sample_hashes(segments, handler)
        got = [hashlib.sha256(body[a:b]).hexdigest() for a, b in read.sample_ranges()]
        assert got == expected
        empty = Fraction(read.edits[0][0], movie.timescale) if read.edits[0][1] == -1 else 0
        media_time = next(t for _, t in read.edits if t != -1)
        file_times = []
        dts = 0
        for duration in read.durations:
            file_times.append(empty + Fraction(dts - media_time, read.timescale))
            dts += duration
        sources: list[tuple[int, Fraction]] = []
        end: int | None = None
        for k, seg in enumerate(segments):
            track = next(t for t in seg.init.tracks if t.handler == handler)
            samples = seg.media.track(track.track_id)
            assert samples is not None
            t = samples.base_decode_time
            for duration in samples.durations:
                overlap = end - t if end is not None else 0
                if 2 * overlap > track.timescale:  # time went back: a restart
                    overlap = 0
                if not (handler == "soun" and 2 * overlap > duration):  # as the file drops
                    sources.append((k, _source_time(track, seg.init.movie_timescale, t)))
                    end = t + duration
                t += duration
        out[handler] = [(k, f - s) for f, (k, s) in zip(file_times, sources, strict=True)]
    return out


def _constant(offsets: dict[str, list[tuple[int, Fraction]]], within: Fraction = TICK) -> Fraction:
    """The one offset every sample of every track has (to `within`), or fail naming the sample."""
    first = offsets["vide"][0][1]
    for handler, rows in offsets.items():
        for i, (k, offset) in enumerate(rows):
            assert abs(offset - first) <= within, (
                f"{handler} sample {i} (segment {k}) is {float(offset - first) * 1000:+.3f} ms off"
            )
    return first


def test_an_uninterrupted_clip_keeps_every_sample_at_its_source_time() -> None:
    _constant(_offsets(segments := fixture_segments(1, [0, 1, 2, 3, 4, 5]), _body(segments)))


@pytest.mark.parametrize(
    ("name", "audio_shifts", "dropped"),
    [
        # One AAC frame too early (overlap) or too late (gap) at alternate boundaries.
        ("frame-overlaps-and-gaps", [0, -1024, 0, 1024, 1024, 0], 2),
        # Overlaps of less than half a frame are absorbed, of more than half dropped.
        ("partial-overlaps", [0, -300, -300, -1000, -1000, -1000], 1),
        ("gaps-of-odd-sizes", [0, 7, 300, 2000, 2000, 5000], 0),
    ],
)
def test_audio_overlaps_and_gaps_are_absorbed_where_they_occur(
    name: str, audio_shifts: list[int], dropped: int
) -> None:
    segments = _shifted(fixture_segments(0, range(6)), [{AUDIO: s} for s in audio_shifts])
    body = _body(segments)
    offsets = _offsets(segments, body)
    source_frames = sum(seg.media.tracks[1].count for seg in segments)
    assert len(offsets["soun"]) == source_frames - dropped
    _constant(offsets)  # the last segment's samples are where the source puts them: no drift


def test_a_timestamp_jump_is_followed() -> None:
    """An encoder that stalled for half a second: both tracks jump; the file jumps with them."""
    jump = {VIDEO: 7680, AUDIO: 24000}
    segments = _shifted(fixture_segments(0, range(6)), [{}, {}, {}, jump, jump, jump])
    body = _body(segments)
    _constant(_offsets(segments, body))
    movie = read_moov(body)
    assert Fraction(movie.duration, movie.timescale) == Fraction(12) + Fraction(1, 2)


def test_a_restart_goes_on_from_the_video_end_with_the_new_a_v_offset() -> None:
    """tfdt back to 0 (an encoder restart): the video goes on without a gap, so the file lasts
    what the playlists say; the audio keeps its offset to the video as the new run has it."""
    segments = fixture_segments(0, [0, 1, 2, 0, 1])  # a restart after three segments
    body = _body(segments)
    offsets = _offsets(segments, body)
    before = {h: [o for k, o in rows if k < 3] for h, rows in offsets.items()}
    after = {h: [o for k, o in rows if k >= 3] for h, rows in offsets.items()}
    first = _constant({h: [(0, o) for o in rows] for h, rows in before.items()})
    second = _constant({h: [(3, o) for o in rows] for h, rows in after.items()})
    assert second - first == 6  # the new run starts where the video ended: 3 x 2 s
    movie = read_moov(body)
    assert Fraction(movie.duration, movie.timescale) == 10
    video = movie.track("vide")
    source = [d for seg in segments for d in seg.media.tracks[0].durations]
    assert video.durations == source  # not a tick of video added or lost


def test_a_new_init_with_another_clock_follows_the_timeline() -> None:
    """The second segment comes with an init at twice the video clock (and timestamps to match):
    its durations are rescaled and its samples land where the source says."""
    segments = fixture_segments(0, [0, 1])
    doubled_tracks = tuple(
        dataclasses.replace(
            t,
            timescale=2 * t.timescale,
            edits=tuple(
                dataclasses.replace(e, media_time=2 * e.media_time if e.media_time > 0 else -1)
                for e in t.edits
            ),
        )
        if t.is_video
        else t
        for t in segments[1].init.tracks
    )
    doubled = dataclasses.replace(segments[1].init, tracks=doubled_tracks)
    video = segments[1].media.tracks[0]
    twice = dataclasses.replace(
        video,
        base_decode_time=2 * video.base_decode_time,
        durations=type(video.durations)("I", (2 * d for d in video.durations)),
        cts_offsets=type(video.cts_offsets)("i", (2 * c for c in video.cts_offsets)),
    )
    media = dataclasses.replace(segments[1].media, tracks=(twice, segments[1].media.tracks[1]))
    segments[1] = dataclasses.replace(segments[1], init=doubled, media=media)
    read = read_moov(_body(segments)).track("vide")
    assert read.timescale == 15360
    assert read.durations == [512] * 120


def test_an_hour_of_loops_keeps_audio_and_video_in_sync_to_the_end(hour: list[Segment]) -> None:
    body = _body(hour)
    offsets = _offsets(hour, body)
    _constant(offsets)
    movie = read_moov(body)
    video, audio = movie.track("vide"), movie.track("soun")
    assert Fraction(movie.duration, movie.timescale) == 3600
    # Start, middle and end: the audio's media covers the video's to within one AAC frame.
    video_end = Fraction(sum(video.durations), video.timescale)
    audio_end = Fraction(sum(audio.durations), audio.timescale)
    assert abs(audio_end - video_end) <= AAC_FRAME


def test_ffmpeg_sees_audio_and_video_end_together_after_a_minute_of_loops(
    hour: list[Segment], tmp_path: Path, ffmpeg_exe: str
) -> None:
    """The symptom users saw: 122.219 s of audio in a 120 s clip. ffmpeg is the judge."""
    path = tmp_path / "minute.mp4"
    path.write_bytes(_body(hour[:30]))  # 60 s, five loop points
    seen = decode_with_ffmpeg(ffmpeg_exe, str(path))
    assert seen.errors == ""
    assert seen.video_first == 0 and abs(seen.audio_first) <= AAC_FRAME
    assert seen.video_end == pytest.approx(60, abs=0.001)
    assert abs(seen.audio_end - seen.video_end) <= AAC_FRAME
