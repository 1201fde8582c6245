"""Fixtures shared by the packaging tests."""

from __future__ import annotations

import pytest

from packager.clock import ManualClock
from packager.demo import DemoFeed, load_ladder
from packager.ingest import Ingest
from packager.store.segment import Segment
from packager.store.store import Store
from tests.conftest import LADDER_DIR, feed_past


@pytest.fixture(scope="session")
def hour() -> list[Segment]:
    """An hour of the lowest rendition as the demo feed replays it: 300 loops of 12 s."""
    clock = ManualClock(1_800_000_000.0)
    store = Store(clock, 1 << 31, 4 * 3600.0)
    feed = DemoFeed(Ingest(store), load_ladder(LADDER_DIR)[:1], clock)
    origin = feed_past(feed, clock, 1800)
    clip = store.create_clip("demo", duration=3600, start=origin)
    assert len(clip.reference.segments) == 1800
    return list(clip.reference.segments)
