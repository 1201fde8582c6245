"""Every live encoder's everyday output, pushed by real ffmpeg, cut, and decoded by ffmpeg.

Each case pushes a stream the way an encoder really does (restarts, segments that do not start
on keyframes, x265's open GOP, MPEG-TS, a master playlist beside the renditions, two audio
tracks, renditions whose GOPs do not line up), cuts a clip, and decodes every HLS and MP4 link:
no decoder error, the same frame count from HLS and MP4, and a decoded length that matches the
playlist's. The slowest (x265, two 12 s runs) carry the `slow` marker:

    python -m pytest -q -m slow tests/e2e/test_encoders.py
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ffmpeg
import m3u8
import pytest

from tests.e2e.conftest import Server, create_stream, start_server, stop_server

pytestmark = pytest.mark.e2e

FPS = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("encoders"))
    yield srv
    stop_server(srv)


def push(
    ffmpeg_exe: str,
    url: str,
    key: str,
    seconds: float,
    *,
    renditions: Sequence[dict[str, Any]] = ({"height": 180},),
    hls: dict[str, Any] | None = None,
    audio_tracks: int = 1,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """One ffmpeg process pushing a test pattern and tone as HLS over PUT, in real time."""
    video = ffmpeg.input(f"testsrc2=size=320x180:rate={FPS}", f="lavfi", re=None)
    audio = ffmpeg.input("sine=frequency=1000:sample_rate=48000", f="lavfi", re=None)
    split = video.video.filter_multi_output("split", len(renditions))
    streams: list[Any] = []
    args: dict[str, Any] = {}
    var = []
    for i, r in enumerate(renditions):
        streams.append(split[i].filter("scale", -2, r["height"]))
        gop = r.get("gop", 60)
        args[f"g:v:{i}"] = gop
        args[f"keyint_min:v:{i}"] = gop
        args[f"c:v:{i}"] = r.get("codec", "libx264")
        audios: list[str] = []
        for _ in range(audio_tracks):
            streams.append(audio.audio)
            audios.append(f"a:{len(audios) + i * audio_tracks}")
        var.append(",".join([f"v:{i}", *audios]))
    options: dict[str, Any] = {
        "t": seconds,
        "preset": "ultrafast",
        "sc_threshold": 0,
        "acodec": "aac",
        "ac": 2,
        "f": "hls",
        "hls_time": 2,
        "hls_segment_type": "fmp4",
        "hls_flags": "program_date_time",
        "method": "PUT",
        "headers": f"Authorization: Bearer {key}\r\n",
        "var_stream_map": " ".join(var),
        **args,
        **(hls or {}),
    }
    if any(r.get("codec") == "libx265" for r in renditions):
        options.setdefault("x265-params", "log-level=error")
        options.setdefault("tag:v", "hvc1")
    cmd = (
        ffmpeg.output(*streams, url, **options)
        .global_args("-v", "error", "-nostdin")
        .compile(cmd=ffmpeg_exe)
    )
    result = subprocess.run(cmd, capture_output=True, check=False, timeout=seconds + 120)
    if check:
        assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result


@dataclass
class Decoded:
    frames: int
    seconds: float
    errors: str


def decode(ffmpeg_exe: str, url: str) -> Decoded:
    """Every video frame of `url`, decoded: how many (as the decoder hands them to a filter,
    before any timestamp logic of ffmpeg's muxing side: its HLS demuxer does not rebase
    timestamps at a DISCONTINUITY, and the CLI drops frames whose times went back), how long
    they last, and what ffmpeg complained of at `-v error`."""
    errors = subprocess.run(
        [ffmpeg_exe, "-v", "error", "-nostdin", "-i", url, "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert errors.returncode == 0, errors.stderr.decode()
    show = ["-vf", "showinfo", "-fps_mode", "passthrough", "-f", "null", "-"]
    shown = subprocess.run(
        [ffmpeg_exe, "-nostdin", "-i", url, "-map", "0:v:0", *show],
        capture_output=True,
        check=False,
        timeout=120,
    )
    durations = [float(m) for m in re.findall(r"duration_time:\s*([\d.]+)", shown.stderr.decode())]
    frames = len(re.findall(r"Parsed_showinfo.*\bn:\s*\d+", shown.stderr.decode()))
    return Decoded(frames, sum(durations), errors.stderr.decode())


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


def check_clip(ffmpeg_exe: str, clip: dict[str, Any]) -> dict[str, Decoded]:
    """Each rendition's HLS and MP4 decode cleanly, to the same frames, as long as listed."""
    base = clip["hls_master"].rsplit("/", 1)[0]
    master = m3u8.loads(fetch(clip["hls_master"]))
    out = {}
    for variant, name in zip(master.playlists, clip["renditions"], strict=True):
        media = m3u8.loads(fetch(f"{base}/{variant.uri}"))
        listed = sum(s.duration for s in media.segments)
        hls = decode(ffmpeg_exe, f"{base}/{variant.uri}")
        mp4 = decode(ffmpeg_exe, clip["mp4_master"].replace("_master.mp4", f"_{name}.mp4"))
        assert hls.errors == "" and mp4.errors == "", (name, hls.errors, mp4.errors)
        assert hls.frames == mp4.frames > 0, (name, hls, mp4)
        assert hls.frames == pytest.approx(listed * FPS, abs=2), (name, hls.frames, listed)
        out[name] = hls
    return out


def cut(server: Server, stream: str, start: float, duration: float) -> dict[str, Any]:
    status, clip = server.request(
        "POST", f"/streams/{stream}/clip_recording", {"start": start, "duration": duration}
    )
    assert status == 201, clip
    assert clip["complete"], clip
    return dict(clip)


def stream_of(server: Server, stream: str) -> dict[str, Any]:
    status, body = server.request("GET", f"/streams/{stream}")
    assert status == 200, body
    return dict(body)


# ---- the cases ------------------------------------------------------------------------------


def test_a_restarted_encoders_first_segment_is_kept_and_marked(
    server: Server, ffmpeg_exe: str
) -> None:
    """ffmpeg -t 2; sleep 3; ffmpeg -t 8: the second run's index0 was dropped as a duplicate
    (same name, init and tfdt), and the next looked continuous: no DISCONTINUITY."""
    url, key = create_stream(server, "restart")
    push(ffmpeg_exe, f"{url}/%v/index.m3u8", key, 2)
    time.sleep(3)
    push(ffmpeg_exe, f"{url}/%v/index.m3u8", key, 8)
    (rendition,) = stream_of(server, "restart")["renditions"]
    assert rendition["segments"] == 1 + 4
    dvr = stream_of(server, "restart")["dvr"]
    clip = cut(server, "restart", dvr["start"], dvr["end"] - dvr["start"])
    base = clip["hls_master"].rsplit("/", 1)[0]
    media = m3u8.loads(fetch(f"{base}/rec_{clip['id']}_{clip['renditions'][0]}.m3u8"))
    assert [s.discontinuity for s in media.segments] == [False, True, False, False, False]
    # The gap is where the encoder was away: between the runs, and only there.
    starts = [s.program_date_time.timestamp() for s in media.segments]
    gaps = [
        b - (a + s.duration) for a, b, s in zip(starts, starts[1:], media.segments, strict=False)
    ]
    assert gaps[0] > 2 and all(abs(g) < 0.1 for g in gaps[1:]), gaps
    check_clip(ffmpeg_exe, clip)


@pytest.mark.slow
@pytest.mark.parametrize("first", [6, 12])
def test_a_restart_is_timed_by_the_new_run(server: Server, ffmpeg_exe: str, first: int) -> None:
    """ffmpeg -t 6 (or a 12 s run with -hls_list_size 0); sleep 3; ffmpeg -t 8: the new index0
    was matched to the old run's playlist entry (a stale date) and clamped; the DISCONTINUITY
    sat where the gap was 0 and the real jump came later, unmarked."""
    stream = f"retime{first}"
    url, key = create_stream(server, stream)
    hls = {"hls_list_size": 0} if first == 12 else None
    push(ffmpeg_exe, f"{url}/%v/index.m3u8", key, first, hls=hls)
    time.sleep(3)
    push(ffmpeg_exe, f"{url}/%v/index.m3u8", key, 8, hls=hls)
    dvr = stream_of(server, stream)["dvr"]
    clip = cut(server, stream, dvr["start"], dvr["end"] - dvr["start"])
    base = clip["hls_master"].rsplit("/", 1)[0]
    media = m3u8.loads(fetch(f"{base}/rec_{clip['id']}_{clip['renditions'][0]}.m3u8"))
    starts = [s.program_date_time.timestamp() for s in media.segments]
    for i in range(1, len(starts)):
        gap = starts[i] - (starts[i - 1] + media.segments[i - 1].duration)
        if media.segments[i].discontinuity:
            assert gap > 2, (i, gap)  # the encoder was away 3 s
        else:
            assert abs(gap) < 0.1, (i, gap)  # never a jump without a DISCONTINUITY
    assert sum(s.discontinuity for s in media.segments) == 1
    check_clip(ffmpeg_exe, clip)


def test_a_cut_inside_a_segment_without_a_keyframe_starts_at_the_keyframe_before(
    server: Server, ffmpeg_exe: str
) -> None:
    """-hls_flags split_by_time, a 4 s GOP in 2 s segments: every other segment starts
    mid-GOP; a clip starting there did not decode ("reference picture missing")."""
    url, key = create_stream(server, "split")
    push(
        ffmpeg_exe,
        f"{url}/%v/index.m3u8",
        key,
        10,
        renditions=[{"height": 180, "gop": 120}],
        hls={"hls_flags": "program_date_time+split_by_time"},
    )
    listed = stream_of(server, "split")
    dvr = listed["dvr"]
    # A cut from inside the second segment (which starts mid-GOP) takes the first too.
    clip = cut(server, "split", dvr["start"] + 2.5, 3)
    assert clip["start_precise"] == pytest.approx(dvr["start"], abs=0.05)
    master = fetch(clip["hls_master"])
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in master  # some segments do not stand alone
    check_clip(ffmpeg_exe, clip)


@pytest.mark.slow
def test_x265_open_gop_clips_decode_every_frame(server: Server, ffmpeg_exe: str) -> None:
    """x265's default open GOP puts RASL pictures after each CRA: a clip starting there
    decoded 297 of 300 frames, yet claimed INDEPENDENT-SEGMENTS."""
    url, key = create_stream(server, "hevc")
    push(
        ffmpeg_exe,
        f"{url}/%v/index.m3u8",
        key,
        10,
        renditions=[{"height": 180, "codec": "libx265", "gop": 60}],
    )
    dvr = stream_of(server, "hevc")["dvr"]
    (rendition,) = stream_of(server, "hevc")["renditions"]
    assert rendition["codecs"].startswith("hvc1.")
    clip = cut(server, "hevc", dvr["start"] + 2.1, 4)  # starts on a CRA with leading pictures
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in fetch(clip["hls_master"])
    check_clip(ffmpeg_exe, clip)


def test_x265_tagged_hev1_is_served_as_hvc1(server: Server, ffmpeg_exe: str) -> None:
    """-c:v libx265 -tag:v hev1, the parameter sets in every keyframe too (repeat-headers):
    CODECS said hev1 and the init was hev1, which Safari and iOS refuse in fMP4 HLS."""
    url, key = create_stream(server, "hev1")
    push(
        ffmpeg_exe,
        f"{url}/%v/index.m3u8",
        key,
        6,
        renditions=[{"height": 180, "codec": "libx265", "gop": 60}],
        hls={"tag:v": "hev1", "x265-params": "log-level=error:repeat-headers=1"},
    )
    stream = stream_of(server, "hev1")
    (rendition,) = stream["renditions"]
    assert rendition["codecs"].startswith("hvc1.") and rendition["note"] is None
    dvr = stream["dvr"]
    clip = cut(server, "hev1", dvr["start"], dvr["end"] - dvr["start"])
    (variant,) = m3u8.loads(fetch(clip["hls_master"])).playlists
    assert variant.stream_info.codecs == rendition["codecs"]
    base = clip["hls_master"].rsplit("/", 1)[0]
    media = m3u8.loads(fetch(f"{base}/{variant.uri}"))
    with urllib.request.urlopen(f"{base}/{media.segments[0].init_section.uri}") as resp:
        init = resp.read()
    assert b"hvc1" in init and b"hev1" not in init
    check_clip(ffmpeg_exe, clip)


def test_mpeg_ts_segments_are_ingested_and_served_as_fmp4(server: Server, ffmpeg_exe: str) -> None:
    """TS is ffmpeg's default segment type and what most hardware encoders push: every
    segment got 400."""
    url, key = create_stream(server, "ts")
    push(ffmpeg_exe, f"{url}/%v/index.m3u8", key, 8, hls={"hls_segment_type": "mpegts"})
    stream = stream_of(server, "ts")
    (rendition,) = stream["renditions"]
    assert rendition["segments"] >= 3 and rendition["codecs"].startswith("avc1.")
    dvr = stream["dvr"]
    clip = cut(server, "ts", dvr["start"], 4)
    base = clip["hls_master"].rsplit("/", 1)[0]
    media = m3u8.loads(fetch(f"{base}/rec_{clip['id']}_{clip['renditions'][0]}.m3u8"))
    assert media.segments[0].init_section is not None  # fMP4 HLS
    check_clip(ffmpeg_exe, clip)


def test_small_things_encoders_trip_over(server: Server, ffmpeg_exe: str) -> None:
    """A master playlist beside the renditions (was 404), two AAC tracks (CODECS listed
    mp4a.40.2 twice), and single_file byte ranges (silently dropped media, then a misleading
    "init segment too large"): refused with a 400 that names the mode."""
    url, key = create_stream(server, "small")
    push(
        ffmpeg_exe,
        f"{url}/%v/index.m3u8",
        key,
        4,
        audio_tracks=2,
        hls={"master_pl_name": "master.m3u8"},
    )
    (rendition,) = stream_of(server, "small")["renditions"]
    assert rendition["codecs"].count("mp4a.40.2") == 1
    log = server.log.read_text()
    assert '"path":"/ingest/small/master.m3u8","status":200' in log
    single_url, single_key = create_stream(server, "single")
    result = push(
        ffmpeg_exe,
        f"{single_url}/%v/index.m3u8",
        single_key,
        4,
        hls={"hls_flags": "single_file+program_date_time"},
        check=False,
    )
    assert stream_of(server, "single")["renditions"] == []
    assert '"path":"/ingest/single/0/index.m4s","status":400' in server.log.read_text() or (
        b"400" in result.stderr
    )
    dvr = stream_of(server, "small")["dvr"]
    check_clip(ffmpeg_exe, cut(server, "small", dvr["start"], 2))


def test_renditions_whose_gops_do_not_line_up_cover_one_span(
    server: Server, ffmpeg_exe: str
) -> None:
    """GOP 50 vs 60: each rendition was cut on its own boundaries, up to a segment apart."""
    url, key = create_stream(server, "gops")
    push(
        ffmpeg_exe,
        f"{url}/%v/index.m3u8",
        key,
        12,
        renditions=[{"height": 144, "gop": 50}, {"height": 180, "gop": 60}],
    )
    dvr = stream_of(server, "gops")["dvr"]
    clip = cut(server, "gops", dvr["start"] + 3.1, 3)
    base = clip["hls_master"].rsplit("/", 1)[0]
    spans = []
    for name in clip["renditions"]:
        media = m3u8.loads(fetch(f"{base}/rec_{clip['id']}_{name}.m3u8"))
        first = media.segments[0].program_date_time.timestamp()
        spans.append((first, first + sum(s.duration for s in media.segments)))
    # Each covers the whole span asked for; where they start differs by the spread noted.
    for start, end in spans:
        assert start <= dvr["start"] + 3.1 + 0.01 and end >= dvr["start"] + 6.1 - 0.01
    assert clip["rendition_spread"] == pytest.approx(
        max(s for s, _ in spans) - min(s for s, _ in spans), abs=0.01
    )
    check_clip(ffmpeg_exe, clip)
