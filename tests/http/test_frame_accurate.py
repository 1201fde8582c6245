"""Frame-accurate clips, judged by real decoders: the numbered ladder (every frame shows its own
number, the audio beeps on every whole second) is fed through the ingest, cut mid-GOP, and
ffmpeg reads back which frames the MP4 and the HLS show and where their audio sits."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import m3u8
import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, load_ladder
from packager.http.app import create_app
from packager.http.keys import SERVICES
from tests.conftest import T0, feed_past
from tests.frames import av_offsets, frame_numbers, stream_starts
from tests.mp4_support import ServerThread, read_moov

NUMBERED = Path(__file__).resolve().parents[2] / "fixtures" / "numbered"
FPS = 30
AAC_FRAME = 1024 / 48000
API_KEY = "test-key"
RENDITIONS = ("media_1_180", "media_2_360")


@dataclass
class Numbered:
    """A real server whose stream `demo` holds the numbered ladder's 12 s (frames 0..359)."""

    server: ServerThread
    origin: float  # wall clock of frame 0

    def at(self, frame: int) -> float:
        return self.origin + frame / FPS

    def request(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            headers = {"Authorization": f"apikey {API_KEY}"}
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def clip(self, **body: Any) -> dict[str, Any]:
        status, _, answer = self.request("POST", "/streams/demo/clip_recording", body)
        assert status == 201, answer
        made: dict[str, Any] = json.loads(answer)
        return made

    def url(self, clip: dict[str, Any], name: str) -> str:
        return f"{self.server.base}/rec/demo/rec_{clip['id']}_{name}"


@pytest.fixture(scope="module")
def numbered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Numbered]:
    clock = ManualClock(T0)
    config = Config(
        api_keys=(API_KEY,), memory_budget=1 << 30, data_dir=tmp_path_factory.mktemp("frames")
    )
    app = create_app(config, clock=clock, timers=False)
    services = app[SERVICES]
    feed = DemoFeed(services.ingest, load_ladder(NUMBERED), clock)
    with ServerThread(app) as server:
        origin = server.run(feed_past(feed, clock, 6))
        yield Numbered(server, origin)


# ---- the API -------------------------------------------------------------------------------


def test_a_frame_accurate_clip_reports_the_frames_it_shows(numbered: Numbered) -> None:
    clip = numbered.clip(start=numbered.at(45), duration=3, frame_accurate=True)
    assert clip["frame_accurate"] is True
    assert clip["start_precise"] == pytest.approx(numbered.at(45), abs=1e-3)
    assert clip["duration_precise"] == 3.0
    # Gcore's integers: the start rounded down, the end rounded up.
    assert clip["start"] == int(numbered.at(45))
    assert clip["start"] + clip["duration"] >= numbered.at(45) + 3
    assert clip["start"] + clip["duration"] - 1 < numbered.at(45) + 3


def test_a_segment_aligned_clip_reports_its_segments(numbered: Numbered) -> None:
    clip = numbered.clip(start=numbered.at(45), duration=3)
    assert clip["frame_accurate"] is False
    assert clip["start_precise"] == pytest.approx(numbered.origin, abs=1e-3)
    assert clip["duration_precise"] == 6.0  # frames 45..134 lie in segments 0, 1 and 2


@pytest.mark.parametrize("value", ["yes", 1, [], {}])
def test_frame_accurate_must_be_a_boolean(numbered: Numbered, value: Any) -> None:
    status, _, body = numbered.request(
        "POST",
        "/streams/demo/clip_recording",
        {"start": numbered.at(45), "duration": 3, "frame_accurate": value},
    )
    assert status == 400
    answer = json.loads(body)
    assert answer["field"] == "frame_accurate"


def test_livepeer_clips_are_frame_accurate_to_the_millisecond(
    numbered: Numbered, ffmpeg_exe: str
) -> None:
    """Livepeer's times are milliseconds: frame 47 (1566.67 ms in) is asked for as 1567."""
    start_ms = round(numbered.at(47) * 1000)
    status, _, body = numbered.request(
        "POST", "/clip", {"playbackId": "demo", "startTime": start_ms, "endTime": start_ms + 2000}
    )
    assert status == 200, body
    asset = json.loads(body)["asset"]
    assert asset["videoSpec"]["duration"] == 2.0
    status, _, listed = numbered.request("GET", "/streams/demo/clip_recording")
    clip = next(c for c in json.loads(listed) if c["id"] == asset["id"])
    assert clip["frame_accurate"] is True
    assert clip["start_precise"] == pytest.approx(numbered.at(47), abs=1e-3)
    assert frame_numbers(ffmpeg_exe, numbered.url(clip, "media_1_180.mp4")) == list(range(47, 107))


def test_livepeer_clips_can_be_asked_segment_aligned(numbered: Numbered) -> None:
    start_ms = round(numbered.at(47) * 1000)
    status, _, body = numbered.request(
        "POST",
        "/clip",
        {
            "playbackId": "demo",
            "startTime": start_ms,
            "endTime": start_ms + 2000,
            "frameAccurate": False,
        },
    )
    assert status == 200, body
    assert json.loads(body)["asset"]["videoSpec"]["duration"] == 4.0  # segments 0 and 1
    status, _, body = numbered.request(
        "POST",
        "/clip",
        {
            "playbackId": "demo",
            "startTime": start_ms,
            "endTime": start_ms + 2000,
            "frameAccurate": 0,
        },
    )
    assert status == 400 and json.loads(body)["errors"], body


# ---- MP4 and HLS: the frames and the audio a cut shows -------------------------------------


# (first frame, frames): mid-GOP to mid-GOP across a segment boundary; a cut inside one GOP;
# from a keyframe; a single frame; up to the very end of what the DVR holds.
CUTS = [(45, 90), (47, 30), (60, 45), (61, 1), (301, 59)]


# The MP4 by its edit list; the HLS with the partial GOPs re-encoded, the rest copied.
KINDS = ["mp4", "m3u8"]


@pytest.mark.parametrize(("first", "count"), CUTS)
@pytest.mark.parametrize("rendition", RENDITIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_mp4_and_hls_show_exactly_the_frames_asked_for(
    numbered: Numbered, ffmpeg_exe: str, first: int, count: int, rendition: str, kind: str
) -> None:
    clip = numbered.clip(start=numbered.at(first), duration=count / FPS, frame_accurate=True)
    url = numbered.url(clip, f"{rendition}.{kind}")
    assert frame_numbers(ffmpeg_exe, url) == list(range(first, first + count))
    assert clip["duration_precise"] == round(count / FPS, 3)


@pytest.mark.parametrize("rendition", RENDITIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_mp4_and_hls_audio_is_in_step_with_the_video(
    numbered: Numbered, ffmpeg_exe: str, rendition: str, kind: str
) -> None:
    """Audio is trimmed by its own edit in the MP4, cut to whole AAC frames where the video is
    in the HLS: within one AAC frame of the video in both."""
    clip = numbered.clip(start=numbered.at(47), duration=3.5, frame_accurate=True)
    url = numbered.url(clip, f"{rendition}.{kind}")
    starts = stream_starts(ffmpeg_exe, url)
    assert abs(starts.video_after_audio) <= AAC_FRAME
    offsets = av_offsets(ffmpeg_exe, url)  # beeps at frames 60, 90, 120, 150
    assert len(offsets) == 4
    assert max(map(abs, offsets)) <= AAC_FRAME


# ---- the MP4: edit lists, no byte of media changed ------------------------------------------


def test_the_mp4_keeps_every_byte_of_media_and_hides_frames_by_its_edit_list(
    numbered: Numbered,
) -> None:
    """The frames before the first shown one, from its keyframe, are in the file (decoded) but
    before the edit's media_time; the file lasts exactly the duration asked for."""
    clip = numbered.clip(start=numbered.at(45), duration=3, frame_accurate=True)
    status, _, body = numbered.request("GET", f"/rec/demo/rec_{clip['id']}_media_1_180.mp4")
    assert status == 200
    movie = read_moov(body)
    video = movie.track("vide")
    assert video.sync is not None and video.sync[0] == 1
    ((empty, _), *rest) = video.edits if video.edits[0][1] == -1 else [(0, 0), *video.edits]
    ((edit_duration, media_time),) = rest
    assert empty == 0
    assert Fraction(edit_duration, movie.timescale) == 3
    decode = [sum(video.durations[:k]) for k in range(len(video.durations))]
    shown_at = sorted(d + c for d, c in zip(decode, video.cts, strict=True))
    hidden = [t for t in shown_at if t < media_time]
    assert len(hidden) == 45  # frames 0..44 of the GOP: decoded, not shown
    assert Fraction(movie.duration, movie.timescale) == 3
    audio = movie.track("soun")
    ((audio_duration, _),) = [(d, t) for d, t in audio.edits if t >= 0]
    assert Fraction(audio_duration, movie.timescale) <= 3


# ---- HLS: the partial GOPs re-encoded, the rest copied --------------------------------------


def test_re_encoded_pieces_have_their_own_map_behind_discontinuities(numbered: Numbered) -> None:
    clip = numbered.clip(start=numbered.at(47), duration=3, frame_accurate=True)
    status, _, body = numbered.request("GET", f"/rec/demo/rec_{clip['id']}_media_1_180.m3u8")
    assert status == 200
    playlist = m3u8.loads(body.decode())
    assert playlist.playlist_type == "vod" and playlist.is_endlist
    segments = playlist.segments
    # Frames 47..136: GOP 0's last 13 frames re-encoded, segment 1 whole, GOP 2 cut short.
    maps = [s.init_section.uri for s in segments]
    assert maps[0] != maps[1] and maps[1] == maps[-1]
    assert [s.discontinuity for s in segments] == [False, True, False]
    assert [round(s.duration, 6) for s in segments] == [round(13 / FPS, 6), 2.0, round(17 / FPS, 6)]
    assert sum(s.duration for s in segments) == pytest.approx(3.0, abs=1e-6)
