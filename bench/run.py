"""The packager against its baselines, on this machine, in one command: `python bench/run.py`.

Starts `packager serve` as a subprocess, fills its DVR with the fixture ladder over HTTP PUT
(placed in the past, so minutes of DVR take seconds), and measures, side by side:

1. playlists: req/s, p50/p99 of master and media playlists at 1/50/200 clients, vs nginx
   serving the very same bytes as static files;
2. segments: MB/s and p99 vs nginx static;
3. MP4: a 60 s clip per rendition vs `ffmpeg -c copy` of the same segments; TTFB of a 10 s,
   10 min and 1 h clip; MB/s of a full download (vs nginx serving the same file);
4. memory: RSS vs bytes held, 10 min and 1 h of DVR; growth over 1,000 clip create/expire
   cycles;
5. mixed: 3 renditions ingested in real time while 200 clients fetch playlists, segments and
   MP4s; ingest must be neither late nor lost, errors 0.

Load comes from another process (wrk, else bench/load.py), to loopback, bounded in time.
The markdown report is printed and written to bench/RESULTS.md (not in --quick).
See bench/README.md for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the repo's bench and packager packages
    sys.path[0] = str(BENCH.parent)

import aiohttp  # noqa: E402
import imageio_ffmpeg  # noqa: E402

from bench.api import Api, ClipLinks, init_names, segment_names  # noqa: E402
from bench.feed import HttpFeed  # noqa: E402
from bench.hotspots import Sampler, py_spy  # noqa: E402
from bench.load import LoadResult, run_load, wrk_binary  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.report import (  # noqa: E402
    MB,
    Report,
    Target,
    label_seconds,
    load_row,
    log,
    mb,
    ms,
    ratio,
    table,
)
from bench.servers import Nginx, Packager, nginx_binary  # noqa: E402
from bench.timing import Fetch, fetch, median  # noqa: E402
from packager.demo import DEFAULT_LADDER, RecordedRendition, load_ladder  # noqa: E402

SECTIONS = ("playlists", "segments", "mp4", "memory", "mixed")
# Every server's DVR is this much longer than what is pushed, so nothing is evicted while the
# bench runs; the memory table reports the bytes really held either way.
DVR_SLACK = 1800.0
# Contract: a clip's expiration lies at least 60 s after its creation.
MIN_LIFETIME = 60.0


# ---- one bench run ---------------------------------------------------------------------------


@dataclass
class Settings:
    dvr_seconds: float
    long_seconds: float
    duration: float
    concurrency: list[int]
    mixed_seconds: float
    mixed_clients: int
    cycles: int
    wait_expiry: bool
    repeat: int
    quick: bool


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.s = settings
        self.sections = set(args.sections)
        self.report = Report()
        self.tmp = Path(tempfile.mkdtemp(prefix="packager-bench-"))
        os.chmod(self.tmp, 0o755)  # nginx workers read the static root
        self.ladder: list[RecordedRendition] = load_ladder(DEFAULT_LADDER)
        seg_bytes = sum(len(s) for r in self.ladder for s in r.segments)
        loop_seconds = 2.0 * len(self.ladder[0].segments)
        self.bytes_per_second = seg_bytes / loop_seconds
        self.servers: list[Packager] = []
        self.nginx: Nginx | None = None
        self.use_wrk = wrk_binary() is not None and not args.no_wrk
        if args.profile and py_spy() is None:
            self.report.notes.append("--profile: py-spy not installed (`pip install py-spy`).")

    # -- plumbing --

    def budget(self, seconds: float) -> int:
        """Room for the DVR and then some: the bench measures speed, not the 507 path."""
        return int(max(2 << 30, 3 * self.bytes_per_second * (seconds + DVR_SLACK)))

    def packager(self, name: str, dvr_seconds: float) -> Packager:
        server = Packager(
            self.tmp / name,
            dvr_duration=dvr_seconds + DVR_SLACK,
            memory_budget=self.budget(dvr_seconds),
            log_level="info" if self.args.access_log else "warning",
        ).start()
        self.servers.append(server)
        return server

    async def fill(
        self, session: aiohttp.ClientSession, server: Packager, stream: str, seconds: float
    ) -> float:
        feed = HttpFeed(session, server.base, stream, self.ladder)
        t0 = time.perf_counter()
        origin, count, errors = await feed.fill(seconds)
        if errors:
            raise RuntimeError(f"ingest refused segments while filling: {errors[:3]}")
        took = time.perf_counter() - t0
        log(
            f"{stream}: {count} segments x {len(self.ladder)} renditions "
            f"({mb(feed.bytes_pushed)}) pushed in {took:.1f} s ({count * len(self.ladder) / took:.0f} segments/s)"
        )
        return origin

    async def load(
        self,
        base: str,
        paths: list[str],
        concurrency: int,
        duration: float | None = None,
        profile: str | None = None,
        server: Packager | None = None,
    ) -> LoadResult:
        seconds = duration or self.s.duration
        # The packager is one Python process: one wrk thread leaves it the other core (two
        # would fight it for CPU and show up as tail latency). nginx runs 2 workers and gets
        # more out of two wrk threads. Each side gets its better setting.
        threads = 2 if concurrency > 1 and server is None else 1
        result = await run_load(
            base, paths, concurrency, seconds, threads=threads, use_wrk=self.use_wrk
        )
        log(
            f"  {'ours ' if server else 'nginx'} c={concurrency:<3} {result.rps:9,.0f} req/s "
            f"{result.mbps:7,.0f} MB/s p50 {ms(result.p50):>9} p99 {ms(result.p99):>9} "
            f"errors {result.errors} listen drops {result.listen_drops}"
        )
        if profile and server is not None and self.args.profile and py_spy():
            # A second, sampled run: the measured one above is not slowed by the sampler.
            out = BENCH / "profiles" / f"{profile}.collapsed"
            sampler = Sampler(server.pid, seconds, out)
            await asyncio.sleep(0.2)
            await run_load(base, paths, concurrency, seconds, threads=threads, use_wrk=self.use_wrk)
            summary = await asyncio.to_thread(sampler.wait)
            if summary:
                (BENCH / "profiles" / f"{profile}.txt").write_text(summary)
                self.report.profiles.append((profile, summary))
        return result

    # -- the run --

    async def run(self) -> int:
        started = time.time()
        load_before = os.getloadavg()
        timeout = aiohttp.ClientTimeout(total=600)
        connector = aiohttp.TCPConnector(limit=64)
        try:
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                await self._run(session)
        finally:
            for server in self.servers:
                server.stop()
            if self.nginx is not None:
                self.nginx.stop()
            if not self.args.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
        elapsed = time.time() - started
        self.write(started, elapsed, load_before)
        return 1 if self.report.failures else 0

    async def _section(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        if name not in self.sections:
            return
        log(f"section {name}")
        try:
            await body()
        except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
            text = "".join(traceback.format_exception(exc))
            self.report.failures.append(f"{name}: {exc!r}")
            self.report.add(f"{name}: FAILED", f"```\n{text}```\n")

    async def _run(self, session: aiohttp.ClientSession) -> None:
        s = self.s
        a = self.packager("dvr", s.dvr_seconds)
        self.a = a
        self.api = Api(session, a.base)
        self.rss_empty = a.memory()["VmRSS"]
        self.origin = await self.fill(session, a, "bench", s.dvr_seconds)
        self.mem_rows: list[list[str]] = []
        self.mem_checks: list[tuple[str, int, int]] = []  # (what, rss, held)
        await self.snapshot_memory(self.api, a, f"{s.dvr_seconds / 60:g} min DVR, after filling")

        # The clips every section reads: a 60 s one mid-DVR, a 10 s one, and the whole DVR.
        mid = self.origin + math.floor(s.dvr_seconds / 4) * 2 + 1
        self.clip60 = await self.api.clip("bench", mid, 58)
        self.clip10 = await self.api.clip("bench", mid, 8)
        self.clip_dvr = await self.api.clip("bench", self.origin + 1, s.dvr_seconds - 2)
        await self.export_static()

        await self._section("playlists", self.playlists)
        await self._section("segments", self.segments)
        await self._section("mp4", self.mp4_vs_ffmpeg)
        await self._section("mixed", self.mixed)
        # The long DVR runs on its own server while the churn's clips wait out their minute
        # on this one; on this one itself (--dvr-minutes >= --long-minutes), before the churn,
        # so the churn's before/after compare like with like.
        long_here = s.long_seconds <= s.dvr_seconds
        long_section = "mp4" if "mp4" in self.sections else "memory"
        if self.sections & {"mp4", "memory"} and long_here:
            await self._section(long_section, lambda: self.long_dvr(session))
        churn: Churn | None = None
        if "memory" in self.sections:
            churn = Churn(self, session)
            await self._section("memory", churn.start)
        if self.sections & {"mp4", "memory"} and not long_here:
            await self._section(long_section, lambda: self.long_dvr(session))
        if churn is not None and churn.started:
            await self._section("memory", churn.finish)
        if "memory" in self.sections:
            self.memory_report(churn)

    # -- static baseline --

    async def export_static(self) -> None:
        """The packager's own bytes, written under the same paths for nginx to serve."""
        self.static_root = self.tmp / "www"
        paths = [self.clip60.master, self.clip_dvr.media(self.clip_dvr.renditions[0])]
        self.segment_paths: list[str] = []
        for r in self.clip60.renditions:
            media = await self.api.get(self.clip60.media(r))
            paths.append(self.clip60.media(r))
            paths += [self.clip60.file(name) for name in init_names(media)]
            self.segment_paths += [self.clip60.file(name) for name in segment_names(media)]
        for path in paths + self.segment_paths:
            target = self.static_root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(await self.api.get(path))
        for d, _, files in os.walk(self.static_root):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        binary = nginx_binary()
        if binary is None or self.args.no_nginx:
            self.report.notes.append(
                "nginx not installed (or --no-nginx): static baselines skipped"
                + ("; `apt-get install nginx` adds them." if binary is None else ".")
            )
            return
        self.nginx = Nginx(binary, self.static_root, self.tmp / "nginx").start()
        check = self.nginx.base + self.clip60.master
        with urlopen(check) as resp:
            assert resp.read() == (self.static_root / self.clip60.master.lstrip("/")).read_bytes()

    # -- 1. playlists --

    async def playlists(self) -> None:
        c = self.clip60
        low = c.renditions[0]
        runs: list[tuple[str, str, list[int], str | None]] = [
            ("master", c.master, self.s.concurrency, "playlist-master"),
            (
                f"media ({low}, {int(c.duration)} s)",
                c.media(low),
                self.s.concurrency,
                "playlist-media",
            ),
        ]
        long_media = self.clip_dvr.media(self.clip_dvr.renditions[0])
        segments_long = round(self.clip_dvr.duration / 2)
        runs.append(
            (
                f"media (whole DVR, {segments_long} segments)",
                long_media,
                [sorted(self.s.concurrency)[len(self.s.concurrency) // 2]],
                None,
            )
        )
        rows = []
        self.playlist_ratios: list[tuple[int, float]] = []
        for label, path, levels, profile in runs:
            size = len(await self.api.get(path))
            for conc in levels:
                ours = await self.load(
                    self.a.base,
                    [path],
                    conc,
                    profile=profile if conc == max(levels) else None,
                    server=self.a,
                )
                base = await self.load(self.nginx.base, [path], conc) if self.nginx else None
                rows.append(load_row(f"{label}, {size:,} B", conc, ours, base, rate=True))
                if base and label.startswith("media (") and "whole" not in label:
                    self.playlist_ratios.append((conc, ours.rps / base.rps))
        self.report.add(
            "1. Playlists: requests/s and latency (ours vs nginx static, same bytes)",
            table(
                [
                    "playlist",
                    "clients",
                    "ours req/s",
                    "nginx req/s",
                    "ours / nginx",
                    "ours p50",
                    "nginx p50",
                    "ours p99",
                    "nginx p99",
                    "errors (ours, nginx)",
                    "listen-queue drops (ours, nginx)",
                ],
                rows,
            ),
        )
        if self.playlist_ratios:
            got = ", ".join(f"{r:.2f}x at {c}" for c, r in self.playlist_ratios)
            met = all(r >= 0.5 for c, r in self.playlist_ratios if c > 1)
            self.report.targets.append(
                Target("media playlist req/s vs nginx static", "≥ 0.5x", got, met)
            )

    # -- 2. segments --

    async def segments(self) -> None:
        paths = self.segment_paths
        sizes = [(self.static_root / p.lstrip("/")).stat().st_size for p in paths]
        rows = []
        for conc in self.s.concurrency:
            ours = await self.load(
                self.a.base,
                paths,
                conc,
                profile="segments" if conc == max(self.s.concurrency) else None,
                server=self.a,
            )
            base = await self.load(self.nginx.base, paths, conc) if self.nginx else None
            rows.append(load_row(f"{len(paths)} segments", conc, ours, base, rate=False))
        self.report.add(
            "2. Segments: throughput and latency (ours vs nginx static, same bytes)",
            f"The {len(paths)} media segments of the 60 s clip (all renditions, "
            f"{min(sizes) / 1e3:.0f}-{max(sizes) / 1e3:.0f} kB, mean {sum(sizes) / len(sizes) / 1e3:.0f} kB), "
            "each client GETting them in turn.\n\n"
            + table(
                [
                    "segments",
                    "clients",
                    "ours MB/s",
                    "nginx MB/s",
                    "ours / nginx",
                    "ours req/s",
                    "nginx req/s",
                    "ours p50",
                    "nginx p50",
                    "ours p99",
                    "nginx p99",
                    "errors (ours, nginx)",
                    "listen-queue drops (ours, nginx)",
                ],
                rows,
            ),
        )

    # -- 3a. MP4 of a 60 s clip vs ffmpeg --

    async def mp4_vs_ffmpeg(self) -> None:
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        repeat = self.s.repeat
        mid = self.origin + math.floor(self.s.dvr_seconds / 4) * 2 + 1
        rows = []
        speedups = []
        work = self.tmp / "ffmpeg"
        work.mkdir(exist_ok=True)
        for r in self.clip60.renditions:
            cold = []
            for _ in range(repeat):  # a new clip each time: the GET builds its layout
                fresh = await self.api.clip("bench", mid, 58)
                cold.append(await asyncio.to_thread(fetch, self.a.port, fresh.mp4(r)))
            warm = [
                await asyncio.to_thread(fetch, self.a.port, self.clip60.mp4(r))
                for _ in range(repeat + 1)
            ][1:]
            media = (self.static_root / self.clip60.media(r).lstrip("/")).read_bytes()
            source = work / f"{r}.mp4"
            with source.open("wb") as out:
                for name in init_names(media)[:1] + segment_names(media):
                    out.write((self.static_root / self.clip60.file(name).lstrip("/")).read_bytes())
            plain = await asyncio.to_thread(
                time_ffmpeg, ffmpeg, source, work / "out.mp4", [], repeat
            )
            faststart = await asyncio.to_thread(
                time_ffmpeg, ffmpeg, source, work / "out.mp4", ["-movflags", "+faststart"], repeat
            )
            cold_t = median([f.total for f in cold])
            warm_t = median([f.total for f in warm])
            size = warm[0].size
            cold_ttfb = median([f.ttfb for f in cold])
            static = "-"
            if self.nginx is not None:
                target = self.static_root / self.clip60.mp4(r).lstrip("/")
                await asyncio.to_thread(download_to, self.a.port, self.clip60.mp4(r), target)
                os.chmod(target, 0o644)
                runs = [
                    await asyncio.to_thread(fetch, self.nginx.port, self.clip60.mp4(r))
                    for _ in range(repeat)
                ]
                static = ms(median([f.total for f in runs]))
            speedups.append((r, faststart / cold_t, faststart / warm_t))
            rows.append(
                [
                    f"{r} ({self.clip60.duration:.0f} s)",
                    mb(size),
                    ms(cold_ttfb),
                    ms(cold_t),
                    ms(warm_t),
                    f"{size / warm_t / MB:,.0f} MB/s",
                    static,
                    ms(plain),
                    ms(faststart),
                    f"{faststart / cold_t:.0f}x / {faststart / warm_t:.0f}x",
                    f"{faststart / cold_ttfb:.0f}x",
                ]
            )
        spawn = await asyncio.to_thread(time_command, [ffmpeg, "-version"], repeat)
        self.report.add(
            "3a. MP4: a 60 s clip, served vs `ffmpeg -c copy` of the same segments",
            f"Median of {repeat}. *First GET* is a new clip's first request (it computes the MP4 "
            "layout); *later GET* reuses it. ffmpeg remuxes the clip's init + segments from a "
            "local file (its best case); +faststart puts moov first, as we do. ffmpeg times include "
            f"starting the process (`ffmpeg -version` alone: {ms(spawn)}). Whole-file times "
            "include reading the body with a Python client (http.client), which tops out near "
            "2 GB/s here; the first byte is what a player waits for, since an MP4 that is "
            "remuxed first cannot send anything before ffmpeg is done.\n\n"
            + table(
                [
                    "rendition",
                    "MP4 size",
                    "ours, first GET: first byte",
                    "ours, first GET: whole",
                    "ours, later GET: whole",
                    "ours throughput (later)",
                    "nginx static, same file: whole",
                    "ffmpeg -c copy",
                    "ffmpeg +faststart",
                    "ffmpeg+faststart / ours whole (first / later GET)",
                    "ffmpeg+faststart / ours first byte",
                ],
                rows,
            ),
        )
        worst = min(speedups, key=lambda x: x[1])
        self.report.targets.append(
            Target(
                "60 s clip MP4 vs ffmpeg -c copy +faststart",
                "≥ 20x faster",
                ", ".join(f"{r}: {c:.0f}x (first GET), {w:.0f}x (later)" for r, c, w in speedups),
                worst[1] >= 20,
            )
        )

    # -- 3b/4. the long DVR: TTFB vs clip length, full download, memory --

    async def long_dvr(self, session: aiohttp.ClientSession) -> None:
        s = self.s
        if s.long_seconds <= s.dvr_seconds:
            server, api, origin, length = self.a, self.api, self.origin, s.dvr_seconds
        else:
            server = self.packager("long", s.long_seconds)
            api = Api(session, server.base)
            rss_empty = server.memory()["VmRSS"]
            origin = await self.fill(session, server, "bench", s.long_seconds)
            length = s.long_seconds
            await self.snapshot_memory(
                api, server, f"{length / 60:g} min DVR, after filling", rss_empty
            )
        if "mp4" in self.sections:
            await self.ttfb(server, api, origin, length)
            await self.snapshot_memory(
                api,
                server,
                f"{length / 60:g} min DVR, + clips with built MP4 layouts",
                self.rss_empty if server is self.a else rss_empty,
            )

    async def ttfb(self, server: Packager, api: Api, origin: float, length: float) -> None:
        repeat = self.s.repeat
        lengths = [10.0, min(600.0, length / 2), length] if length > 20 else [10.0]
        rows = []
        firsts: dict[float, tuple[float, float]] = {}
        longest: tuple[ClipLinks, Fetch] | None = None
        for seconds in lengths:
            cold = []
            for _ in range(repeat):  # a new clip each time: this GET builds its layout
                fresh = await api.clip("bench", origin + 1, seconds - 2)
                cold.append(await asyncio.to_thread(fetch, server.port, fresh.mp4()))
            clip = await api.clip("bench", origin + 1, seconds - 2)
            first = await asyncio.to_thread(fetch, server.port, clip.mp4())
            warm = [await asyncio.to_thread(fetch, server.port, clip.mp4()) for _ in range(repeat)]
            middle = first.size // 2
            ranged = [
                await asyncio.to_thread(
                    fetch, server.port, clip.mp4(), {"Range": f"bytes={middle}-{middle + 65535}"}
                )
                for _ in range(repeat)
            ]
            cold_ttfb = median([f.ttfb for f in cold])
            warm_ttfb = median([f.ttfb for f in warm])
            whole = median([f.total for f in warm])
            firsts[seconds] = (cold_ttfb, warm_ttfb)
            longest = (clip, first)
            rows.append(
                [
                    label_seconds(seconds),
                    f"{round(seconds / 2)}",
                    mb(first.size),
                    ms(cold_ttfb),
                    ms(warm_ttfb),
                    ms(median([f.ttfb for f in ranged])),
                    ms(whole),
                    f"{first.size / whole / MB:,.0f} MB/s",
                ]
            )
        body = (
            f"Highest rendition (`master.mp4`), median of {repeat}. *First GET*: a new clip, so "
            "the TTFB includes computing its layout (sample tables, moov); *later*: the layout "
            "is reused. *Range*: 64 KiB from the middle of the file.\n\n"
            + table(
                [
                    "clip",
                    "segments",
                    "MP4 size",
                    "TTFB, first GET",
                    "TTFB, later GET",
                    "TTFB, Range mid-file",
                    "full download",
                    "throughput",
                ],
                rows,
            )
        )
        if longest is not None and self.nginx is not None:
            clip, first = longest
            path = clip.mp4()
            target = self.static_root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(download_to, server.port, path, target)
            os.chmod(target, 0o644)
            static = [await asyncio.to_thread(fetch, self.nginx.port, path) for _ in range(repeat)]
            ours = [await asyncio.to_thread(fetch, server.port, path) for _ in range(repeat)]
            o, n = median([f.total for f in ours]), median([f.total for f in static])
            body += "\n" + table(
                [
                    "full download, one client",
                    "size",
                    "ours",
                    "nginx static (same file)",
                    "ours / nginx",
                ],
                [
                    [
                        label_seconds(lengths[-1]) + " clip",
                        mb(first.size),
                        f"{first.size / o / MB:,.0f} MB/s",
                        f"{first.size / n / MB:,.0f} MB/s",
                        ratio(n, o),
                    ]
                ],
            )
        self.report.add("3b. MP4: time to first byte vs clip length, and full downloads", body)
        short, long_ = firsts[lengths[0]], firsts[lengths[-1]]
        self.report.targets.append(
            Target(
                f"TTFB of a {label_seconds(lengths[-1])} clip vs a 10 s clip",
                "≤ 2x",
                f"first GET {ratio(long_[0], short[0])} ({ms(long_[0])} vs {ms(short[0])}); "
                f"later GET {ratio(long_[1], short[1])} ({ms(long_[1])} vs {ms(short[1])})",
                long_[0] <= 2 * short[0] and long_[1] <= 2 * short[1],
            )
        )

    # -- 4. memory --

    async def snapshot_memory(
        self, api: Api, server: Packager, what: str, rss_empty: int | None = None
    ) -> None:
        stats = (await api.stats())["memory"]
        rss = server.memory()["VmRSS"]
        empty = rss_empty if rss_empty is not None else self.rss_empty
        held = stats["held_bytes"]
        limit = 1.2 * held + 100 * MB
        self.mem_rows.append(
            [
                what,
                mb(stats["dvr_bytes"]),
                mb(held),
                mb(empty),
                mb(rss),
                f"{rss / held:.2f}" if held else "-",
                f"{(rss - empty - held) / MB:+,.1f} MB",
                mb(limit),
                "yes" if rss <= limit else "**no**",
            ]
        )
        self.mem_checks.append((what, rss, held))

    def memory_report(self, churn: Churn | None) -> None:
        body = (
            "RSS is the packager process's VmRSS; *held* is media the store counts against its "
            "budget (DVR + bytes only clips still hold), from `GET /stats`. *Overhead* = RSS - "
            "the empty process - held.\n\n"
            + table(
                [
                    "state",
                    "DVR bytes",
                    "held",
                    "empty process RSS",
                    "RSS",
                    "RSS / held",
                    "overhead",
                    "target: 1.2 x held + 100 MB",
                    "met",
                ],
                self.mem_rows,
            )
        )
        if churn is not None and churn.rows:
            body += "\n" + churn.describe()
        self.report.add("4. Memory: RSS vs bytes held", body)
        for what, rss, held in self.mem_checks:
            if "after filling" in what:
                self.report.targets.append(
                    Target(
                        f"RSS, {what.split(',')[0]}",
                        "≤ 1.2 x DVR bytes + 100 MB",
                        f"{mb(rss)} for {mb(held)} held (limit {mb(1.2 * held + 100 * MB)})",
                        rss <= 1.2 * held + 100 * MB,
                    )
                )

    # -- 5. mixed load --

    async def mixed(self) -> None:
        s = self.s
        c60, c10 = self.clip60, self.clip10
        rng = random.Random(7)
        playlists = [c60.master] * 4 + [c60.media(r) for r in c60.renditions] * 4
        segments = rng.sample(self.segment_paths, min(60, len(self.segment_paths)))
        mp4s = [c10.mp4(r) for r in c10.renditions] + [c10.mp4()] * 2
        mp4s = mp4s * 2
        paths = playlists + segments + mp4s
        rng.shuffle(paths)
        async with aiohttp.ClientSession() as ingest_session:
            feed = HttpFeed(ingest_session, self.a.base, "live", self.ladder)
            load = asyncio.create_task(
                self.load(self.a.base, paths, s.mixed_clients, s.mixed_seconds + 1, server=self.a)
            )
            await asyncio.sleep(0.5)  # the clients are connected before the first segment is due
            origin, pushed = await feed.live(s.mixed_seconds)
            result = await load
        stream = await self.api.json("GET", "/streams/live")
        counts = {r["ingest_name"]: r["segments"] for r in stream["renditions"]}
        clip = await self.api.clip("live", origin + 0.5, len(pushed) * feed.segment_seconds - 1)
        discontinuities = 0
        in_clip = []
        for r in clip.renditions:
            media = (await self.api.get(clip.media(r))).decode()
            discontinuities += media.count("#EXT-X-DISCONTINUITY")
            in_clip.append(len(segment_names(media.encode())))
        lag = [p.done - p.due for p in pushed]
        late = sum(1 for x in lag if x > feed.segment_seconds)
        lost = sum(len(pushed) - n for n in counts.values()) + sum(len(pushed) - n for n in in_clip)
        ingest_errors = sum(len(p.errors) for p in pushed)
        errors = result.errors + ingest_errors
        share = ", ".join(
            f"{100 * len(group) / len(paths):.0f}% {name}"
            for name, group in (("playlists", playlists), ("segments", segments), ("MP4s", mp4s))
        )
        self.report.add(
            "5. Mixed load: real-time ingest of 3 renditions under playback load",
            f"{s.mixed_seconds:g} s: one segment per rendition every "
            f"{feed.segment_seconds:g} s pushed at its end (as an encoder does) while "
            f"{s.mixed_clients} clients GET playlists, segments and MP4s of clips "
            f"({share} of requests; MP4s of a 10 s clip).\n\n"
            + table(
                [
                    "clients",
                    "req/s",
                    "MB/s",
                    "p50",
                    "p99",
                    "max",
                    "HTTP errors",
                    "listen-queue drops",
                    "segments pushed",
                    "ingest: push → answered, p50 / max",
                    "late (> 1 segment)",
                    "lost",
                    "discontinuities",
                    "ingest errors",
                ],
                [
                    [
                        str(s.mixed_clients),
                        f"{result.rps:,.0f}",
                        f"{result.mbps:,.0f}",
                        ms(result.p50),
                        ms(result.p99),
                        ms(result.max),
                        str(result.errors) + (f" ({result.detail})" if result.detail else ""),
                        "-" if result.listen_drops is None else str(result.listen_drops),
                        f"{len(pushed)} x {len(self.ladder)}",
                        f"{ms(median(lag))} / {ms(max(lag))} (first push, new connections: {ms(lag[0])})",
                        str(late),
                        str(lost),
                        str(discontinuities),
                        str(ingest_errors),
                    ]
                ],
            ),
        )
        self.report.targets.append(
            Target(
                "mixed load: ingest on time, nothing lost, no errors",
                "late 0, lost 0, errors 0",
                f"late {late}, lost {lost}, errors {errors} (max push lag {ms(max(lag))})",
                late == 0 and lost == 0 and errors == 0 and discontinuities == 0,
            )
        )

    # -- output --

    def write(
        self, started: float, elapsed: float, load_before: tuple[float, float, float]
    ) -> None:
        when = datetime.fromtimestamp(started, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python bench/run.py" + (
            "" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:])
        )
        load_after = os.getloadavg()
        intro = [
            "# Benchmark results",
            "",
            f"`{command}` on {when}, {elapsed:.0f} s in all. Generated by bench/run.py; "
            "see bench/README.md for what each section measures.",
            "",
            table(["machine", ""], [[k, v] for k, v in machine()], "ll"),
            f"Load average before / after the run: {load_before[0]:.2f} / {load_after[0]:.2f} "
            "(the packager, nginx and the load generator share these cores; other work on the "
            "machine shows up as noise).",
            "",
            f"Settings: DVR {self.s.dvr_seconds / 60:g} min of the fixture ladder "
            f"(3 renditions, {self.bytes_per_second / 1e3:.0f} kB/s together), long DVR "
            f"{self.s.long_seconds / 60:g} min, {self.s.duration:g} s per load run, "
            f"load by {'wrk (1 thread against the packager; 2 against nginx above 1 client)' if self.use_wrk else 'bench/load.py (aiohttp client): wrk not installed'}; "
            f"packager log level {'info (JSON access log on)' if self.args.access_log else 'warning (no access log, like nginx here)'}.",
            "",
        ]
        if self.s.quick:
            intro += ["**--quick: a smoke run with small numbers; not results.**", ""]
        text = self.report.markdown(intro)
        output = self.args.output
        if output is None and not self.s.quick:
            output = BENCH / "RESULTS.md"
        if output is not None:
            Path(output).write_text(text)
            log(f"written to {output}")
        print("\n" + "=" * 80 + "\n" + text)


class Churn:
    """1,000 clip create/expire cycles: RSS before, with all of them alive, after they expired.

    A clip lives at least 60 s (contract), so the cycles overlap: every clip is created (and its
    playlists and MP4 layout built by GETs) at once, then the run goes on with other sections
    until they have all expired.
    """

    PER_STREAM = 500  # the store allows 1,000 live clips per stream; spread over a few streams

    def __init__(self, bench: Bench, session: aiohttp.ClientSession) -> None:
        self.bench = bench
        self.session = session
        self.rows: list[list[str]] = []
        self.started = False
        self.deadline = 0.0

    async def start(self) -> None:
        b = self.bench
        n = b.s.cycles
        streams = [f"churn{i}" for i in range(max(1, math.ceil(n / self.PER_STREAM)))]
        origins = {}
        for stream in streams:
            origins[stream] = await b.fill(self.session, b.a, stream, 30)
        self.before_stats = await b.api.stats()
        self.before = b.a.memory()["VmRSS"]
        t0 = time.perf_counter()
        # At most 4 MP4 requests at once: the packager builds 4 layouts at a time and answers
        # 503 + Retry-After past that; a 503 is retried as a player would.
        sem = asyncio.Semaphore(4)
        errors: list[str] = []
        self.retries = 0

        async def cycle(i: int) -> None:
            stream = streams[i % len(streams)]
            async with sem:
                try:
                    expiration = time.time() + MIN_LIFETIME + 2
                    clip = await b.api.clip(
                        stream, origins[stream] + 1 + 2 * (i % 10), 8, expiration
                    )
                    self.deadline = max(self.deadline, expiration)
                    await b.api.get(clip.master)
                    await b.api.get(clip.media(clip.renditions[-1]))
                    mp4 = clip.mp4(clip.renditions[i % len(clip.renditions)])
                    for attempt in range(10):
                        status = await b.api.status(mp4, {"Range": "bytes=0-1"})
                        if status != 503:
                            break
                        self.retries += 1
                        await asyncio.sleep(0.05 * (attempt + 1))
                    if status != 206:
                        raise RuntimeError(f"GET {mp4} (Range) -> {status}")
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(repr(exc))

        await asyncio.gather(*(cycle(i) for i in range(n)))
        self.create_seconds = time.perf_counter() - t0
        self.errors = errors
        self.peak_stats = await b.api.stats()
        self.peak = b.a.memory()["VmRSS"]
        self.started = True
        log(
            f"churn: {n} clips created in {self.create_seconds:.1f} s; they expire by "
            f"{time.strftime('%H:%M:%S', time.localtime(self.deadline))}"
        )

    async def finish(self) -> None:
        b = self.bench
        n = b.s.cycles
        if b.s.wait_expiry:
            wait = self.deadline + 1.5 - time.time()
            if wait > 0:
                log(f"churn: waiting {wait:.0f} s for the clips to expire")
                await asyncio.sleep(wait)
            for _ in range(20):
                stats = await b.api.stats()
                if stats["clips"] <= self.before_stats["clips"]:
                    break
                await asyncio.sleep(0.5)
            after_stats = await b.api.stats()
            after = b.a.memory()["VmRSS"]
        else:
            after_stats, after = None, None
        peak_hwm = b.a.memory()["VmHWM"]

        def row(what: str, rss: int | None, stats: dict[str, Any] | None) -> list[str]:
            if rss is None or stats is None:
                return [what, "-", "-", "-", "not awaited (--quick: clips live ≥ 60 s)"]
            return [
                what,
                str(stats["clips"]),
                mb(stats["memory"]["pinned_bytes"]),
                mb(rss),
                f"{(rss - self.before) / MB:+,.1f} MB",
            ]

        self.rows = [
            row("before", self.before, self.before_stats),
            row(
                f"{n} clips alive (each: create, 2 playlists, MP4 layout)",
                self.peak,
                self.peak_stats,
            ),
            row(f"all {n} expired", after, after_stats),
        ]
        self.growth = None if after is None else after - self.before
        self.peak_hwm = peak_hwm
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} clip cycles failed: {self.errors[:3]}")
        if after_stats is not None and after_stats["clips"] > self.before_stats["clips"]:
            raise RuntimeError(f"clips still alive after expiry: {after_stats['clips']}")

    def describe(self) -> str:
        n = self.bench.s.cycles
        text = (
            f"\n{n} clip create/expire cycles on the {self.bench.s.dvr_seconds / 60:g} min server "
            f"(clips of 10 s spread over {max(1, math.ceil(n / self.PER_STREAM))} streams, "
            f"created in {self.create_seconds:.1f} s, each expiring {MIN_LIFETIME + 2:.0f} s "
            "later: the contract's shortest life; "
            f"{self.retries} MP4 requests answered 503 (build slots busy) and were retried).\n\n"
        )
        text += table(["state", "live clips", "pinned bytes", "RSS", "RSS vs before"], self.rows)
        if self.growth is not None:
            text += (
                f"\nGrowth after all {n} expired: {self.growth / MB:+.1f} MB "
                f"({self.growth / n / 1e3:+.1f} kB per cycle); the store's own counters (live "
                "clips, pinned bytes) are back where they were. RSS that stays up is memory the "
                "allocator keeps after freeing, or a leak: a longer run with more cycles tells "
                "them apart (`--cycles`).\n"
            )
        return text


# ---- small blocking helpers (run in threads) -------------------------------------------------


def urlopen(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def time_command(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        runs.append(time.perf_counter() - t0)
    return median(runs)


def time_ffmpeg(ffmpeg: str, source: Path, out: Path, flags: list[str], repeat: int) -> float:
    cmd = [
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
    ]
    return time_command(cmd, repeat)


def download_to(port: int, path: str, target: Path) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        with target.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    finally:
        conn.close()


# ---- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        description="Measure the packager against nginx static and ffmpeg on this machine."
    )
    parser.add_argument(
        "--dvr-minutes",
        type=float,
        default=None,
        help="DVR pushed into the main server, 1-120 (default 10)",
    )
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=None,
        help="DVR of the server for long clips and memory (default 60)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (default 5)"
    )
    parser.add_argument(
        "--concurrency",
        default=None,
        help="client counts for playlists and segments (default 1,50,200)",
    )
    parser.add_argument(
        "--mixed-seconds",
        type=float,
        default=None,
        help="length of the mixed-load run (default 20)",
    )
    parser.add_argument("--mixed-clients", type=int, default=None, help="default 200")
    parser.add_argument(
        "--cycles", type=int, default=None, help="clip create/expire cycles (default 1000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per MP4/ffmpeg timing, median (default 5)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run (< 60 s); prints, writes no RESULTS.md",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the packager with py-spy (extra runs; bench/profiles/)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="run the packager at log level info (JSON access log on)",
    )
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx baselines")
    parser.add_argument("--no-wrk", action="store_true", help="load with bench/load.py, not wrk")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file (default bench/RESULTS.md; none with --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, files)")
    args = parser.parse_args(argv)
    args.sections = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; pick from {','.join(SECTIONS)}")
    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    dvr_minutes = pick(args.dvr_minutes, 10.0, 2.0)
    if not 2 <= dvr_minutes <= 120:
        parser.error("--dvr-minutes must lie in [2, 120]")
    long_minutes = pick(args.long_minutes, 60.0, 4.0)
    if not 1 <= long_minutes <= 120:
        parser.error("--long-minutes must lie in [1, 120]")
    concurrency = pick(args.concurrency, "1,50,200", "1,50")
    settings = Settings(
        dvr_seconds=round(dvr_minutes * 30) * 2.0,
        long_seconds=round(long_minutes * 30) * 2.0,
        duration=pick(args.duration, 5.0, 1.0),
        concurrency=[int(c) for c in str(concurrency).split(",") if c.strip()],
        mixed_seconds=pick(args.mixed_seconds, 20.0, 6.0),
        mixed_clients=pick(args.mixed_clients, 200, 50),
        cycles=pick(args.cycles, 1000, 50),
        wait_expiry=not quick,
        repeat=pick(args.repeat, 5, 2),
        quick=quick,
    )
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(Bench(args, settings).run())


if __name__ == "__main__":
    sys.exit(main())
