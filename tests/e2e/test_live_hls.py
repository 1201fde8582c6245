"""The whole slice: ffmpeg pushes a live ladder, the API cuts a clip, ffmpeg plays it back."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import m3u8
import pytest

from tests.e2e.conftest import (
    Server,
    create_stream,
    decode,
    push_live_ladder,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.e2e


def test_ffmpeg_push_then_clip_plays_in_ffmpeg(server: Server, ffmpeg_exe: str) -> None:
    push_url, push_key = create_stream(server, "live")
    push_live_ladder(ffmpeg_exe, f"{push_url}/%v/index.m3u8", seconds=9, key=push_key)
    status, stream = server.request("GET", "/streams/live")
    assert status == 200, stream
    assert [r["height"] for r in stream["renditions"]] == [144, 240, 360]
    assert all(r["segments"] >= 4 for r in stream["renditions"])

    now = time.time()
    status, clip = server.request(
        "POST", "/streams/live/clip_recording", {"duration": 4, "start": stream["dvr"]["start"] + 1}
    )
    assert status == 201, clip
    assert clip["renditions"] == ["media_1_144", "media_2_240", "media_3_360"]
    assert clip["expiration"] > now
    # Segment-aligned: [start+1, start+5) spans the segments [0, 6).
    assert clip["duration_precise"] == pytest.approx(6, abs=0.1)

    with urllib.request.urlopen(clip["hls_master"]) as resp:
        master = m3u8.loads(resp.read().decode())
    assert [p.stream_info.resolution[1] for p in master.playlists] == [144, 240, 360]
    assert all(
        "avc1.42" in p.stream_info.codecs or "avc1.64" in p.stream_info.codecs
        for p in master.playlists
    )

    decoded, errors = decode(ffmpeg_exe, clip["hls_master"])
    print("decoded", decoded, "of", clip["duration_precise"])
    assert errors == ""
    assert abs(decoded - clip["duration_precise"]) <= 2.0  # within one segment
    for name in clip["renditions"]:
        url = clip["hls_master"].replace("master", name)
        decoded, errors = decode(ffmpeg_exe, url)
        assert errors == ""
        assert abs(decoded - clip["duration_precise"]) <= 2.0


def test_demo_mode_serves_a_playable_clip_at_once(tmp_path: Path, ffmpeg_exe: str) -> None:
    # The console script the README runs, from the same installation as this interpreter.
    script = str(Path(sys.executable).with_name("packager"))
    server = start_server(tmp_path, "--demo", command=[script, "serve"])
    try:
        status, clip = server.request(
            "POST", "/streams/demo/clip_recording", {"duration": 10, "start": time.time() - 20}
        )
        assert status == 201, clip
        assert len(clip["renditions"]) == 3
        decoded, errors = decode(ffmpeg_exe, clip["hls_master"])
        assert errors == ""
        assert abs(decoded - clip["duration_precise"]) <= 2.0
    finally:
        stop_server(server)
