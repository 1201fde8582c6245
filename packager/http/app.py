"""Build the aiohttp application: routes, shared state, and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from packager.clock import Clock, system_clock
from packager.config import Config
from packager.demo import DEFAULT_LADDER, DemoFeed, load_ladder
from packager.http import api, ingest, livepeer, playback, videos
from packager.http.accesslog import quiet_client_errors
from packager.http.errors import error_middleware
from packager.http.jsonio import json_response
from packager.http.keys import CONFIG, INGEST, STORE
from packager.http.metrics import METRICS, Metrics, metrics_handler, metrics_middleware
from packager.http.mp4 import MP4_FILES, Mp4Files
from packager.ingest import Ingest
from packager.store.store import Limits, Store

log = logging.getLogger(__name__)

HOUSEKEEPING_PERIOD = 1.0  # the DVR rolls at least this often even with no ingest


READY = web.AppKey("ready", dict[str, bool])


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: started and not shutting down (a load balancer stops sending new work)."""
    if not request.app[READY]["ready"]:
        return json_response({"status": "shutting down"}, status=503)
    return json_response({"status": "ready"})


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False


async def _not_ready(app: web.Application) -> None:
    app[READY]["ready"] = False


async def _timers(app: web.Application) -> AsyncIterator[None]:
    """Fire clip timers (expiry, completion) when due: sleep until the heap's next deadline."""
    store = app[STORE]

    async def loop() -> None:
        while True:
            deadline = store.next_deadline()
            now = store.clock()
            delay = HOUSEKEEPING_PERIOD if deadline is None else deadline - now
            await asyncio.sleep(min(max(delay, 0.0), HOUSEKEEPING_PERIOD))
            try:
                store.run_due()
                store.sweep_all()
            except Exception:
                log.exception("timer tick failed")

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _demo(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    feed = DemoFeed(app[INGEST], load_ladder(config.demo_dir or DEFAULT_LADDER), app[STORE].clock)
    task = asyncio.create_task(feed.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: Config, clock: Clock = system_clock, timers: bool = True) -> web.Application:
    """`timers=False` leaves firing timers to the caller (tests with a manual clock)."""
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=config.max_api_body,
    )
    store = Store(
        clock,
        config.memory_budget,
        config.dvr_duration,
        Limits(completion_grace=config.completion_grace),
    )
    quiet_client_errors()
    app[CONFIG] = config
    app[STORE] = store
    app[INGEST] = Ingest(store)
    app[METRICS] = Metrics(store)
    app[MP4_FILES] = Mp4Files(app[METRICS].remux_seconds.observe, config.max_concurrent_remuxes)
    store.on_expire.append(app[MP4_FILES].forget)
    store.on_complete.append(app[MP4_FILES].prebuild)
    app[READY] = {"ready": False}
    app.on_shutdown.append(_not_ready)
    app.cleanup_ctx.append(_readiness)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_routes(ingest.routes)
    app.router.add_routes(api.routes)
    app.router.add_routes(livepeer.routes)
    videos.setup(app)
    app.router.add_routes(playback.routes)
    if timers:
        app.cleanup_ctx.append(_timers)
    if config.demo:
        app.cleanup_ctx.append(_demo)
    return app
