"""The numbered fixture and its reader: every frame reads as itself, beeps sit on whole
seconds, and cuts, shifts and damage made by ffmpeg itself are seen for what they are."""

from __future__ import annotations

import subprocess
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from packager.demo import load_ladder
from tests.frames import (
    AUDIO_RATE,
    BAND_FRACTION,
    BAND_ROWS,
    BITS,
    READ_HEIGHT,
    READ_WIDTH,
    FrameCodeError,
    av_offsets,
    beep_onsets,
    find_onsets,
    frame_numbers,
    gray_frames,
    read_number,
    stream_starts,
)
from tests.mp4_support import ServerThread, read_moov

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NUMBERED = FIXTURES / "numbered"
RENDITIONS = ("0", "1")
SECONDS = 12
FPS = 30
TOLERANCE = 0.002  # s: well under one AAC frame (1024 / 48000 = 21.3 ms)


def playlist(rendition: str) -> str:
    return str(NUMBERED / rendition / "index.m3u8")


def run_ffmpeg(ffmpeg_exe: str, *args: str) -> None:
    subprocess.run([ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def cut_45_to_74(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames from frame 45, audio and video re-encoded by ffmpeg's own accurate cut."""
    source = playlist("1")
    # -copyts keeps ffmpeg's timeline the one stream_starts reports, so the cut point is frame
    # 45's own time; a few microseconds before it, so rounding cannot skip the frame.
    start = stream_starts(ffmpeg_exe, source).video + 45 / FPS - 5e-6
    out = tmp_path_factory.mktemp("cut") / "cut.mp4"
    run_ffmpeg(
        ffmpeg_exe,
        *("-copyts", "-i", source, "-ss", f"{start:.6f}", "-frames:v", "30"),
        *("-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)),
    )
    return out


@pytest.fixture(scope="module")
def http_base(cut_45_to_74: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """aiohttp's static files (Range-capable: ffmpeg seeks in an MP4) over the ladder and cut."""
    root = tmp_path_factory.mktemp("www")
    (root / "numbered").symlink_to(NUMBERED)
    (root / "cut.mp4").symlink_to(cut_45_to_74)
    app = web.Application()
    app.router.add_static("/", root, follow_symlinks=True)
    with ServerThread(app) as server:
        yield server.base


def invert_cell(frame: bytearray, row: int, col: int) -> None:
    """Turn one whole cell of the band black<->white, as if the code were drawn wrong."""
    row_h = READ_HEIGHT / (BAND_FRACTION * BAND_ROWS)
    cell_w = READ_WIDTH / BITS
    for y in range(round(row * row_h), round((row + 1) * row_h)):
        for x in range(round(col * cell_w), round((col + 1) * cell_w)):
            frame[y * READ_WIDTH + x] = 255 - frame[y * READ_WIDTH + x]


# -- the committed fixture ------------------------------------------------------------------


@pytest.mark.parametrize("rendition", RENDITIONS)
def test_every_rendition_decodes_to_frames_0_to_359_in_order(
    ffmpeg_exe: str, rendition: str
) -> None:
    assert frame_numbers(ffmpeg_exe, playlist(rendition)) == list(range(SECONDS * FPS))


@pytest.mark.parametrize("rendition", RENDITIONS)
def test_beeps_start_on_every_whole_second_of_the_video(ffmpeg_exe: str, rendition: str) -> None:
    starts = stream_starts(ffmpeg_exe, playlist(rendition))
    # ffmpeg's decoded audio starts with AAC's priming samples (this fMP4's edit list does not
    # trim them), which the timestamps account for: put each onset on the video's timeline.
    onsets = [t - starts.video_after_audio for t in beep_onsets(ffmpeg_exe, playlist(rendition))]
    assert len(onsets) == SECONDS
    for second, onset in enumerate(onsets):
        assert onset == pytest.approx(second, abs=TOLERANCE)


def test_fixture_audio_and_video_are_in_sync(ffmpeg_exe: str) -> None:
    offsets = av_offsets(ffmpeg_exe, playlist("0"))
    assert len(offsets) == SECONDS
    assert max(map(abs, offsets)) < TOLERANCE


def test_demo_loader_loads_the_numbered_ladder() -> None:
    ladder = load_ladder(NUMBERED)
    assert [r.name for r in ladder] == list(RENDITIONS)
    assert [len(r.segments) for r in ladder] == [SECONDS // 2] * len(RENDITIONS)


# -- cuts and shifts made by ffmpeg read back as what they are --------------------------------


def test_an_ffmpeg_cut_from_frame_45_reads_back_45_to_74_in_sync(
    ffmpeg_exe: str, cut_45_to_74: Path
) -> None:
    assert frame_numbers(ffmpeg_exe, str(cut_45_to_74)) == list(range(45, 75))
    (offset,) = av_offsets(ffmpeg_exe, str(cut_45_to_74))  # the beep of second 2 = frame 60
    assert abs(offset) < TOLERANCE


def test_frames_an_mp4_edit_list_hides_are_not_read(ffmpeg_exe: str, tmp_path: Path) -> None:
    """A stream-copy cut keeps the GOP from its key frame (frame 0 here, 1.51 s is in the
    first GOP) and hides the frames before the cut point with an edit list: the reader must
    see exactly the frames that edit shows, as a player does."""
    out = tmp_path / "copy.mp4"
    run_ffmpeg(ffmpeg_exe, "-ss", "1.51", "-i", playlist("1"), "-t", "1", "-c", "copy", str(out))
    movie = read_moov(out.read_bytes())
    video = movie.track("vide")
    ((edit_duration, media_time),) = [(d, t) for d, t in video.edits if t >= 0]
    shown_for = edit_duration * video.timescale // movie.timescale  # movie -> media ticks
    decode_times = [sum(video.durations[:k]) for k in range(len(video.durations))]
    shows_at = sorted(dts + cts for dts, cts in zip(decode_times, video.cts, strict=True))
    hidden = sum(1 for t in shows_at if t < media_time)
    shown = sum(1 for t in shows_at if media_time <= t < media_time + shown_for)
    assert hidden > 0 and video.sync and video.sync[0] == 1
    assert frame_numbers(ffmpeg_exe, str(out)) == list(range(hidden, hidden + shown))


def test_audio_delayed_by_ffmpeg_is_measured_late_by_that_much(
    ffmpeg_exe: str, tmp_path: Path
) -> None:
    """12.5 ms: not a multiple of a video frame, an AAC frame or a millisecond."""
    out = tmp_path / "late.mp4"
    source = playlist("0")
    run_ffmpeg(
        ffmpeg_exe,
        *("-i", source, "-itsoffset", "0.0125", "-i", source, "-map", "0:v", "-map", "1:a"),
        *("-c", "copy", "-t", "4", str(out)),
    )
    offsets = av_offsets(ffmpeg_exe, str(out))
    assert len(offsets) == 4
    for offset in offsets:
        assert offset == pytest.approx(0.0125, abs=0.0005)


def test_reads_hls_and_mp4_over_http(ffmpeg_exe: str, http_base: str) -> None:
    assert frame_numbers(ffmpeg_exe, f"{http_base}/numbered/0/index.m3u8") == list(range(360))
    assert frame_numbers(ffmpeg_exe, f"{http_base}/cut.mp4") == list(range(45, 75))
    assert len(beep_onsets(ffmpeg_exe, f"{http_base}/numbered/1/index.m3u8")) == SECONDS


# -- damage and foreign pictures are refused -------------------------------------------------


def test_any_single_flipped_cell_is_detected(ffmpeg_exe: str) -> None:
    frame = bytearray(gray_frames(ffmpeg_exe, playlist("0"))[299])
    assert read_number(frame) == 299
    for row in range(BAND_ROWS):
        for col in range(BITS):
            damaged = bytearray(frame)
            invert_cell(damaged, row, col)
            with pytest.raises(FrameCodeError, match=rf"columns \[{col}\]"):
                read_number(damaged)


def test_a_grey_cell_is_refused_not_guessed(ffmpeg_exe: str) -> None:
    frame = bytearray(gray_frames(ffmpeg_exe, playlist("0"))[17])
    row_h = READ_HEIGHT // (BAND_FRACTION * BAND_ROWS)
    for y in range(row_h):
        frame[y * READ_WIDTH : y * READ_WIDTH + READ_WIDTH // BITS] = bytes([128]) * (
            READ_WIDTH // BITS
        )
    with pytest.raises(FrameCodeError, match="neither black nor white"):
        read_number(frame)


def test_a_cell_painted_over_by_ffmpeg_fails_at_that_frame(ffmpeg_exe: str, tmp_path: Path) -> None:
    """Column 0 (bit 11) is black in row A for every frame below 2048; paint it white on one."""
    out = tmp_path / "damaged.mp4"
    paint = f"drawbox=x=0:y=0:w=iw/{BITS}:h=ih/{BAND_FRACTION * BAND_ROWS}:color=white:t=fill"
    run_ffmpeg(
        ffmpeg_exe,
        *("-i", playlist("0"), "-frames:v", "40", "-an"),
        *("-vf", f"{paint}:enable='eq(n,20)'", "-c:v", "libx264", "-preset", "veryfast", str(out)),
    )
    with pytest.raises(FrameCodeError, match=r"decoded frame 20 .*columns \[0\]"):
        frame_numbers(ffmpeg_exe, str(out))


def test_a_video_without_the_code_is_refused(ffmpeg_exe: str) -> None:
    with pytest.raises(FrameCodeError, match="decoded frame 0"):
        frame_numbers(ffmpeg_exe, str(FIXTURES / "ladder" / "0" / "index.m3u8"))


def test_onsets_need_quiet_before_them_and_a_burst_cut_in_half_is_not_one() -> None:
    rate = AUDIO_RATE
    samples = array("f", [0.0]) * (3 * rate)
    for start in (0, rate + 123, 2 * rate + 456):  # the first is already sounding at sample 0
        for n in range(480):
            samples[start + n] = 0.5 if n % 2 else -0.5
    samples[rate + 123 + 600] = 0.5  # an echo 12 ms later is part of the same beep
    assert find_onsets(samples, rate) == [(rate + 123) / rate, (2 * rate + 456) / rate]
