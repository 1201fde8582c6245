"""Scale-out with real processes on one real Redis: packagers on two ports (as two hosts would
be), `--workers 2` on one port, kill -9 of everything, exactly-once VOD saves."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.store.redis_support import RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server.url


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _everything(base: str, clip: dict[str, object]) -> dict[str, str]:
    """sha256 of every file of a clip as one server plays it: playlists, inits, segments, MP4s."""
    stream, clip_id = clip["stream_id"], clip["id"]
    prefix = f"{base}/rec/{stream}/"
    out: dict[str, str] = {}
    names = ["master", *(str(r) for r in clip["renditions"])]  # type: ignore[attr-defined]
    for name in names:
        for ext in ("m3u8", "mp4"):
            status, body = _get(f"{prefix}rec_{clip_id}_{name}.{ext}")
            assert status == 200, (name, ext, status)
            out[f"{name}.{ext}"] = _sha(body)
            if ext == "m3u8" and name != "master":
                for line in body.decode().splitlines():
                    uri = line.split('URI="', 1)[1].rstrip('"') if 'URI="' in line else line
                    if uri and not uri.startswith("#"):
                        status, media = _get(prefix + uri)
                        assert status == 200, uri
                        out[uri] = _sha(media)
    return out


def _start(where: Path, *args: str) -> Server:
    where.mkdir(parents=True, exist_ok=True)
    return start_server(where, *args)


def _cut(server: Server, **body: object) -> dict[str, object]:
    deadline = time.monotonic() + 20  # the demo's worker may still be filling the DVR
    while server.request("GET", "/streams/demo")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, clip = server.request("POST", "/streams/demo/clip_recording", body)
    assert status == 201, clip
    assert isinstance(clip, dict)
    return clip


def test_ingest_on_one_cut_on_another_both_play_the_same_bytes(
    tmp_path: Path, redis_url: str
) -> None:
    a = _start(tmp_path / "a", "--demo", "--store", redis_url)  # ingests (the demo feed)
    b = _start(tmp_path / "b", "--store", redis_url)
    try:
        clip = _cut(b, duration=8, start=time.time() - 20)
        played_a, played_b = _everything(a.base, clip), _everything(b.base, clip)
        assert played_a == played_b
        assert len(played_a) > 3 * 4 + 8  # playlists, MP4s, inits and segments of 3 renditions
    finally:
        stop_server(a)
        stop_server(b)


def test_kill_9_of_every_process_loses_no_unexpired_clip(tmp_path: Path, redis_url: str) -> None:
    a = _start(tmp_path / "a", "--demo", "--store", redis_url)
    b = _start(tmp_path / "b", "--store", redis_url)
    try:
        short = _cut(a, duration=4, start=time.time() - 10, expiration=int(time.time()) + 61)
        kept = _cut(b, duration=8, start=time.time() - 20)
        before = _everything(a.base, kept)
        assert _get(f"{b.base}/rec/demo/rec_{short['id']}_master.m3u8")[0] == 200
    finally:
        for server in (a, b):
            server.process.kill()  # kill -9: no graceful anything
            server.process.wait()
    while time.time() < float(str(short["expiration"])) + 1:
        time.sleep(0.5)
    a = _start(tmp_path / "a", "--store", redis_url)
    b = _start(tmp_path / "b", "--store", redis_url)
    try:
        assert _everything(b.base, kept) == before
        assert _everything(a.base, kept) == before
        for server in (a, b):
            status, _ = _get(f"{server.base}/rec/demo/rec_{short['id']}_master.m3u8")
            assert status == 404
            status, _ = _get(f"{server.base}/rec/demo/rec_{short['id']}_master.mp4")
            assert status == 404
        _, listed = a.request("GET", "/streams/demo/clip_recording")
        assert [c["id"] for c in listed] == [kept["id"]]
    finally:
        stop_server(a)
        stop_server(b)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_workers_on_one_port_save_each_vod_exactly_once(tmp_path: Path, redis_url: str) -> None:
    server = start_server(tmp_path, "--demo", "--store", redis_url, "--workers", "2")
    try:
        # One clip complete when cut, one growing (completed by the ingesting worker).
        done = _cut(server, duration=6, start=time.time() - 15, vod_required=True)
        growing = _cut(server, duration=4, start=time.time() - 1, vod_required=True)
        deadline = time.monotonic() + 60
        ids: dict[str, int] = {}
        while time.monotonic() < deadline and len(ids) < 2:
            _, clips = server.request("GET", "/streams/demo/clip_recording")
            ids = {c["id"]: c["video_id"] for c in clips if c["video_id"]}
            time.sleep(0.3)
        assert set(ids) == {done["id"], growing["id"]}
        time.sleep(2)  # room for a second (wrong) save to show up
        saved = [p for p in (tmp_path / "data" / "videos").iterdir() if not p.name.startswith(".")]
        assert len([p for p in saved if p.is_dir()]) == 2
        for _ in range(6):  # new connections: both workers answer the same
            _, videos = server.request("GET", "/videos")
            listed = videos if isinstance(videos, list) else videos.get("results", videos)
            assert sorted(v["id"] for v in listed) == sorted(ids.values())
    finally:
        stop_server(server)


def test_kill_9_of_the_parent_stops_its_workers(tmp_path: Path, redis_url: str) -> None:
    server = start_server(tmp_path, "--store", redis_url, "--workers", "2")
    workers = [p for p in _children(server.process.pid) if _alive(p)]
    try:
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
        with pytest.raises(OSError):
            urllib.request.urlopen(server.base + "/healthz", timeout=2)
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
