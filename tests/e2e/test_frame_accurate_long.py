"""A 10-minute frame-accurate clip of the numbered ladder (fed through the ingest, 52 loops of
its 12 s): its MP4 and its HLS show the same 18,000 frames, from the one asked for to the same
last one. Slow (ffmpeg reads every frame twice), hence e2e."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, load_ladder
from packager.http.app import create_app
from packager.http.keys import SERVICES
from tests.conftest import T0, feed_past
from tests.frames import frame_numbers
from tests.mp4_support import ServerThread

pytestmark = pytest.mark.e2e

NUMBERED = Path(__file__).resolve().parents[2] / "fixtures" / "numbered"
FPS = 30
LOOP = 360  # frames in the fixture's 12 s: the numbers start again each loop
MINUTES = 10


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(MP4 URL, HLS URL) of a 10-minute frame-accurate clip from frame 45 (mid-GOP) on."""
    clock = ManualClock(T0)
    config = Config(memory_budget=1 << 31, data_dir=tmp_path_factory.mktemp("long"))
    app = create_app(config, clock=clock, timers=False)
    services = app[SERVICES]
    feed = DemoFeed(services.ingest, load_ladder(NUMBERED)[:1], clock)
    with ServerThread(app) as server:
        segments = MINUTES * 30 + 6
        origin = server.run(feed_past(feed, clock, segments))
        clip = server.run(
            services.clips.create_clip(
                "demo", duration=MINUTES * 60, start=origin + 45 / FPS + 0.01, frame_accurate=True
            )
        )
        assert clip.complete
        base = f"{server.base}/rec/demo/rec_{clip.id}_media_1_180"
        yield f"{base}.mp4", f"{base}.m3u8"


def test_a_ten_minute_clips_mp4_and_hls_show_the_same_frames(
    long_clip: tuple[str, str], ffmpeg_exe: str
) -> None:
    mp4, hls = long_clip
    frames = MINUTES * 60 * FPS
    from_mp4 = frame_numbers(ffmpeg_exe, mp4)
    from_hls = frame_numbers(ffmpeg_exe, hls)
    # The first frame at or after start: frame 46, 0.01 s after frame 45.
    expected = [(46 + k) % LOOP for k in range(frames)]
    assert len(from_mp4) == len(from_hls) == frames
    assert from_mp4[0] == from_hls[0] == 46
    assert from_mp4[-1] == from_hls[-1] == expected[-1]
    assert from_mp4 == expected
    assert from_hls == expected
