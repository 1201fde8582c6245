"""2. Segments: MB/s, req/s and latency of the 60 s clip's media segments, ours vs nginx."""

from __future__ import annotations

from bench.context import Context, Section
from bench.report import load_row, table


class Segments(Section):
    name = "segments"

    async def run(self, ctx: Context) -> None:
        paths = ctx.static.segment_paths
        sizes = [ctx.static.file(p).stat().st_size for p in paths]
        levels, nginx = ctx.settings.concurrency, ctx.static.nginx
        rows = []
        for conc in levels:
            ours = await ctx.load(
                ctx.main.server,
                paths,
                conc,
                profile="segments" if conc == max(levels) else None,
            )
            base = await ctx.load(nginx, paths, conc) if nginx else None
            rows.append(load_row(f"{len(paths)} segments", conc, ours, base, rate=False))
        ctx.report.add(
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
