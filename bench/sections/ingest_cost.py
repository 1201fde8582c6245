"""8. Ingest cost per segment: the packager's CPU for each pushed segment, this tree against
the commit before sample tables were prepared at ingest (BASELINE), side by side.

Each server is fresh and gets the same pushes over HTTP (bench/feed.py: init, segment and
playlist PUTs, with the ingest key), a DVR's worth placed in the past; the cost is the
server's user + system CPU over the fill, divided by the segments pushed. The baseline runs
from a `git worktree` of BASELINE; without git history the section says so and is skipped.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp

from bench.context import Context, Section
from bench.report import Target, log, ratio, table
from bench.servers import REPO, Packager

# main just before prepared sample tables were merged (6b8ada9): ingest parsed each segment
# into per-sample arrays and stopped there; the trust boundary's checks were already in.
BASELINE = "4966d77"
# Fills per tree, in turn. The best counts: CPU time only ever gains from what else shares the
# cores (the churn's expiries run meanwhile), so the least a fill took is its own cost.
ROUNDS = 5
SEGMENTS = 300  # per rendition and fill: 10 minutes of the ladder


class IngestCost(Section):
    name = "ingest"

    def on_main_server(self, ctx: Context) -> bool:
        return False

    async def run(self, ctx: Context) -> None:
        base_tree = ctx.lab.tmp / "baseline"
        try:
            await asyncio.to_thread(_worktree, base_tree, BASELINE)
        except (OSError, subprocess.CalledProcessError) as exc:
            ctx.report.add(
                "8. Ingest cost per segment", f"Skipped: no worktree of {BASELINE} ({exc})."
            )
            return
        try:
            trees = {"this tree": REPO, f"baseline {BASELINE}": base_tree}
            costs: dict[str, list[float]] = {label: [] for label in trees}
            segments = SEGMENTS if not ctx.settings.quick else 30
            for round_ in range(ROUNDS):
                for label, tree in trees.items():
                    work = ctx.lab.tmp / f"ingest-{round_}-{label.split()[0]}"
                    costs[label].append(await _fill_cost(ctx, tree, work, segments))
                    log(f"  ingest {label}: {costs[label][-1] * 1e6:,.0f} us per segment")
        finally:
            await asyncio.to_thread(_remove_worktree, base_tree)
        ours, base = (min(c) for c in costs.values())
        rows = [
            [
                label,
                f"{segments * 3:,}",
                ", ".join(f"{c * 1e6:,.0f}" for c in values),
                f"{sorted(values)[len(values) // 2] * 1e6:,.0f} us",
                f"{min(values) * 1e6:,.0f} us",
            ]
            for label, values in costs.items()
        ]
        middle = [sorted(c)[len(c) // 2] for c in costs.values()]
        ctx.report.add(
            "8. Ingest cost per segment: prepared tables vs parsing only",
            f"Server CPU (user + system) over a fill of {segments} segments of each of the 3 "
            f"renditions, divided by the segments; {ROUNDS} fresh servers per tree, in turn; "
            "the best fill counts (what else runs meanwhile only adds CPU time). "
            "Each segment's PUT is checked (key), parsed, its sample tables prepared (this tree) "
            "and stored; the playlist PUTs beside it are in the figure too.\n\n"
            + table(
                ["tree", "segments per fill", "us per segment, each fill", "median", "best"], rows
            )
            + f"\nThis tree / baseline: {ratio(ours, base)} (best), "
            f"{ratio(middle[0], middle[1])} (median).\n",
        )
        ctx.report.targets.append(
            Target(
                "ingest CPU per segment vs before prepared tables",
                "≤ 1.2x",
                f"{ratio(ours, base)} ({ours * 1e6:,.0f} vs {base * 1e6:,.0f} us, best of {ROUNDS})",
                ours <= 1.2 * base,
            )
        )


async def _fill_cost(ctx: Context, tree: Path, work: Path, segments: int) -> float:
    server = Packager(work, dvr_duration=4 * segments, memory_budget=4 << 30, tree=tree)
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            feed = ctx.lab.feed(server, "cost", session)
            before = server.cpu_seconds()
            _, count, errors = await feed.fill(segments * feed.segment_seconds)
            used = server.cpu_seconds() - before
        assert not errors, errors[:3]
        return used / (count * len(ctx.lab.ladder))
    finally:
        await asyncio.to_thread(server.stop)


def _worktree(path: Path, commit: str) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
        check=True,
        capture_output=True,
    )


def _remove_worktree(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
        check=False,
        capture_output=True,
    )
