"""5. Mixed load: 3 renditions ingested in real time while many clients GET playlists,
segments and MP4s; ingest must be neither late nor lost, and nothing may error."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from bench.api import segment_names
from bench.context import Context, Section
from bench.report import Target, ms, table
from bench.timing import median


class Mixed(Section):
    name = "mixed"

    async def run(self, ctx: Context) -> None:
        s, server, api = ctx.settings, ctx.main.server, ctx.main.api
        c60, c10 = ctx.clips.clip60, ctx.clips.clip10
        segment_paths = ctx.static.segment_paths
        rng = random.Random(7)
        playlists = [c60.master] * 4 + [c60.media(r) for r in c60.renditions] * 4
        segments = rng.sample(segment_paths, min(60, len(segment_paths)))
        mp4s = [c10.mp4(r) for r in c10.renditions] + [c10.mp4()] * 2
        mp4s = mp4s * 2
        paths = playlists + segments + mp4s
        rng.shuffle(paths)
        async with aiohttp.ClientSession() as ingest_session:
            feed = ctx.lab.feed(server, "live", ingest_session)
            load = asyncio.create_task(
                ctx.load(server, paths, s.mixed_clients, duration=s.mixed_seconds + 1)
            )
            await asyncio.sleep(0.5)  # the clients are connected before the first segment is due
            origin, pushed = await feed.live(s.mixed_seconds)
            result = await load
        stream = await api.json("GET", "/streams/live")
        counts = {r["ingest_name"]: r["segments"] for r in stream["renditions"]}
        clip = await api.clip("live", origin + 0.5, len(pushed) * feed.segment_seconds - 1)
        discontinuities = 0
        in_clip = []
        for r in clip.renditions:
            media = (await api.get(clip.media(r))).decode()
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
        ctx.report.add(
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
                        f"{len(pushed)} x {len(ctx.lab.ladder)}",
                        f"{ms(median(lag))} / {ms(max(lag))} (first push, new connections: {ms(lag[0])})",
                        str(late),
                        str(lost),
                        str(discontinuities),
                        str(ingest_errors),
                    ]
                ],
            ),
        )
        ctx.report.targets.append(
            Target(
                "mixed load: ingest on time, nothing lost, no errors",
                "late 0, lost 0, errors 0",
                f"late {late}, lost {lost}, errors {errors} (max push lag {ms(max(lag))})",
                late == 0 and lost == 0 and errors == 0 and discontinuities == 0,
            )
        )
