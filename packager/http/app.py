"""The aiohttp application: routes (each through packager.http.edge), and the services'
start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from packager.clock import Clock, system_clock
from packager.config import Config
from packager.demo import DEFAULT_LADDER, DemoFeed, load_ladder
from packager.http import api, console, edge, ingest, live, livepeer, playback, videos
from packager.http.accesslog import quiet_client_errors
from packager.http.jsonio import json_response
from packager.http.keys import CONFIG, SERVICES
from packager.http.metrics import METRICS, Metrics, metrics_handler
from packager.service.compose import Services, build_services
from packager.store.base import Store
from packager.store.shared_videos import REFRESH, SharedVideoLibrary

READY = web.AppKey("ready", dict[str, bool])
log = logging.getLogger(__name__)


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


async def _videos(app: web.Application) -> AsyncIterator[None]:
    """Index saved videos at start-up (and follow a shared index); let writes under way
    finish at shutdown."""
    services = app[SERVICES]
    library = services.videos
    await asyncio.to_thread(library.load)
    shared = library if isinstance(library, SharedVideoLibrary) else None
    follow = asyncio.create_task(_follow(shared)) if shared is not None else None
    # Every saved file's sha256 against its manifest, in the background: what does not
    # match is listed as damaged and no longer served.
    verify = asyncio.ensure_future(asyncio.to_thread(library.verify))
    yield
    await services.saver.drain()
    library.stop_verifying()
    with contextlib.suppress(Exception):
        await verify
    if shared is not None and follow is not None:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        shared.close()
    await services.store.close()


async def _follow(library: SharedVideoLibrary) -> None:
    """Videos other processes save show up here within REFRESH seconds."""
    while True:
        await asyncio.sleep(REFRESH)
        try:
            await asyncio.to_thread(library.refresh)
        except Exception:
            log.exception("reading the shared video index failed")


async def _stop_encodes(app: web.Application) -> None:
    await app[SERVICES].frames.close()


def _background(make: Any) -> Any:
    """A cleanup context running one coroutine for the app's life, cancelled at shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        coroutine: Coroutine[Any, Any, None] = make(app)
        task = asyncio.create_task(coroutine)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def _demo_feed(app: web.Application) -> Coroutine[Any, Any, None]:
    services = app[SERVICES]
    ladder = load_ladder(app[CONFIG].demo_dir or DEFAULT_LADDER)
    return DemoFeed(services.ingest, ladder, services.clock).run()


def create_app(
    config: Config,
    clock: Clock = system_clock,
    timers: bool = True,
    store: Store | None = None,
    services: Services | None = None,
) -> web.Application:
    """`timers=False` leaves firing timers to the caller (tests with a manual clock)."""
    metrics = Metrics()
    # No middlewares: packager.http.edge wraps each route's handler (errors, CORS, metrics).
    app = web.Application(client_max_size=config.max_api_body)
    quiet_client_errors()
    app[CONFIG] = config
    app[METRICS] = metrics
    app[SERVICES] = services or build_services(
        config, clock, store, observe_build=metrics.remux_seconds.observe
    )
    app[READY] = {"ready": False}
    app[playback.READY] = {}
    app.on_shutdown.append(_not_ready)
    app.on_cleanup.append(_stop_encodes)
    app.cleanup_ctx.append(_readiness)
    app.cleanup_ctx.append(_videos)
    own = [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics_handler),
    ]
    tables = [
        own,
        ingest.routes,
        api.routes,
        livepeer.routes,
        videos.routes,
        playback.routes,
        live.routes,
        console.routes,
    ]
    edge.add_routes(app.router, tables, metrics.http)
    if timers:
        app.cleanup_ctx.append(_background(lambda app: app[SERVICES].timers.run()))
    if config.demo and config.worker == 0:  # one feed, however many workers share the store
        app.cleanup_ctx.append(_background(_demo_feed))
    return app
