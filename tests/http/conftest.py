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
from packager.http.keys import INGEST, STORE
from packager.store.store import Store
from tests.conftest import feed_past

API_KEY = "test-key"
AUTH = {"Authorization": f"apikey {API_KEY}"}


@dataclass
class Service:
    """A real app on a test server, its manual clock, and the demo feed that filled it."""

    client: TestClient[web.Request, web.Application]
    app: web.Application
    clock: ManualClock
    feed: DemoFeed
    origin: float  # start of the first fed segment

    @property
    def store(self) -> Store:
        return self.app[STORE]

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
) -> Service:
    config = Config(api_keys=(API_KEY,), memory_budget=1 << 30, data_dir=tmp_path)
    app = create_app(config, clock=clock, timers=False)
    feed = DemoFeed(app[INGEST], ladder, clock)
    origin = feed_past(feed, clock, 15)
    client = await aiohttp_client(app)
    return Service(client, app, clock, feed, origin)
