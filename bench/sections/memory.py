"""4. Memory: the packager's RSS against the media bytes its store holds.

The rows come from `ctx.memory`, snapshotted by whoever has a server in that state (the main
DVR after filling, the long DVR after filling and after its clips' MP4 layouts were built); the
churn adds its table below. This section makes sure the long DVR exists, and renders it all.
"""

from __future__ import annotations

from bench.context import Context, Section
from bench.report import MB, Target, mb, table


class Memory(Section):
    name = "memory"

    def on_main_server(self, ctx: Context) -> bool:
        return False  # the long DVR's row, on its own server (or nothing to do on the main one)

    async def run(self, ctx: Context) -> None:
        await ctx.long_dvr()  # records its "after filling" row on first use

    async def finish(self, ctx: Context) -> None:
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
                ctx.memory.rows,
            )
        )
        body += "".join("\n" + block for block in ctx.memory.blocks)
        ctx.report.add("4. Memory: RSS vs bytes held", body)
        for what, rss, held in ctx.memory.checks:
            if "after filling" in what:
                ctx.report.targets.append(
                    Target(
                        f"RSS, {what.split(',')[0]}",
                        "≤ 1.2 x DVR bytes + 100 MB",
                        f"{mb(rss)} for {mb(held)} held (limit {mb(1.2 * held + 100 * MB)})",
                        rss <= 1.2 * held + 100 * MB,
                    )
                )
