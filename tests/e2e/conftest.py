"""Start the real service as a subprocess; drive real ffmpeg against it over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import pytest

API_KEY = "e2e-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def request(
        self, method: str, path: str, body: Any = None, key: str | None = API_KEY
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if key:
            req.add_header("Authorization", f"apikey {key}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


def start_server(tmp: Path, *args: str, command: list[str] | None = None) -> Server:
    port = free_port()
    log = tmp / "server.log"
    cmd = command or [sys.executable, "-m", "packager", "serve"]
    env = {**os.environ, "PACKAGER_API_KEYS": API_KEY, "PACKAGER_DATA_DIR": str(tmp / "data")}
    process = subprocess.Popen(
        [*cmd, "--port", str(port), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return Server(base, process, log)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path)
    yield srv
    stop_server(srv)


def create_stream(server: Server, stream_id: str, dvr_duration: float = 3600) -> tuple[str, str]:
    """POST /streams: (push_url, push_key), as an operator sets an encoder up."""
    status, made = server.request(
        "POST", "/streams", {"id": stream_id, "name": stream_id, "dvr_duration": dvr_duration}
    )
    assert status == 201, made
    return made["push_url"], made["push_key"]


def push_live_ladder(ffmpeg_exe: str, url: str, seconds: float, key: str) -> None:
    """A live encoder: test pattern + tone, 3 renditions, pushed with -method PUT in real time,
    its key in a header on every PUT (ffmpeg's HLS muxer drops a `?key=` from segment PUTs)."""
    video = ffmpeg.input("testsrc2=size=640x360:rate=30", f="lavfi", re=None)
    audio = ffmpeg.input("sine=frequency=1000:sample_rate=48000", f="lavfi", re=None)
    split = video.video.filter_multi_output("split", 3)
    heights = [144, 240, 360]
    streams: list[Any] = []
    for i, h in enumerate(heights):
        streams.append(split[i].filter("scale", -2, h))
        streams.append(audio.audio)
    out = ffmpeg.output(
        *streams,
        url,
        t=seconds,
        vcodec="libx264",
        preset="ultrafast",
        g=60,
        keyint_min=60,
        sc_threshold=0,
        acodec="aac",
        ac=2,
        f="hls",
        hls_time=2,
        hls_segment_type="fmp4",
        hls_flags="program_date_time",
        method="PUT",
        headers=f"Authorization: Bearer {key}\r\n",
        var_stream_map="v:0,a:0 v:1,a:1 v:2,a:2",
        **{"b:v:0": "200k", "b:v:1": "400k", "b:v:2": "700k"},
    ).global_args("-v", "error", "-nostdin")
    cmd = out.compile(cmd=ffmpeg_exe)
    result = subprocess.run(cmd, capture_output=True, check=False, timeout=seconds + 60)
    assert result.returncode == 0, result.stderr.decode()


def decode(ffmpeg_exe: str, url: str) -> tuple[float, str]:
    """Decode every stream of `url` to the end; returns (media seconds decoded, stderr)."""
    cmd = (
        ffmpeg.input(url)
        .output("-", f="null", map="0")
        .global_args("-v", "error", "-nostdin", "-progress", "pipe:1")
        .compile(cmd=ffmpeg_exe)
    )
    result = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    times = [
        int(line.split("=", 1)[1])
        for line in result.stdout.decode().splitlines()
        if line.startswith("out_time_us=") and line.split("=", 1)[1].isdigit()
    ]
    return (max(times) / 1e6 if times else 0.0), result.stderr.decode()
