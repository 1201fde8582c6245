"""The bench runs its sections in the order its report relies on, and a failed section hides
none of the others (no servers here: the runner with stand-in sections)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest

from bench.context import Context, Section
from bench.report import Report
from bench.run import parse_args
from bench.sections import REGISTRY, names, run_sections
from bench.sections.churn import Churn


@dataclass
class StandIn:
    """What the runner reads of a Context."""

    report: Report = field(default_factory=Report)
    long_on_main: bool = False


def section(events: list[str], name: str, on_main: bool = True, fails: bool = False) -> Section:
    class Recorded(Section):
        def on_main_server(self, ctx: Context) -> bool:
            return on_main

        async def run(self, ctx: Context) -> None:
            events.append(f"run {name}")
            if fails:
                raise RuntimeError(f"{name} broke")

        async def finish(self, ctx: Context) -> None:
            events.append(f"finish {name}")

    Recorded.name = name
    return Recorded()


async def test_main_server_sections_run_first_and_finishes_come_after_every_run() -> None:
    events: list[str] = []
    sections = [
        section(events, "a"),
        section(events, "own", on_main=False),
        section(events, "b"),
    ]
    await run_sections(sections, cast(Context, StandIn()))
    assert events == ["run a", "run b", "run own", "finish a", "finish own", "finish b"]


async def test_a_failed_section_is_reported_and_the_others_still_run() -> None:
    events: list[str] = []
    ctx = StandIn()
    sections = [section(events, "a", fails=True), section(events, "b")]
    await run_sections(sections, cast(Context, ctx))
    assert events == ["run a", "run b", "finish b"]  # no finish after a failed run
    assert ctx.report.failures == ["a: RuntimeError('a broke')"]
    assert [title for title, _ in ctx.report.sections] == ["a: FAILED"]


@pytest.mark.parametrize("long_on_main", [False, True])
def test_nothing_touches_the_main_server_after_the_churn_starts(long_on_main: bool) -> None:
    ctx = cast(Context, StandIn(long_on_main=long_on_main))
    on_main = [cls for cls in REGISTRY if cls().on_main_server(ctx)]
    assert on_main[-1] is Churn


def test_every_section_name_is_a_choice_of_the_sections_flag() -> None:
    assert names() == [
        "playlists",
        "segments",
        "efficiency",
        "mp4",
        "mixed",
        "scale",
        "ingest",
        "frames",
        "memory",
    ]
    assert parse_args([]).sections == names()
    assert parse_args(["--sections", "mp4,memory"]).sections == ["mp4", "memory"]
    with pytest.raises(SystemExit):
        parse_args(["--sections", "nope"])


def test_report_orders_sections_by_number_not_by_when_they_ran() -> None:
    report = Report()
    for title in ("10. Later", "4. Memory", "3b. MP4", "memory: FAILED", "3a. MP4", "1. Playlists"):
        report.sections.append((title, "body\n"))
    text = report.markdown([])
    order = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    assert order == [
        "1. Playlists",
        "3a. MP4",
        "3b. MP4",
        "4. Memory",
        "10. Later",
        "memory: FAILED",
    ]
