"""Fixtures shared by the packaging tests."""

from __future__ import annotations

import asyncio

import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, load_ladder
from packager.service.compose import build_services
from packager.store.memory import MemoryStore
from tests.conftest import LADDER_DIR, feed_past
from tests.mp4_support import stored_segments
from tests.stored_segment import Segment


@pytest.fixture(scope="session")
def hour(tmp_path_factory: pytest.TempPathFactory) -> list[Segment]:
    """An hour of the lowest rendition as the demo feed replays it: 300 loops of 12 s."""

    async def cut() -> list[Segment]:
        clock = ManualClock(1_800_000_000.0)
        config = Config(memory_budget=1 << 31, data_dir=tmp_path_factory.mktemp("hour"))
        services = build_services(config, clock, MemoryStore(clock, 1 << 31))
        feed = DemoFeed(services.ingest, load_ladder(LADDER_DIR)[:1], clock)
        origin = await feed_past(feed, clock, 1800)
        clip = await services.clips.create_clip("demo", duration=3600, start=origin)
        assert len(clip.reference.segments) == 1800
        return await stored_segments(services.store, clip.reference)

    return asyncio.run(cut())
