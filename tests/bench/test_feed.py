"""The bench pushes media as an authenticated encoder: every ingest request carries the
server's ingest key, so it keeps working when ingest requires one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.feed import HttpFeed
from bench.servers import Packager
from packager.config import Config
from packager.demo import RecordedRendition
from packager.http.app import create_app

AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]


async def test_every_push_carries_the_ingest_key(
    aiohttp_server: AiohttpServer, ladder: list[RecordedRendition], tmp_path: Path
) -> None:
    config = Config(api_keys=("k",), ingest_key="push-secret", data_dir=tmp_path)
    port = (await aiohttp_server(create_app(config, timers=False))).port
    assert port is not None

    def server(key: str) -> Packager:  # the running app, as the bench knows a server
        return Packager(tmp_path, 60, 1 << 30, port=port, ingest_key=key)

    async with aiohttp.ClientSession() as session:
        _, count, errors = await HttpFeed(session, server("push-secret"), "s", ladder).fill(10)
        assert count == 5 and errors == []
        _, _, refused = await HttpFeed(session, server("wrong"), "t", ladder).fill(10)
        assert refused and all(": 401" in e for e in refused)
