"""What every section gets, and what a section is.

Before any section runs, `prepare` starts the main packager, fills its DVR over the ingest API,
cuts the clips the sections share and writes a static copy of their bytes for nginx. Sections
then read all of that from one `Context`: they never start the main server, never parse the
command line, and add to the report only through `ctx.report` and `ctx.memory`. A section
that needs servers of its own starts them through `ctx.lab` (bench/lab.py), which stops every
process at the end.
"""

from __future__ import annotations

import asyncio
import math
import os
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.api import Api, ClipLinks, init_names, segment_names
from bench.hotspots import Sampler, py_spy
from bench.lab import Dvr, Lab
from bench.load import LoadResult, run_load, wrk_binary
from bench.report import MB, Report, log, mb, ms
from bench.servers import Nginx, Packager, nginx_binary

PROFILES = Path(__file__).resolve().parent / "profiles"


@dataclass
class Settings:
    """The command line, resolved: --quick's small numbers or the full run's."""

    dvr_seconds: float
    long_seconds: float
    duration: float  # seconds per load run
    concurrency: list[int]
    mixed_seconds: float
    mixed_clients: int
    cycles: int
    wait_expiry: bool
    repeat: int
    quick: bool
    new_clips: int = 20  # new clips per length for the first-GET medians (3b)
    sections: list[str] = field(default_factory=list)
    profile: bool = False
    access_log: bool = False
    no_nginx: bool = False
    no_wrk: bool = False
    keep: bool = False
    output: Path | None = None

    @property
    def use_wrk(self) -> bool:
        return wrk_binary() is not None and not self.no_wrk


@dataclass
class SharedClips:
    """The clips every section reads, cut once on the main DVR."""

    start: float  # where clip60 and clip10 start (unix s): a quarter into the DVR
    clip60: ClipLinks  # 60 s mid-DVR: playlists, segments, the MP4 vs ffmpeg
    clip10: ClipLinks  # 10 s at the same place: the mixed load's MP4s
    whole: ClipLinks  # the whole DVR: the longest media playlist


@dataclass
class StaticCopy:
    """The main server's bytes for the shared clips, as files, and nginx serving them."""

    root: Path
    segment_paths: list[str]  # clip60's media segments, every rendition
    nginx: Nginx | None  # None: not installed or --no-nginx

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")


@dataclass
class MemoryLog:
    """RSS against held bytes, snapshotted by whichever section has the server in that state;
    the memory section renders it (and whatever `blocks` others add) at the end."""

    rows: list[list[str]] = field(default_factory=list)
    checks: list[tuple[str, int, int]] = field(default_factory=list)  # (what, rss, held)
    blocks: list[str] = field(default_factory=list)  # more markdown under the table

    async def snapshot(self, dvr: Dvr, what: str) -> None:
        stats = (await dvr.api.stats())["memory"]
        rss = dvr.server.memory()["VmRSS"]
        held = stats["held_bytes"]
        limit = 1.2 * held + 100 * MB
        self.rows.append(
            [
                what,
                mb(stats["dvr_bytes"]),
                mb(held),
                mb(dvr.rss_empty),
                mb(rss),
                f"{rss / held:.2f}" if held else "-",
                f"{(rss - dvr.rss_empty - held) / MB:+,.1f} MB",
                mb(limit),
                "yes" if rss <= limit else "**no**",
            ]
        )
        self.checks.append((what, rss, held))


@dataclass
class Context:
    """Everything a section reads, built once by `prepare`."""

    settings: Settings
    report: Report
    lab: Lab
    main: Dvr
    clips: SharedClips
    static: StaticCopy
    memory: MemoryLog
    _long: asyncio.Task[Dvr] | None = field(default=None, init=False, repr=False)

    @property
    def long_on_main(self) -> bool:
        """--dvr-minutes at least --long-minutes: the long clips are cut on the main server."""
        return self.settings.long_seconds <= self.settings.dvr_seconds

    async def long_dvr(self) -> Dvr:
        """The DVR for long clips: a second server, started and filled on first use (its
        memory row recorded then); the main one when that is long enough."""
        if self.long_on_main:
            return self.main
        if self._long is None:  # a task, so a second caller after a failure sees that failure
            self._long = asyncio.ensure_future(self._start_long())
        return await self._long

    async def _start_long(self) -> Dvr:
        dvr = await self.lab.dvr("long", self.settings.long_seconds)
        await self.memory.snapshot(dvr, f"{dvr.label}, after filling")
        return dvr

    async def load(
        self,
        target: Packager | Nginx,
        paths: list[str],
        concurrency: int,
        *,
        duration: float | None = None,
        profile: str | None = None,
    ) -> LoadResult:
        """A closed-loop load run against `target`; with --profile, a second run sampled by
        py-spy when `profile` names one (the measured run is never slowed by the sampler)."""
        seconds = duration or self.settings.duration
        ours = isinstance(target, Packager)
        # The packager is one Python process: one wrk thread leaves it the other core (two
        # would fight it for CPU and show up as tail latency). nginx runs 2 workers and gets
        # more out of two wrk threads. Each side gets its better setting.
        threads = 2 if concurrency > 1 and not ours else 1
        result = await run_load(
            target.base, paths, concurrency, seconds, threads=threads, use_wrk=self.settings.use_wrk
        )
        log(
            f"  {'ours ' if ours else 'nginx'} c={concurrency:<3} {result.rps:9,.0f} req/s "
            f"{result.mbps:7,.0f} MB/s p50 {ms(result.p50):>9} p99 {ms(result.p99):>9} "
            f"errors {result.errors} listen drops {result.listen_drops}"
        )
        if profile and isinstance(target, Packager) and self.settings.profile and py_spy():
            out = PROFILES / f"{profile}.collapsed"
            sampler = Sampler(target.pid, seconds, out)
            await asyncio.sleep(0.2)
            await run_load(
                target.base,
                paths,
                concurrency,
                seconds,
                threads=threads,
                use_wrk=self.settings.use_wrk,
            )
            summary = await asyncio.to_thread(sampler.wait)
            if summary:
                (PROFILES / f"{profile}.txt").write_text(summary)
                self.report.profiles.append((profile, summary))
        return result


class Section(ABC):
    """One measured part of the report, selected by `--sections <name>` (several may share a
    name: `mp4` is 3a and 3b).

    The runner (bench/sections/__init__.py) calls `run` of every selected section, in
    registry order, those on the main server first; then `finish` of each whose `run`
    succeeded. A section that needs the main server to sit still for a while starts in `run`
    and measures in `finish` (the churn); one with servers of its own says so in
    `on_main_server` and runs in that while.
    """

    name: ClassVar[str]

    def on_main_server(self, ctx: Context) -> bool:
        """False: it never touches the main server, so it may run while the churn waits."""
        return True

    @abstractmethod
    async def run(self, ctx: Context) -> None: ...

    async def finish(self, ctx: Context) -> None:
        return None


async def prepare(settings: Settings, report: Report, lab: Lab) -> Context:
    """The main server with its DVR full, the shared clips, and nginx serving their bytes."""
    main = await lab.dvr("dvr", settings.dvr_seconds)
    memory = MemoryLog()
    await memory.snapshot(main, f"{main.label}, after filling")
    api, origin = main.api, main.origin
    mid = origin + math.floor(settings.dvr_seconds / 4) * 2 + 1
    clips = SharedClips(
        start=mid,
        clip60=await api.clip("bench", mid, 58),
        clip10=await api.clip("bench", mid, 8),
        whole=await api.clip("bench", origin + 1, settings.dvr_seconds - 2),
    )
    static = await export_static(settings, report, lab, api, clips)
    return Context(settings, report, lab, main, clips, static, memory)


async def export_static(
    settings: Settings, report: Report, lab: Lab, api: Api, clips: SharedClips
) -> StaticCopy:
    """The packager's own bytes, written under the same paths for nginx to serve."""
    root = lab.tmp / "www"
    c60 = clips.clip60
    paths = [c60.master, clips.whole.media(clips.whole.renditions[0])]
    segment_paths: list[str] = []
    for r in c60.renditions:
        media = await api.get(c60.media(r))
        paths.append(c60.media(r))
        paths += [c60.file(name) for name in init_names(media)]
        segment_paths += [c60.file(name) for name in segment_names(media)]
    for path in paths + segment_paths:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await api.get(path))
    for d, _, files in os.walk(root):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    static = StaticCopy(root, segment_paths, None)
    binary = nginx_binary()
    if binary is None or settings.no_nginx:
        report.notes.append(
            "nginx not installed (or --no-nginx): static baselines skipped"
            + ("; `apt-get install nginx` adds them." if binary is None else ".")
        )
        return static
    static.nginx = lab.start_nginx(binary, root)
    with urllib.request.urlopen(static.nginx.base + c60.master, timeout=10) as resp:
        assert resp.read() == static.file(c60.master).read_bytes()
    return static
