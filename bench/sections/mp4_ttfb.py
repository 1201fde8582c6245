"""3b. MP4 time to first byte vs clip length (10 s, 10 min, the whole long DVR): a new clip's
first GET, later GETs and a Range mid-file; full downloads, and the longest one from nginx."""

from __future__ import annotations

import asyncio
import os
import time

from bench.api import ClipLinks
from bench.context import Context, Section
from bench.lab import Dvr
from bench.report import MB, Target, label_seconds, mb, ms, ratio, table
from bench.timing import Fetch, download_to, fetch, median


class Mp4Ttfb(Section):
    name = "mp4"

    def on_main_server(self, ctx: Context) -> bool:
        return ctx.long_on_main

    async def run(self, ctx: Context) -> None:
        dvr = await ctx.long_dvr()
        await self.ttfb(ctx, dvr)
        await ctx.memory.snapshot(dvr, f"{dvr.label}, + clips with built MP4 layouts")

    async def ttfb(self, ctx: Context, dvr: Dvr) -> None:
        repeat, port, api = ctx.settings.repeat, dvr.server.port, dvr.api
        length = dvr.seconds
        lengths = [10.0, min(600.0, length / 2), length] if length > 20 else [10.0]
        rows = []
        firsts: dict[float, tuple[float, float, float, float]] = {}
        longest: tuple[ClipLinks, Fetch] | None = None
        # An old 10 s clip, served before: the control that any request straight after a long
        # cut is slower, whatever it asks for.
        served = await api.clip("bench", dvr.origin + 1, 8)
        for _ in range(2):
            await asyncio.to_thread(fetch, port, served.mp4(), None, True)
        for seconds in lengths:
            cold, cuts, control, isolated = [], [], [], []
            for _ in range(ctx.settings.new_clips):  # new clips each time: their first GETs
                started = time.perf_counter()
                fresh = await api.clip("bench", dvr.origin + 1, seconds - 2)
                cuts.append(time.perf_counter() - started)
                cold.append(await asyncio.to_thread(fetch, port, fresh.mp4(), None, True))
                other = await api.clip("bench", dvr.origin + 1, seconds - 2)
                control.append(await asyncio.to_thread(fetch, port, served.mp4(), None, True))
                await api.clip("bench", dvr.origin + 1, 8)  # a short cut in between
                isolated.append(await asyncio.to_thread(fetch, port, other.mp4(), None, True))
            clip = await api.clip("bench", dvr.origin + 1, seconds - 2)
            first = await asyncio.to_thread(fetch, port, clip.mp4())
            warm = [  # the first after the full download above is left out
                await asyncio.to_thread(fetch, port, clip.mp4(), None, True)
                for _ in range(ctx.settings.new_clips + 1)
            ][1:]
            downloads = [await asyncio.to_thread(fetch, port, clip.mp4()) for _ in range(repeat)]
            middle = first.size // 2
            ranged = [
                await asyncio.to_thread(
                    fetch, port, clip.mp4(), {"Range": f"bytes={middle}-{middle + 65535}"}
                )
                for _ in range(repeat)
            ]
            cold_ttfb = median([f.ttfb for f in cold])
            isolated_ttfb = median([f.ttfb for f in isolated])
            control_ttfb = median([f.ttfb for f in control])
            warm_ttfb = median([f.ttfb for f in warm])
            whole = median([f.total for f in downloads])
            firsts[seconds] = (cold_ttfb, warm_ttfb, isolated_ttfb, control_ttfb)
            longest = (clip, first)
            rows.append(
                [
                    label_seconds(seconds),
                    f"{round(seconds / 2)}",
                    mb(first.size),
                    ms(median(cuts)),
                    ms(cold_ttfb),
                    ms(isolated_ttfb),
                    ms(control_ttfb),
                    ms(warm_ttfb),
                    ms(median([f.ttfb for f in ranged])),
                    ms(whole),
                    f"{first.size / whole / MB:,.0f} MB/s",
                ]
            )
        body = (
            f"Highest rendition (`master.mp4`). *First GET*: medians over "
            f"{ctx.settings.new_clips} rounds of new clips. *Straight after its cut*: fetched "
            "as soon as its cut answered (the cut waits, up to 1 s, for the layout it starts: "
            "sample tables joined from what ingest prepared, the moov; *the cut* is that "
            "POST's own time). *After a short cut*: another new clip of the length, cut, then "
            "the control below, then a new 8 s clip cut, then its first GET: the same first "
            "GET, not straight after a long POST. *Control*: a 10 s clip served before, "
            "fetched straight after that long cut: any request right after a cut of several "
            "ms of CPU starts slower on this VM, whatever it asks for (bench/README.md). "
            f"*Later*: one clip, median of {ctx.settings.new_clips}. The TTFB clients hang up "
            "at the first byte: a whole "
            "download in between streams its file through the CPU caches and doubled the next "
            "request's time after an hour's 520 MB, which is the download's cost, not the "
            "request's (bench/timing.py). *Range*: 64 KiB from the middle of the file. *Full "
            f"download*: median of {repeat}, read to the end.\n\n"
            + table(
                [
                    "clip",
                    "segments",
                    "MP4 size",
                    "the cut (POST)",
                    "TTFB, first GET straight after its cut",
                    "TTFB, first GET after a short cut",
                    "control: served 10 s clip after this cut",
                    "TTFB, later GET",
                    "TTFB, Range mid-file",
                    "full download",
                    "throughput",
                ],
                rows,
            )
        )
        nginx = ctx.static.nginx
        if longest is not None and nginx is not None:
            clip, first = longest
            path = clip.mp4()
            target = ctx.static.file(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(download_to, port, path, target)
            os.chmod(target, 0o644)
            static = [await asyncio.to_thread(fetch, nginx.port, path) for _ in range(repeat)]
            ours = [await asyncio.to_thread(fetch, port, path) for _ in range(repeat)]
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
        ctx.report.add("3b. MP4: time to first byte vs clip length, and full downloads", body)
        short, long_ = firsts[lengths[0]], firsts[lengths[-1]]
        ctx.report.targets.append(
            Target(
                f"TTFB of a {label_seconds(lengths[-1])} clip vs a 10 s clip",
                "≤ 2x",
                f"first GET after a short cut {ratio(long_[2], short[2])} ({ms(long_[2])} vs "
                f"{ms(short[2])}); later GET {ratio(long_[1], short[1])} ({ms(long_[1])} vs "
                f"{ms(short[1])}); straight after its cut {ratio(long_[0], short[0])} "
                f"({ms(long_[0])} vs {ms(short[0])}), which a served clip's GET after the same "
                f"cut shows too: {ratio(long_[3], short[3])} ({ms(long_[3])} vs {ms(short[3])})",
                long_[2] <= 2 * short[2] and long_[1] <= 2 * short[1],
            )
        )
