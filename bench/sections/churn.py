"""4 (second table). Clip churn: 1,000 clip create/expire cycles on the main server, with its
RSS before, with them all alive, and after they all expired.

A clip lives at least 60 s (contract), so the cycles overlap: every clip is created (and its
playlists and MP4 layout built by GETs) at once in `run`, the sections with servers of their
own run meanwhile, and `finish` waits out the rest of the minute and measures.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from bench.context import Context, Section
from bench.report import MB, log, mb, table

# Contract: a clip's expiration lies at least 60 s after its creation.
MIN_LIFETIME = 60.0
PER_STREAM = 500  # the store allows 1,000 live clips per stream; spread over a few streams


class Churn(Section):
    name = "memory"

    def __init__(self) -> None:
        self.deadline = 0.0
        self.retries = 0
        self.errors: list[str] = []

    async def run(self, ctx: Context) -> None:
        n = ctx.settings.cycles
        api, server = ctx.main.api, ctx.main.server
        streams = [f"churn{i}" for i in range(max(1, math.ceil(n / PER_STREAM)))]
        origins = {}
        for stream in streams:
            origins[stream] = await ctx.lab.fill(server, stream, 30)
        self.before_stats = await api.stats()
        self.before = server.memory()["VmRSS"]
        t0 = time.perf_counter()
        # At most 4 MP4 requests at once: the packager builds 4 layouts at a time and answers
        # 503 + Retry-After past that; a 503 is retried as a player would.
        sem = asyncio.Semaphore(4)

        async def cycle(i: int) -> None:
            stream = streams[i % len(streams)]
            async with sem:
                try:
                    expiration = time.time() + MIN_LIFETIME + 2
                    clip = await api.clip(stream, origins[stream] + 1 + 2 * (i % 10), 8, expiration)
                    self.deadline = max(self.deadline, expiration)
                    await api.get(clip.master)
                    await api.get(clip.media(clip.renditions[-1]))
                    mp4 = clip.mp4(clip.renditions[i % len(clip.renditions)])
                    for attempt in range(10):
                        status = await api.status(mp4, {"Range": "bytes=0-1"})
                        if status != 503:
                            break
                        self.retries += 1
                        await asyncio.sleep(0.05 * (attempt + 1))
                    if status != 206:
                        raise RuntimeError(f"GET {mp4} (Range) -> {status}")
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    self.errors.append(repr(exc))

        await asyncio.gather(*(cycle(i) for i in range(n)))
        self.create_seconds = time.perf_counter() - t0
        self.peak_stats = await api.stats()
        self.peak = server.memory()["VmRSS"]
        log(
            f"churn: {n} clips created in {self.create_seconds:.1f} s; they expire by "
            f"{time.strftime('%H:%M:%S', time.localtime(self.deadline))}"
        )

    async def finish(self, ctx: Context) -> None:
        n = ctx.settings.cycles
        api, server = ctx.main.api, ctx.main.server
        after_stats: dict[str, Any] | None = None
        after: int | None = None
        if ctx.settings.wait_expiry:
            wait = self.deadline + 1.5 - time.time()
            if wait > 0:
                log(f"churn: waiting {wait:.0f} s for the clips to expire")
                await asyncio.sleep(wait)
            for _ in range(20):
                stats = await api.stats()
                if stats["clips"] <= self.before_stats["clips"]:
                    break
                await asyncio.sleep(0.5)
            after_stats = await api.stats()
            after = server.memory()["VmRSS"]

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

        rows = [
            row("before", self.before, self.before_stats),
            row(
                f"{n} clips alive (each: create, 2 playlists, MP4 layout)",
                self.peak,
                self.peak_stats,
            ),
            row(f"all {n} expired", after, after_stats),
        ]
        growth = None if after is None else after - self.before
        ctx.memory.blocks.append(self.describe(ctx, rows, growth))
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} clip cycles failed: {self.errors[:3]}")
        if after_stats is not None and after_stats["clips"] > self.before_stats["clips"]:
            raise RuntimeError(f"clips still alive after expiry: {after_stats['clips']}")

    def describe(self, ctx: Context, rows: list[list[str]], growth: int | None) -> str:
        n = ctx.settings.cycles
        text = (
            f"\n{n} clip create/expire cycles on the {ctx.main.seconds / 60:g} min server "
            f"(clips of 10 s spread over {max(1, math.ceil(n / PER_STREAM))} streams, "
            f"created in {self.create_seconds:.1f} s, each expiring {MIN_LIFETIME + 2:.0f} s "
            "later: the contract's shortest life; "
            f"{self.retries} MP4 requests answered 503 (build slots busy) and were retried).\n\n"
        )
        text += table(["state", "live clips", "pinned bytes", "RSS", "RSS vs before"], rows)
        if growth is not None:
            text += (
                f"\nGrowth after all {n} expired: {growth / MB:+.1f} MB "
                f"({growth / n / 1e3:+.1f} kB per cycle); the store's own counters (live "
                "clips, pinned bytes) are back where they were. RSS that stays up is memory the "
                "allocator keeps after freeing, or a leak: a longer run with more cycles tells "
                "them apart (`--cycles`).\n"
            )
        return text
