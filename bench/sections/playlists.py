"""1. Playlists: req/s and latency of master and media playlists, ours vs nginx static."""

from __future__ import annotations

from bench.context import Context, Section
from bench.report import Target, load_row, table


class Playlists(Section):
    name = "playlists"

    async def run(self, ctx: Context) -> None:
        c, whole, levels = ctx.clips.clip60, ctx.clips.whole, ctx.settings.concurrency
        low = c.renditions[0]
        # (label, path, client counts, py-spy profile name at the highest count)
        runs: list[tuple[str, str, list[int], str | None]] = [
            ("master", c.master, levels, "playlist-master"),
            (f"media ({low}, {int(c.duration)} s)", c.media(low), levels, "playlist-media"),
            (
                f"media (whole DVR, {round(whole.duration / 2)} segments)",
                whole.media(whole.renditions[0]),
                [sorted(levels)[len(levels) // 2]],
                None,
            ),
        ]
        nginx = ctx.static.nginx
        rows = []
        ratios: list[tuple[int, float]] = []  # the target's: the 60 s clip's media playlist
        for label, path, counts, profile in runs:
            size = len(await ctx.main.api.get(path))
            for conc in counts:
                ours = await ctx.load(
                    ctx.main.server,
                    [path],
                    conc,
                    profile=profile if conc == max(counts) else None,
                )
                base = await ctx.load(nginx, [path], conc) if nginx else None
                rows.append(load_row(f"{label}, {size:,} B", conc, ours, base, rate=True))
                if base and label.startswith("media (") and "whole" not in label:
                    ratios.append((conc, ours.rps / base.rps))
        ctx.report.add(
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
        if ratios:
            got = ", ".join(f"{r:.2f}x at {c}" for c, r in ratios)
            met = all(r >= 0.5 for c, r in ratios if c > 1)
            ctx.report.targets.append(
                Target("media playlist req/s vs nginx static", "≥ 0.5x", got, met)
            )
