"""Serving a clip as a computed MP4 vs remuxing it with `ffmpeg -c copy`, and TTFB vs clip length.

    python bench/mp4_remux.py [--repeat 5] [--long 600]

One run, one process: a real server (create_app on a loopback port, in a thread with its own
event loop) whose DVR is filled from the fixture ladder with past start times (DemoFeed.push),
and a blocking HTTP client in the main thread. Prints two markdown tables:

1. a 60 s clip, per rendition: GET of the whole MP4 (first request, which builds the layout,
   and later ones, which reuse it) against `ffmpeg -c copy` remuxing the same init + segments
   into an MP4 (plain, and with +faststart, which is what puts moov first as we do);
2. time to first byte of a 10 s clip vs a long one (default 10 min): first request (layout
   built), later requests, and a Range in the middle of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import imageio_ffmpeg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from packager.config import Config
from packager.demo import DEFAULT_LADDER, DemoFeed, load_ladder
from packager.http.app import create_app
from packager.http.keys import INGEST, STORE
from packager.package.mp4 import build_layout
from packager.store.clips import Clip, ClipRendition
from packager.store.store import Store

READ = 1 << 20


class Server:
    """The app on 127.0.0.1:<free port>, served from a thread with its own loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Fetch:
    ttfb: float  # request sent -> status line and headers read
    total: float  # request sent -> last byte read
    size: int


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> Fetch:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    buf = bytearray(READ)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        ttfb = time.perf_counter() - t0
        assert resp.status in (200, 206), (resp.status, resp.read()[:200])
        size = 0
        while n := resp.readinto(buf):
            size += n
        return Fetch(ttfb, time.perf_counter() - t0, size)
    finally:
        conn.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fill_dvr(store: Store, feed: DemoFeed, seconds: float) -> float:
    """Push `seconds` of replayed ladder that all ended by now; returns the first start."""
    count = round(seconds / (feed.loop_seconds / len(feed.durations)))
    origin = store.clock() - sum(feed.durations[k % len(feed.durations)] for k in range(count))
    for k in range(count):
        feed.push(k, feed.segment_start(k, origin))
    return origin


def mp4_path(clip: Clip, cr: ClipRendition) -> str:
    return f"/rec/{clip.stream_id}/rec_{clip.id}_{cr.name}.mp4"


def time_ffmpeg(ffmpeg: str, cr: ClipRendition, workdir: Path, repeat: int) -> tuple[float, float]:
    """`ffmpeg -c copy` of the clip's init + segments (one fMP4 file) into an MP4."""
    source = workdir / f"{cr.name}.mp4"
    source.write_bytes(cr.init.data + b"".join(s.data for s in cr.segments))
    results = []
    for flags in ([], ["-movflags", "+faststart"]):
        runs = []
        for _ in range(repeat):
            out = workdir / "out.mp4"
            t0 = time.perf_counter()
            subprocess.run(
                [
                    ffmpeg,
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(source),
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    *flags,
                    str(out),
                ],
                check=True,
            )
            runs.append(time.perf_counter() - t0)
        results.append(median(runs))
    return results[0], results[1]


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--long", type=float, default=600.0, help="seconds of the long clip")
    args = parser.parse_args()
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()

    config = Config(memory_budget=4 << 30, dvr_duration=4 * 3600.0)
    app = create_app(config, timers=False)
    store = app[STORE]
    feed = DemoFeed(app[INGEST], load_ladder(DEFAULT_LADDER), store.clock)
    t0 = time.perf_counter()
    origin = fill_dvr(store, feed, args.long + 20)
    print(
        f"DVR filled with {args.long + 20:.0f} s x 3 renditions in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    server = Server(app)
    server.start()

    def new_clip(seconds: float) -> Clip:
        # Cuts are segment-aligned: from inside the first segment to inside the last one.
        return store.create_clip("demo", duration=seconds - 2, start=origin + 1)

    print(f"\n## A 60 s clip: serving its MP4 vs `ffmpeg -c copy` (median of {args.repeat})\n")
    print(
        "| rendition | MP4 size | GET, first (builds layout) | GET, later | throughput, later "
        "| ffmpeg -c copy | ffmpeg -c copy +faststart | faster than +faststart |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(3):
            cold = []
            for _ in range(args.repeat):  # a new clip each time: nothing cached
                clip = new_clip(60)
                cold.append(fetch(server.port, mp4_path(clip, clip.renditions[index])).total)
            clip = new_clip(60)
            cr = clip.renditions[index]
            warm = [fetch(server.port, mp4_path(clip, cr)) for _ in range(args.repeat + 1)][1:]
            warm_total = median([f.total for f in warm])
            size = warm[0].size
            plain, faststart = time_ffmpeg(ffmpeg, cr, Path(tmp), args.repeat)
            print(
                f"| {cr.name} ({clip.duration:.0f} s) | {size / 1e6:.1f} MB | {ms(median(cold))} "
                f"| {ms(warm_total)} | {size / warm_total / 1e6:.0f} MB/s | {ms(plain)} "
                f"| {ms(faststart)} | {faststart / median(cold):.0f}x first, "
                f"{faststart / warm_total:.0f}x later |"
            )

    spawn = timed(
        partial(subprocess.run, [ffmpeg, "-version"], check=True, capture_output=True), args.repeat
    )
    print(
        f"\n(ffmpeg times include starting the process: `ffmpeg -version` alone takes {ms(spawn)}.)"
    )

    print(f"\n## Time to first byte vs clip length, highest rendition (median of {args.repeat})\n")
    print(
        "| clip | segments | samples | MP4 size | layout build (in process) | TTFB, first GET "
        "| TTFB, later GET | TTFB, Range mid-file | whole GET, later |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for seconds in (10.0, args.long):
        clip = new_clip(seconds)
        cr = clip.reference
        samples = sum(t.count for s in cr.segments for t in s.media.tracks)
        build = timed(partial(build_layout, cr.segments, clip.start), args.repeat)
        cold = []
        for _ in range(args.repeat):  # a new clip each time: its layout is built by this GET
            fresh = new_clip(seconds)
            cold.append(fetch(server.port, mp4_path(fresh, fresh.reference)).ttfb)
        path = mp4_path(clip, cr)
        first = fetch(server.port, path)
        warm = [fetch(server.port, path) for _ in range(args.repeat)]
        middle = first.size // 2
        ranged = [
            fetch(server.port, path, {"Range": f"bytes={middle}-{middle + 65535}"})
            for _ in range(args.repeat)
        ]
        print(
            f"| {seconds:.0f} s | {len(cr.segments)} | {samples} | {first.size / 1e6:.1f} MB "
            f"| {ms(build)} | {ms(median(cold))} | {ms(median([f.ttfb for f in warm]))} "
            f"| {ms(median([f.ttfb for f in ranged]))} | {ms(median([f.total for f in warm]))} |"
        )
    server.stop()


if __name__ == "__main__":
    main()
