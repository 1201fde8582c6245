"""Every section of the report, in the order they run, and the rule that runs them.

To add a section: a new file here with a `Section` subclass (bench/context.py says what it
gets), and one line in `REGISTRY`. Its `name` is what `--sections` selects; a new name is a
new choice on the command line.

Order matters in one way: sections on the main server run first, in this order, and the
churn is the last of them, so that nothing else touches the main server while its clips
expire; sections with servers of their own (`on_main_server` False) run in that minute.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Sequence

from bench.context import Context, Section
from bench.report import Report, log
from bench.sections.churn import Churn
from bench.sections.efficiency import Efficiency
from bench.sections.frame_accurate import FrameAccurate
from bench.sections.ingest_cost import IngestCost
from bench.sections.memory import Memory
from bench.sections.mixed import Mixed
from bench.sections.mp4_ttfb import Mp4Ttfb
from bench.sections.mp4_vs_ffmpeg import Mp4VsFfmpeg
from bench.sections.playlists import Playlists
from bench.sections.scale import ScaleOut
from bench.sections.segments import Segments

REGISTRY: tuple[type[Section], ...] = (
    Playlists,  # 1
    Segments,  # 2
    Efficiency,  # 7: the playlist route against a bare handler, on the main server
    Mp4VsFfmpeg,  # 3a
    Mixed,  # 5
    Mp4Ttfb,  # 3b: on the long DVR's own server, unless the main one is as long
    ScaleOut,  # 6: servers of its own (a redis-server, packagers on it), while the churn waits
    IngestCost,  # 8: servers of its own (this tree's and a baseline commit's)
    FrameAccurate,  # 9: a server and a 1080p ladder of its own
    Churn,  # 4, second table: the last on the main server
    Memory,  # 4: renders the rows the others recorded, so it finishes last
)


def names() -> list[str]:
    """The choices of --sections, each once, in registry order."""
    return list(dict.fromkeys(section.name for section in REGISTRY))


def selected(chosen: Sequence[str]) -> list[Section]:
    return [section() for section in REGISTRY if section.name in chosen]


async def run_sections(sections: Sequence[Section], ctx: Context) -> None:
    """`run` on the main server first, then the others; then `finish` of each that ran."""
    first = [s for s in sections if s.on_main_server(ctx)]
    then = [s for s in sections if not s.on_main_server(ctx)]
    ran: list[Section] = []
    for section in first + then:
        log(f"section {section.name} ({type(section).__name__})")
        if await _reported(ctx.report, section.name, section.run(ctx)):
            ran.append(section)
    for section in sections:
        if section in ran:
            await _reported(ctx.report, section.name, section.finish(ctx))


async def _reported(report: Report, name: str, step: Awaitable[None]) -> bool:
    """Await one step; a failure goes into the report (and False comes back) rather than
    up: one failed section must not hide the others."""
    try:
        await step
    except Exception as exc:  # noqa: BLE001 - reported, and the run exits 1
        text = "".join(traceback.format_exception(exc))
        log(f"section {name} FAILED:\n{text}")
        report.failures.append(f"{name}: {exc!r}")
        report.add(f"{name}: FAILED", f"```\n{text}```\n")
        return False
    return True
