"""7. Per-core efficiency: our media playlist route against a bare aiohttp + uvloop handler
that returns the same bytes from memory, side by side, one process each."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request

from bench.context import Context, Section
from bench.load import run_load
from bench.report import Target, load_row, log, table
from bench.servers import REPO, free_port, wait_for

ROUNDS = 3


class Efficiency(Section):
    name = "efficiency"

    async def run(self, ctx: Context) -> None:
        c = ctx.clips.clip60
        path = c.media(c.renditions[0])
        body, headers = await asyncio.to_thread(_get, ctx.main.server.base + path)
        page = ctx.lab.tmp / "bare-playlist.m3u8"
        page.write_bytes(body)
        kept = ctx.lab.tmp / "bare-headers.json"
        kept.write_text(json.dumps(headers))
        port = free_port()
        out = ctx.lab.tmp / "bare.log"
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "bare.py"), str(port), str(page), str(kept)],
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            await asyncio.to_thread(wait_for, f"http://127.0.0.1:{port}/x", 20, proc, out)
            rows, ratios = [], []
            settings = ctx.settings
            for conc in sorted({1, *settings.concurrency[1:2]}):
                # Side by side, ROUNDS times in turn: the row is the round of median ratio
                # (two processes and wrk on two cores drift by more than the gap measured).
                pairs = []
                for _ in range(ROUNDS):
                    ours = await ctx.load(ctx.main.server, [path], conc)
                    # One wrk thread for each, as for any one-process packager (bench/context.py).
                    base = await run_load(
                        f"http://127.0.0.1:{port}",
                        [path],
                        conc,
                        settings.duration,
                        threads=1,
                        use_wrk=settings.use_wrk,
                    )
                    log(f"  bare  c={conc:<3} {base.rps:9,.0f} req/s")
                    pairs.append((ours.rps / base.rps if base.rps else 0.0, ours, base))
                ratio, ours, base = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]
                rows.append(
                    load_row(f"media playlist, {len(body):,} B", conc, ours, base, rate=True)
                )
                ratios.append((conc, ratio))
        finally:
            proc.terminate()
            proc.wait(10)
        ctx.report.add(
            "7. Per-core efficiency: our playlist route vs a bare aiohttp + uvloop handler",
            "The same bytes (body and headers), one process each, the same load, in turn "
            f"{ROUNDS} times (the row is the round of median ratio). The bare handler is the "
            "ceiling of one Python process here; what is left between is our routing, the "
            "ready-playlist lookup and the wrapper every route runs in (errors, CORS, "
            "metrics: packager/http/edge.py).\n\n"
            + table(
                [
                    "what",
                    "clients",
                    "ours req/s",
                    "bare req/s",
                    "ours / bare",
                    "ours p50",
                    "bare p50",
                    "ours p99",
                    "bare p99",
                    "errors (ours, bare)",
                    "listen-queue drops (ours, bare)",
                ],
                rows,
            ),
        )
        got = ", ".join(f"{r:.2f}x at {c}" for c, r in ratios)
        ctx.report.targets.append(
            Target(
                "playlist req/s vs a bare aiohttp handler (one process)",
                "≥ 0.8x",
                got,
                all(r >= 0.8 for _, r in ratios),
            )
        )


# What the bare handler sends beside the body: ours, but for what aiohttp writes itself
# and the hop-by-hop headers of that one fetch.
_OWN = {"content-type", "content-length", "date", "server", "connection", "keep-alive"}


def _get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in _OWN}
        return resp.read(), headers
