"""Process-level lifecycle: VOD copies across a restart, downloads across a graceful stop."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        body: bytes = resp.read()
        return body


def _wait_for_video(server: Server, clip_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, clips = server.request("GET", "/streams/demo/clip_recording")
        video_id = next((c["video_id"] for c in clips if c["id"] == clip_id), None)
        if video_id:
            return str(video_id)
        time.sleep(0.2)
    raise AssertionError("the VOD copy was never written")


def test_vod_copy_is_byte_identical_after_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--demo")
    try:
        status, clip = server.request(
            "POST",
            "/streams/demo/clip_recording",
            {"duration": 8, "start": time.time() - 20, "vod_required": True},
        )
        assert status == 201, clip
        video_id = _wait_for_video(server, clip["id"])
        _, video = server.request("GET", f"/videos/{video_id}")
        before = {r["name"]: _get(r["download_url"]) for r in video["renditions"]}
        assert _get(clip["mp4_master"]) == before[clip["renditions"][-1]]
    finally:
        stop_server(server)

    server = start_server(tmp_path)  # same data dir, no demo, nothing in memory
    try:
        status, again = server.request("GET", f"/videos/{video_id}")
        assert status == 200
        assert [r["sha256"] for r in again["renditions"]] == [
            hashlib.sha256(before[r["name"]]).hexdigest() for r in video["renditions"]
        ]
        for r in again["renditions"]:
            assert _get(r["download_url"]) == before[r["name"]]
        status, _ = server.request("GET", "/streams/demo/clip_recording")
        assert status == 404  # the clip itself was in memory only
    finally:
        stop_server(server)


def test_in_flight_download_finishes_across_a_graceful_stop(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--demo")
    try:
        status, clip = server.request(
            "POST", "/streams/demo/clip_recording", {"duration": 24, "start": time.time() - 28}
        )
        assert status == 201, clip
        expected = _get(clip["mp4_master"])
        url = urllib.parse.urlsplit(clip["mp4_master"])
        # A small receive window keeps the server's handler writing while we stop it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect((url.hostname, url.port))
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.sock = sock
        conn.request("GET", url.path)
        resp = conn.getresponse()
        got = bytearray(resp.read(64 * 1024))
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # it stops taking new work...
            try:
                urllib.request.urlopen(server.base + "/healthz", timeout=1).close()
                time.sleep(0.05)
            except OSError:
                break
        else:
            raise AssertionError("the server kept accepting connections after SIGTERM")
        assert server.process.poll() is None  # ...but is still sending our download
        while chunk := resp.read(64 * 1024):
            got += chunk
        conn.close()
        assert bytes(got) == expected
        assert server.process.wait(30) == 0
    finally:
        stop_server(server)
