from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.service.compose import Services
from packager.store.base import Store, Timer
from packager.store.model import Clip
from tests.conftest import MakeStore, feed_past

API_KEY = "test-key"
AUTH = {"Authorization": f"apikey {API_KEY}"}
INGEST_KEY = "test-ingest-key"  # the operator's: pushes to any stream
PUSH = {"Authorization": f"Bearer {INGEST_KEY}"}


@dataclass
class Service:
    """A real app on a test server, its manual clock, and the demo feed that filled it."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: ManualClock
    feed: DemoFeed
    origin: float  # start of the first fed segment

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def store(self) -> Store:
        return self.services.store

    async def stored(self, clip_id: str, stream: str = "demo") -> Clip:
        """The clip's manifest as the store has it now."""
        return await self.store.clip(stream, clip_id)

    async def push(self, k: int) -> None:
        """The next live segment (number `k` of the replay) for every rendition."""
        await self.feed.push(k, self.feed.segment_start(k, self.origin))

    async def tick(self) -> list[Timer]:
        """Fire the timers that are due by the manual clock (expiry, completion)."""
        return await self.services.timers.tick()

    async def create_clip(self, stream: str = "demo", **body: Any) -> dict[str, Any]:
        resp = await self.client.post(f"/streams/{stream}/clip_recording", json=body, headers=AUTH)
        assert resp.status == 201, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def service(
    aiohttp_client: AiohttpClient,
    clock: ManualClock,
    ladder: list[RecordedRendition],
    tmp_path: Path,
    make_store: MakeStore,
) -> Service:
    config = Config(
        api_keys=(API_KEY,), ingest_key=INGEST_KEY, memory_budget=1 << 30, data_dir=tmp_path
    )
    app = create_app(config, clock=clock, timers=False, store=make_store(1 << 30))
    feed = DemoFeed(app[SERVICES].ingest, ladder, clock)
    origin = await feed_past(feed, clock, 15)
    client = await aiohttp_client(app)
    return Service(client, app, clock, feed, origin)
