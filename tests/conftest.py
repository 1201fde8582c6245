"""Shared test fixtures: the committed ladder, a manual clock, a store fed like a live encoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import pytest

from packager.clock import ManualClock
from packager.demo import DemoFeed, RecordedRendition, load_ladder
from packager.ingest import Ingest
from packager.store.store import Limits, Store

LADDER_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "ladder"
T0 = 1_800_000_000.0  # a fixed "now" for tests with a manual clock


@pytest.fixture(scope="session")
def ladder() -> list[RecordedRendition]:
    return load_ladder(LADDER_DIR)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def feed_past(feed: DemoFeed, clock: ManualClock, count: int) -> float:
    """Push `count` replay segments that all ended by now; returns the first one's start."""
    origin = clock() - sum(feed.durations[k % len(feed.durations)] for k in range(count))
    for k in range(count):
        feed.push(k, feed.segment_start(k, origin))
    return origin


@pytest.fixture
def make_store(clock: ManualClock) -> Callable[..., Store]:
    def make(budget: int = 1 << 30, dvr: float = 3600.0, **limits: float) -> Store:
        return Store(clock, budget, dvr, Limits(**limits))  # type: ignore[arg-type]

    return make


@pytest.fixture
def fed_store(
    make_store: Callable[..., Store], ladder: list[RecordedRendition], clock: ManualClock
) -> tuple[Store, DemoFeed, float]:
    """A store whose stream 'demo' holds 30 s (15 segments) of the ladder, ending now."""
    store = make_store()
    feed = DemoFeed(Ingest(store), ladder, clock)
    origin = feed_past(feed, clock, 15)
    return store, feed, origin
