"""What every request passes through: its errors mapped to JSON, CORS on public errors, and
its count and time in the metrics.

Each route's handler is wrapped once, when it is registered, instead of running an aiohttp
middleware: any middleware costs a request two more coroutine layers and a lookup, which was
a tenth of a cached playlist's cost (bench section 'efficiency'). A last catch-all route
answers what no route matches (404, or 405 with the methods the path has), so those errors
are JSON like the rest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attr
from aiohttp import web
from aiohttp.web_routedef import AbstractRouteDef, RouteDef

from packager.http.errors import Handler, error_for, public_cors
from packager.http.metrics import ROUTE_KEY, RequestStats

UNMATCHED = "unmatched"  # the route label of requests no route matched


def instrument(handler: Handler, stats: RequestStats) -> Handler:
    """`handler` with its errors answered and the request counted and timed."""
    clock = time.perf_counter

    async def edge(request: web.Request) -> web.StreamResponse:
        started = clock()
        try:
            resp = await handler(request)
        except Exception as exc:  # noqa: BLE001 - error_for re-raises what is not an answer
            resp = error_for(request, exc)
        status = resp.status
        if status >= 400:
            public_cors(request, resp)
        try:
            route = request[ROUTE_KEY]  # playback's own label: which kind of file
        except KeyError:
            route = _canonical(request)
        method = request.method
        if method == "HEAD":
            sent = 0
        elif resp.prepared:  # streamed: what went out
            sent = resp.body_length
        else:  # bytes in hand (a Response's body; len() is cheaper than content_length)
            body = getattr(resp, "body", None)
            sent = len(body) if isinstance(body, bytes) else (resp.content_length or 0)
        stats.record(route, method, status, clock() - started, sent)
        return resp

    edge.__name__ = edge.__qualname__ = getattr(handler, "__name__", "handler")
    return edge


def _canonical(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def add_routes(
    router: web.UrlDispatcher, tables: Iterable[Iterable[AbstractRouteDef]], stats: RequestStats
) -> None:
    """Register every route of `tables`, in order, each handler instrumented; then the
    catch-all."""
    for table in tables:
        for route in table:
            if not isinstance(route, RouteDef):
                raise TypeError(f"only handler routes are instrumented, not {route!r}")
            attr.evolve(route, handler=instrument(route.handler, stats)).register(router)
    router.add_route("*", "/{unmatched:.*}", instrument(_unmatched, stats))


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """No route took the request: 405 when some route has its path under other methods."""
    request[ROUTE_KEY] = UNMATCHED
    allowed: set[str] = set()
    own = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
