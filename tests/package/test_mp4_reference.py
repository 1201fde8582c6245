"""The MP4 built from per-segment tables is the one the per-sample builder made, byte for byte:
same header, same pieces, on the fixture ladder, on every timeline case the builder handles, on
long and huge synthetic clips, and on random timelines."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packager.media.model import Edit, InitSegment, Track
from packager.package.mp4 import LayoutSegment, Mp4Layout, build_layout
from packager.package.tables import prepare_segment
from tests.mp4_support import fixture_segments, read_moov, top_boxes
from tests.package import reference_mp4
from tests.package.synthetic import (
    FakeSegment,
    TrackPlan,
    ladder_init,
    reclocked,
    segment,
    shifted,
    with_clock,
    with_stsd,
)
from tests.stored_segment import Segment

AUDIO, VIDEO = 2, 1  # track ids of the fixture ladder


def layout_segments(segments: Sequence[FakeSegment | Segment]) -> list[LayoutSegment]:
    """LayoutSegments keyed by position, with their tables prepared as ingest would."""
    return [
        LayoutSegment(k, s.init, prepare_segment(s.init, s.media)) for k, s in enumerate(segments)
    ]


def assert_same_as_reference(
    segments: Sequence[FakeSegment | Segment], created: float = 0.0
) -> Mp4Layout:
    """Build with both builders: the headers are equal, and so are the pieces (segment, start,
    end) and the sizes. Returns the new layout."""
    expected = reference_mp4.build_layout(segments, created)
    layout = build_layout(layout_segments(segments), created)
    assert layout.header == expected.header
    assert piece_list(layout) == expected.pieces
    assert layout.size == expected.size
    return layout


def piece_list(layout: Mp4Layout) -> list[tuple[object, int, int]]:
    """(key, start, end) of every piece after the header, empty ones included."""
    assert layout.offsets is not None and layout.piece_keys[0] is None
    ends = [*layout.starts[2:], layout.size]
    return [
        (key, offset, offset + end - start)
        for key, offset, start, end in zip(
            layout.piece_keys[1:], layout.offsets[1:], layout.starts[1:], ends, strict=True
        )
    ]


@pytest.mark.parametrize("rendition", [0, 1, 2])
@pytest.mark.parametrize(
    "indexes",
    [
        [0, 1, 2, 3, 4, 5],  # one loop of the ladder
        [2, 3],  # from the middle
        [3],  # one segment
        [4, 5, 0, 1],  # time goes back: a discontinuity
        [0, 1, 2, 0, 1],  # an encoder restart
        list(range(4, 20)),  # loop points: an AAC frame overlaps and is dropped
    ],
)
def test_the_fixture_ladder_gives_the_reference_bytes(rendition: int, indexes: list[int]) -> None:
    assert_same_as_reference(fixture_segments(rendition, indexes), created=1_800_000_000.5)


@pytest.mark.parametrize(
    "audio_shifts",
    [
        [0, -1024, 0, 1024, 1024, 0],  # a frame early or late at alternate boundaries
        [0, -300, -300, -1000, -1000, -1000],  # absorbed when under half a frame, else dropped
        [0, 7, 300, 2000, 2000, 5000],  # gaps of odd sizes
        [0, -30000, 0, 0, 0, 0],  # more than half a second early: a restart for audio
        [0, 0, 0, 480001, 0, 0],  # more than 10 s late: a restart
    ],
)
def test_audio_gaps_and_overlaps_give_the_reference_bytes(audio_shifts: list[int]) -> None:
    segments = shifted(fixture_segments(0, range(6)), [{AUDIO: s} for s in audio_shifts])
    assert_same_as_reference(segments)


@pytest.mark.parametrize(
    "video_shifts",
    [
        [0, 0, 0, 7680, 7680, 7680],  # a half-second stall of both tracks (audio below)
        [0, 1, -1, 511, -511, 0],  # jitter absorbed in the boundary frame
        [0, -600, 0, 0, 0, 0],  # overlapping more than a frame: a restart on the video's end
    ],
)
def test_video_jumps_and_jitter_give_the_reference_bytes(video_shifts: list[int]) -> None:
    shifts = [{VIDEO: v, AUDIO: v * 48000 // 15360} for v in video_shifts]
    assert_same_as_reference(shifted(fixture_segments(1, range(6)), shifts))


def test_a_new_init_with_another_clock_gives_the_reference_bytes() -> None:
    segments = fixture_segments(0, [0, 1, 2, 3])
    segments[1] = reclocked(segments[1], "vide", 2)
    segments[2] = reclocked(segments[2], "soun", 3)
    segments[3] = reclocked(reclocked(segments[3], "vide", 2), "soun", 2)
    assert_same_as_reference(segments)


def test_new_sample_descriptions_give_the_reference_bytes() -> None:
    segments = fixture_segments(0, [0, 1, 2, 3, 4])
    other = with_stsd(segments[0].init, "vide", b"\x00")
    segments[1] = dataclasses.replace(segments[1], init=dataclasses.replace(segments[0].init))
    segments[2] = dataclasses.replace(segments[2], init=other)
    segments[3] = dataclasses.replace(segments[3], init=other)
    assert_same_as_reference(segments)


def test_an_hour_of_demo_loops_gives_the_reference_bytes(hour: list[Segment]) -> None:
    assert_same_as_reference(hour)


# ---- synthetic clips: tables without bytes --------------------------------------------------


def _steady(init: InitSegment, count: int, video_size: int = 20_000) -> list[FakeSegment]:
    """`count` 2 s segments of 30 fps video with B-frame offsets and 48 kHz AAC, back to back."""
    out = []
    video_dts = audio_dts = 0
    for k in range(count):
        audio_frames = 94 if k % 3 else 93
        video = TrackPlan(
            video_dts,
            [512] * 60,
            [video_size + (i * 7919) % 5000 for i in range(60)],
            cts=[1024, 2560, 1024, 0, 512] * 12,
            sync=[1] + [0] * 59,
        )
        audio = TrackPlan(
            audio_dts, [1024] * audio_frames, [300 + i % 11 for i in range(audio_frames)]
        )
        out.append(segment(init, [(VIDEO, video), (AUDIO, audio)]))
        video_dts += 60 * 512
        audio_dts += 1024 * audio_frames
    return out


def test_an_hour_of_synthetic_tables_gives_the_reference_bytes() -> None:
    layout = assert_same_as_reference(_steady(ladder_init(), 1800))
    movie = read_moov(layout.header[: layout.header.rindex(b"mdat") - 4])
    assert movie.duration == 3600 * 15360


def test_a_clip_past_4_gib_gets_co64_and_a_64_bit_mdat_header() -> None:
    """Tables only: 4.7 GiB of media that exists nowhere."""
    segments = _steady(ladder_init(), 40, video_size=2 << 20)
    layout = assert_same_as_reference(segments)
    header = layout.header
    assert layout.size > 2**32 + 2**29
    moov = next(b for b in top_boxes(header[: header.rindex(b"mdat") - 4]) if b[0] == b"moov")
    assert header[moov[3] : moov[3] + 16] == (1).to_bytes(4, "big") + b"mdat" + (
        layout.size - moov[3]
    ).to_bytes(8, "big")
    video = read_moov(header[: moov[3]]).track("vide")
    assert video.co64 and max(video.chunk_offsets) > 2**32


def test_a_clip_below_4_gib_keeps_stco_and_a_32_bit_mdat_header() -> None:
    segments = _steady(ladder_init(), 30, video_size=2 << 20)
    layout = assert_same_as_reference(segments)
    assert 2**31 < layout.size < 2**32
    header = layout.header
    assert header[-4:] == b"mdat"
    assert not read_moov(header[:-8]).track("vide").co64


def test_durations_past_32_bits_get_version_1_headers() -> None:
    audio = ladder_init().audio
    assert audio is not None
    init = dataclasses.replace(ladder_init(), tracks=(audio,))
    segments = [
        segment(init, [(AUDIO, TrackPlan(k * 2**32, [2**31, 2**31], [10, 10]))]) for k in range(2)
    ]
    layout = assert_same_as_reference(segments)
    movie = read_moov(layout.header[:-8])
    assert movie.duration == 2**33
    track = movie.tracks[0]
    assert track.media_duration == track.tkhd_duration == 2**33
    assert track.edits == [(2**33, 0)]


def test_a_track_of_empty_samples_lists_their_sizes() -> None:
    """The one place the reference was wrong: every sample 0 bytes gave stsz a shared size of 0
    and no table, which a reader takes for a table that is missing (§8.7.3.2)."""
    init = ladder_init()
    plans = [(VIDEO, TrackPlan(0, [512, 512], [5, 9])), (AUDIO, TrackPlan(0, [1024] * 3, [0] * 3))]
    layout = build_layout(layout_segments([segment(init, plans)]))
    audio = read_moov(layout.header[:-8]).track("soun")
    assert audio.sizes == [0, 0, 0]


# ---- the integer regime at its edges ---------------------------------------------------------


def _pair(
    init: InitSegment, video: tuple[int, list[int]], audio: tuple[int, list[int]]
) -> FakeSegment:
    """A segment of (tfdt, durations) per track, sizes 10 bytes."""
    plans = [
        (VIDEO, TrackPlan(video[0], video[1], [10] * len(video[1]))),
        (AUDIO, TrackPlan(audio[0], audio[1], [10] * len(audio[1]))),
    ]
    return segment(init, plans)


def _edge_clip(
    first: InitSegment,
    second: InitSegment,
    video_jump: int,
    audio_jump: int,
    video_last: int = 512,
    audio_last: int = 1024,
) -> list[FakeSegment]:
    """Five segments: two of `first`, then three of `second` (their regime set by the third),
    the fourth `jump` ticks after the third's end, whose last samples last `*_last` ticks."""
    out = []
    v, a = 100_000, 300_000
    for k in range(5):
        if k == 3:
            v, a = v + video_jump, a + audio_jump
        vd = [512, 512, video_last if k == 2 else 512]
        ad = [1024, 1024, audio_last if k == 2 else 1024]
        out.append(_pair(first if k < 2 else second, (v, vd), (a, ad)))
        v, a = v + sum(vd), a + sum(ad)
    return out


# (video jump, audio jump) at the fourth segment, in each track's ticks: on each side of
# MAX_FOLLOWED_GAP and MAX_DROPPED_OVERLAP; the audio edges with video a tick off, or a
# restart would find the same shift and hide which side of the edge was taken.
EDGES = {
    "audio overlapping by exactly half a second": (1, -24000),
    "audio overlapping by a tick more": (1, -24001),
    "video 10 s late exactly": (153_600, 480_000),
    "video a tick more than 10 s late": (153_601, 480_001),
    "audio 10 s late exactly": (-1, 480_000),
    "audio a tick more": (-1, 480_001),
}
SECONDS = ["same", "third of a tick", "half a tick", "a tick and a bit"]


@pytest.mark.parametrize("second", SECONDS)
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_the_follow_thresholds_give_the_reference_bytes(edge: str, second: str) -> None:
    video_jump, audio_jump = EDGES[edge]
    assert_same_as_reference(_edge_clip(ladder_init(), VARIANTS[second], video_jump, audio_jump))


@pytest.mark.parametrize("second", SECONDS)
@pytest.mark.parametrize(("video_last", "audio_last"), [(1, 1024), (0, 1024), (2, 0), (512, 1)])
@pytest.mark.parametrize("jump", [0, 1, -1])
def test_short_boundary_samples_give_the_reference_bytes(
    second: str, video_last: int, audio_last: int, jump: int
) -> None:
    """A boundary sample of 0, 1 or 2 ticks (the third segment's last): whether video follows
    (gap * ts > 1 - last) and audio keeps its frame (last + delta >= 1) hang on the fraction of
    a tick the timeline sits at, and on the exact delta (round half to even)."""
    clip = _edge_clip(ladder_init(), VARIANTS[second], jump, jump, video_last, audio_last)
    assert_same_as_reference(clip)


# ---- random timelines -------------------------------------------------------------------------


def _edited(
    init: InitSegment, movie_timescale: int, video_empty: int, audio_empty: int
) -> InitSegment:
    """The init with other empty edits, in another movie timescale: segments of it start at a
    fraction of a tick from where the ladder's own init puts them (the regime's phi)."""
    tracks = tuple(
        dataclasses.replace(
            t,
            edits=(
                Edit(video_empty if t.is_video else audio_empty, -1),
                *(e for e in t.edits if e.media_time != -1),
            ),
        )
        for t in init.tracks
    )
    return dataclasses.replace(init, tracks=tracks, movie_timescale=movie_timescale)


def _variants() -> dict[str, InitSegment]:
    base = ladder_init()
    video, audio = base.tracks
    extra = dataclasses.replace(audio, track_id=3)
    return {
        "third of a tick": _edited(base, 46080, 3 * 3200 // 1 + 1, 2176 * 46080 // 48000 + 1),
        "half a tick": _edited(base, 30720, 2 * 1024 + 1, 2 * 2176 * 30720 // 96000 + 1),
        "a tick and a bit": _edited(base, 1000, 67, 46),
        "same": base,
        "copy": dataclasses.replace(base),  # re-sent: equal, not the same object
        "stsd": with_stsd(base, "vide", b"\x01"),
        "video clock": with_clock(base, "vide", 2),
        "audio clock": with_clock(base, "soun", 2),
        "swapped": dataclasses.replace(base, tracks=(audio, video)),
        "extra track": dataclasses.replace(base, tracks=(video, audio, extra)),
        "no audio": dataclasses.replace(base, tracks=(video,)),
    }


VARIANTS = _variants()
# 300 in the fast loop; a longer hunt: TIMELINE_EXAMPLES=5000 (about a minute and a half)
TIMELINE_EXAMPLES = int(os.environ.get("TIMELINE_EXAMPLES", "300"))
# Ticks between a track's end and its next tfdt; 10**6 stands for a restart at 0. 160_000 and
# 500_000 jump past MAX_FOLLOWED_GAP for video, or for both tracks.
JITTER = [0, 0, 0, 0, 1, -1, 2, -2, 300, -300, 1024, -1024, 7680, -20000, -24000, -24001]
JITTER += [153_600, 153_601, 160_000, 480_000, 480_001, 500_000, 10**6]


@st.composite
def timelines(draw: st.DrawFn) -> list[FakeSegment]:
    """A few short segments with everything an encoder may do between them: gaps, overlaps,
    restarts, zero and one-tick durations, negative composition offsets, sync patterns,
    non-contiguous sample bytes, a new init (clock, description, track order, tracks)."""
    out = []
    ends: dict[str, int] = {"vide": 10**6, "soun": 3 * 10**6}
    for _ in range(draw(st.integers(1, 7))):
        name = draw(st.sampled_from(sorted(VARIANTS)))
        init = VARIANTS[name]
        plans = []
        for track in init.tracks:
            plans.append((track.track_id, _track_plan(draw, track, ends)))
        if draw(st.booleans()):
            plans.reverse()  # audio bytes before video bytes
        out.append(segment(init, plans))
    return out


def _track_plan(draw: st.DrawFn, track: Track, ends: dict[str, int]) -> TrackPlan:
    video = track.is_video
    n = draw(st.integers(0, 5))
    durations = draw(
        st.lists(
            st.sampled_from([512, 512, 0, 1, 2, 511, 513] if video else [1024, 1024, 0, 1, 512]),
            min_size=n,
            max_size=n,
        )
    )
    jitter = draw(st.sampled_from(JITTER))
    begin = max(0, ends[track.handler] + jitter) if jitter != 10**6 else 0
    ends[track.handler] = begin + sum(durations)
    sizes = draw(st.lists(st.sampled_from([0, 1, 7, 100]), min_size=n, max_size=n))
    if n:  # a sample that is never dropped is not empty: see test_a_track_of_empty_samples...
        sizes[0 if video else -1] = 1 + sizes[0 if video else -1]
    cts = draw(st.lists(st.sampled_from([0, 0, 512, 1024, -512, -1]), min_size=n, max_size=n))
    sync = draw(st.lists(st.sampled_from([1, 0]), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 3]), min_size=n, max_size=n))
    if not video and not draw(st.integers(0, 5)):
        cts = [abs(c) for c in cts]  # now and then, audio with composition offsets too
    elif not video:
        cts = []
    return TrackPlan(begin, durations, sizes, cts, sync if video else [], gaps)


@settings(
    max_examples=TIMELINE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(timelines())
def test_random_timelines_give_the_reference_bytes(segments: list[FakeSegment]) -> None:
    try:
        reference_mp4.build_layout(segments)
    except ValueError:  # no video sample in the whole clip: both refuse it
        with pytest.raises(ValueError, match="no sample of the main track"):
            build_layout(layout_segments(segments))
        return
    assert_same_as_reference(segments)
