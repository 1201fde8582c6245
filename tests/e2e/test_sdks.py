"""The vendors' own SDKs, unmodified, against the real `packager serve`.

A team that uses Gcore's instant clips or Livepeer's clips points the vendor's Python SDK at the
packager and changes nothing else: Gcore's (PyPI `gcore` 0.59.0, a test dependency) with strict
response validation, Livepeer's (PyPI `livepeer` 0.3.0) in a virtualenv of its own, because it
pins pydantic 2.9, httpx 0.27 and python-dateutil 2.8.2 (see `livepeer_python`). No path is
rewritten: each SDK sends its own requests to the server's own routes.

The stream has an integer id, as Gcore's are, made through Gcore's SDK; an encoder pushes the
fixture ladder to it over HTTP (30 s of DVR at once, then live).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gcore
import pytest
from gcore.types.streaming import Stream, Video
from gcore.types.streaming.streams.clip import Clip

from packager.demo import DemoFeed, RecordedRendition, load_ladder
from tests.conftest import LADDER_DIR
from tests.e2e.conftest import API_KEY, Server, start_server, stop_server

pytestmark = pytest.mark.e2e

LIVEPEER = "livepeer==0.3.0"
LIVEPEER_CLIENT = Path(__file__).with_name("livepeer_client.py")
BACKFILL_SEGMENTS = 15  # 30 s of the 2 s fixture segments


# ---- an encoder ------------------------------------------------------------------------------


@dataclass
class HttpEncoder:
    """Pushes what `serve --demo` feeds itself (packager.demo.DemoFeed's bytes: playlist, then
    segment, per rendition) as `PUT /ingest/...`, the way ffmpeg's HLS muxer sends it."""

    base: str
    stream_id: str
    key: str  # the stream's push key, sent on every PUT as ffmpeg's `-headers` does
    ladder: list[RecordedRendition]
    filled: threading.Event = field(default_factory=threading.Event)  # the backfill is in
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def push(self, feed: DemoFeed, k: int, start: float) -> None:
        for rendition, name, body in feed.files(k, start):
            url = f"{self.base}/ingest/{self.stream_id}/{rendition}/{name}"
            request = urllib.request.Request(url, data=body, method="PUT")
            request.add_header("Authorization", f"Bearer {self.key}")
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except OSError as exc:
                self.errors.append(f"PUT {rendition}/{name}: {exc}")

    def run(self) -> None:
        feed = DemoFeed(None, self.ladder, time.time, self.stream_id)
        origin = time.time() - feed.segment_start(BACKFILL_SEGMENTS, 0.0)
        for k in range(BACKFILL_SEGMENTS):
            self.push(feed, k, feed.segment_start(k, origin))
        self.filled.set()
        k = BACKFILL_SEGMENTS
        while not self.stop.is_set():
            start = feed.segment_start(k, origin)
            end = start + feed.durations[k % len(feed.durations)]
            if self.stop.wait(max(0.0, end - time.time())):  # sent when it has all of it
                break
            self.push(feed, k, start)
            k += 1


@dataclass
class Rig:
    server: Server
    gcore: gcore.Gcore
    stream: Stream
    encoder: HttpEncoder

    @property
    def stream_id(self) -> int:
        assert self.stream.id is not None
        return self.stream.id


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    server = start_server(tmp_path_factory.mktemp("sdks"))
    try:
        client = gcore.Gcore(
            api_key=API_KEY,
            base_url=server.base,
            _strict_response_validation=True,
            max_retries=0,
        )
        stream = client.streaming.streams.create(name="match", dvr_duration=3600)
        push_key = _extra(stream, "push_key")
        encoder = HttpEncoder(server.base, str(stream.id), push_key, load_ladder(LADDER_DIR))
        thread = threading.Thread(target=encoder.run, daemon=True)
        thread.start()
        assert encoder.filled.wait(60) and not encoder.errors, encoder.errors[:3]
        yield Rig(server, client, stream, encoder)
        encoder.stop.set()
        thread.join(10)
        assert not encoder.errors, encoder.errors[:3]
    finally:
        stop_server(server)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _extra(model: Clip | Video | Stream, name: str) -> Any:
    """A field beyond the SDK's model (its models allow extra fields)."""
    assert model.model_extra is not None and name in model.model_extra, name
    return model.model_extra[name]


# ---- Gcore -----------------------------------------------------------------------------------


def test_gcore_sdk_creates_and_lists_clips(rig: Rig) -> None:
    clips = rig.gcore.streaming.streams.clips
    now = int(time.time())
    clip = clips.create(rig.stream_id, duration=8, start=now - 20)
    assert isinstance(clip, Clip) and clip.start is not None and clip.expiration is not None
    # Whole seconds that cover the cut, which is segment-aligned around what was asked.
    start, duration = _extra(clip, "start_precise"), _extra(clip, "duration_precise")
    assert clip.start == math.floor(start) and clip.start + clip.duration == math.ceil(
        round(start + duration, 3)
    )
    assert start <= now - 20 and start + duration >= now - 12
    assert clip.expiration == now - 20 + 8 + 3600  # Gcore's default: start + duration + 3600
    assert clip.renditions == ["media_1_360", "media_2_720", "media_3_1080"]
    assert clip.video_id is None and clip.vod_required is False

    listed = clips.list(rig.stream_id)
    assert clip.id in [c.id for c in listed] and all(isinstance(c, Clip) for c in listed)
    # The wire itself carries integers, not 12.0: what Gcore's API sends.
    raw = clips.with_raw_response.list(rig.stream_id).http_response.json()
    for item in raw:
        assert all(type(item[name]) is int for name in ("start", "duration", "expiration"))
    assert clip.hls_master and clip.mp4_master
    status, headers, body = _get(clip.mp4_master)
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body[4:8] == b"ftyp"
    status, _, playlist = _get(clip.hls_master)
    assert status == 200 and playlist.startswith(b"#EXTM3U")


def test_gcore_sdk_growing_clip_mp4_answers_425(rig: Rig) -> None:
    clip = rig.gcore.streaming.streams.clips.create(rig.stream_id, duration=20)
    assert clip.start is not None and clip.start >= int(time.time()) - 3
    assert clip.mp4_master and clip.hls_master
    status, headers, body = _get(clip.mp4_master)
    assert status == 425 and int(headers["Retry-After"]) > 0, body
    status, _, playlist = _get(clip.hls_master)
    assert status == 200 and playlist.startswith(b"#EXTM3U")  # a growing EVENT playlist


def test_gcore_sdk_vod_required_clip_and_its_video(rig: Rig) -> None:
    clips = rig.gcore.streaming.streams.clips
    clip = clips.create(rig.stream_id, duration=6, start=int(time.time()) - 20, vod_required=True)
    assert clip.vod_required is True
    deadline = time.monotonic() + 30
    video_id = None
    while video_id is None:
        assert time.monotonic() < deadline, "the VOD copy was never written"
        time.sleep(0.2)
        video_id = next(c.video_id for c in clips.list(rig.stream_id) if c.id == clip.id)
    video = rig.gcore.streaming.videos.get(video_id)
    assert isinstance(video, Video)
    assert (video.id, video.status, video.stream_id) == (video_id, "ready", rig.stream_id)
    assert video.duration == round(_extra(clip, "duration_precise") * 1000)  # milliseconds
    assert video.converted_videos and video.slug and video.origin_url
    highest = video.converted_videos[-1]
    assert highest.mp4_url and highest.size and highest.status == "complete"
    # Public links carry the random slug, never the guessable integer id.
    assert f"/vod/{video.slug}/" in highest.mp4_url and f"/{video_id}/" not in highest.mp4_url
    status, _, saved = _get(highest.mp4_url)
    assert status == 200 and len(saved) == highest.size
    assert clip.mp4_master and saved == _get(clip.mp4_master)[2]
    listed = rig.gcore.streaming.videos.list()
    assert video_id in [v.id for v in listed]


def test_gcore_sdk_raises_its_own_errors(rig: Rig) -> None:
    with pytest.raises(gcore.NotFoundError, match="stream_not_found"):
        rig.gcore.streaming.streams.clips.list(999_999)
    with pytest.raises(gcore.NotFoundError, match="video_not_found"):
        rig.gcore.streaming.videos.get(999_999)
    with pytest.raises(gcore.BadRequestError, match="duration"):
        rig.gcore.streaming.streams.clips.create(rig.stream_id, duration=0)
    stranger = gcore.Gcore(
        api_key="wrong", base_url=rig.server.base, _strict_response_validation=True, max_retries=0
    )
    with pytest.raises(gcore.AuthenticationError):
        stranger.streaming.streams.clips.list(rig.stream_id)


def test_gcore_sdk_reads_streams(rig: Rig) -> None:
    stream = rig.gcore.streaming.streams.get(rig.stream_id)
    assert (stream.id, stream.name, stream.dvr_duration) == (rig.stream_id, "match", 3600)
    assert rig.stream_id in [s.id for s in rig.gcore.streaming.streams.list()]


# ---- Livepeer --------------------------------------------------------------------------------

_UNREACHABLE = re.compile(
    r"No matching distribution|Could not find a version|NewConnectionError|"
    r"Temporary failure in name resolution|Network is unreachable|ConnectTimeout|"
    r"Max retries exceeded|Connection refused"
)


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "packager-tests"


@pytest.fixture(scope="session")
def livepeer_python() -> Path:
    """A virtualenv holding only Livepeer's SDK, made once and kept in the user's cache.

    Why not the test extras: `livepeer` 0.3.0 pins pydantic 2.9, httpx 0.27 and
    python-dateutil 2.8.2. Installed beside the rest, pip's resolver takes pydantic back to
    2.9.2 for everything (gcore's SDK included) and, on a machine whose Python also holds
    tools that need pydantic 2.13, leaves them broken. Skips only if the package index
    cannot be reached.
    """
    version = f"{sys.version_info.major}{sys.version_info.minor}"
    venv = _cache_root() / f"{LIVEPEER.replace('==', '-')}-py{version}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest making it at once waits, then reuses
        if ready.exists() and _imports_livepeer(python):
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        install = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                LIVEPEER,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if install.returncode != 0:
            output = (install.stdout + install.stderr).strip()
            shutil.rmtree(venv, ignore_errors=True)
            if _UNREACHABLE.search(output):
                pytest.skip(f"cannot install {LIVEPEER}: the package index is unreachable")
            pytest.fail(f"pip install {LIVEPEER} failed:\n{output[-3000:]}")
        assert _imports_livepeer(python), "livepeer installed but does not import"
        ready.write_text(LIVEPEER)
    return python


def _imports_livepeer(python: Path) -> bool:
    if not python.exists():
        return False
    done = subprocess.run(
        [str(python), "-c", "import livepeer"], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


def _livepeer(
    python: Path, server_url: str, calls: list[dict[str, Any]], api_key: str = API_KEY
) -> list[dict[str, Any]]:
    """Run Livepeer's SDK on `calls` (tests/e2e/livepeer_client.py); its results."""
    order = {"server_url": server_url, "api_key": api_key, "calls": calls}
    done = subprocess.run(
        [str(python), str(LIVEPEER_CLIENT)],
        input=json.dumps(order),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


@pytest.mark.parametrize("suffix", ["", "/api"])  # the SDK's default server URL ends in /api
def test_livepeer_sdk_creates_and_lists_clips(rig: Rig, livepeer_python: Path, suffix: str) -> None:
    now_ms = time.time() * 1000
    playback_id = str(rig.stream_id)
    created, listed = _livepeer(
        livepeer_python,
        rig.server.base + suffix,
        [
            {
                "op": "create_clip",
                "args": {
                    "playback_id": playback_id,
                    "start_time": now_ms - 20_000,
                    "end_time": now_ms - 12_000,
                    "name": "goal",
                },
            },
            {"op": "get_clips", "args": {"id": playback_id}},
        ],
    )
    assert created["ok"] and created["status"] == 200, created
    task, asset = created["data"]["task"], created["data"]["asset"]
    assert task["id"] and asset["name"] == "goal" and asset["type"] == "video"
    assert asset["source"] == {"type": "clip", "playbackId": playback_id}
    assert asset["status"]["phase"] == "ready"
    spec = asset["videoSpec"]
    assert spec["format"] == "mp4" and 8 <= spec["duration"] <= 12  # segment-aligned
    assert {t["type"] for t in spec["tracks"]} == {"video", "audio"}
    assert listed["ok"] and listed["status"] == 200, listed
    assert asset["id"] in [a["id"] for a in listed["data"]]
    status, headers, body = _get(asset["downloadUrl"])
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body[4:8] == b"ftyp"
    assert _get(asset["playbackUrl"])[0] == 200


def test_livepeer_sdk_growing_clip_is_uploading(rig: Rig, livepeer_python: Path) -> None:
    now_ms = time.time() * 1000
    (created,) = _livepeer(
        livepeer_python,
        rig.server.base,
        [
            {
                "op": "create_clip",
                "args": {
                    "playback_id": str(rig.stream_id),
                    "start_time": now_ms - 1_000,
                    "end_time": now_ms + 15_000,
                },
            }
        ],
    )
    assert created["ok"], created
    asset = created["data"]["asset"]
    assert asset["status"]["phase"] == "uploading"
    status, headers, _ = _get(asset["downloadUrl"])
    assert status == 425 and int(headers["Retry-After"]) > 0


def test_livepeer_sdk_gets_its_errors(rig: Rig, livepeer_python: Path) -> None:
    now_ms = time.time() * 1000
    missing, bad = _livepeer(
        livepeer_python,
        rig.server.base + "/api",
        [
            {"op": "get_clips", "args": {"id": "nope"}},
            {
                "op": "create_clip",
                "args": {
                    "playback_id": str(rig.stream_id),
                    "start_time": now_ms - 5_000,
                    "end_time": now_ms - 10_000,
                },
            },
        ],
    )
    assert (missing["exception"], missing["status"]) == ("SDKError", 404)
    assert missing["errors"] == ["no stream 'nope'"]
    assert bad["status"] == 400 and bad["errors"] == ["endTime: must be after startTime"]
    (denied,) = _livepeer(
        livepeer_python,
        rig.server.base,
        [{"op": "get_clips", "args": {"id": str(rig.stream_id)}}],
        api_key="wrong",
    )
    assert (denied["exception"], denied["status"]) == ("SDKError", 401)
    assert denied["errors"] == ["the API key is not valid"]
