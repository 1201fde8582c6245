"""The one place where typed errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from packager import errors
from packager.http.caching import CORS
from packager.http.jsonio import json_response
from packager.http.keys import SERVICES

log = logging.getLogger(__name__)

STATUS: dict[type[errors.PackagerError], int] = {
    errors.BadMedia: 400,
    errors.InvalidField: 400,
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.VideoGone: 410,
    errors.StreamExists: 409,
    errors.NothingInDvr: 409,
    errors.RangeNotInDvr: 422,
    errors.RequestTimeout: 408,
    errors.TooLarge: 413,
    errors.TooEarly: 425,
    errors.LimitReached: 429,
    errors.Overloaded: 503,
    errors.BudgetExceeded: 507,
}

PUBLIC_PREFIXES = ("/rec/", "/vod/", "/live/")

# Livepeer's routes (packager.http.livepeer), and anything under the `/api` its SDK's default
# server URL ends in: their errors also carry Livepeer's `{"errors": [...]}`, which its SDK
# reads, beside our `error` and `detail` (each client ignores the other's fields).
LIVEPEER_PATH = re.compile(r"/api(/.*)?|/clip/?|/streams?/[^/]+/clips/?")

STORE_RETRY_AFTER = 2  # seconds: a Redis failover takes a few
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that hung up before the answer

# Errors of unknown routes and methods are short-lived, so a CDN does not pin them.
NOT_FOUND_MAX_AGE = 5


def status_of(exc: errors.PackagerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 409  # other domain conflicts (e.g. no init segment yet)


def error_response(
    status: int, code: str, detail: str, livepeer: bool = False, **extra: object
) -> web.Response:
    body: dict[str, object] = {"error": code, "detail": detail}
    if livepeer:
        body["errors"] = [detail]
    body.update(extra)
    resp = json_response(body, status=status)
    if status == 404:
        resp.headers["Cache-Control"] = f"public, max-age={NOT_FOUND_MAX_AGE}"
    else:
        resp.headers["Cache-Control"] = "no-store"
    return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_for(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error an exception from a handler maps to; re-raises what is not an answer
    (a redirect). Called in packager.http.edge's `except`, around each route."""
    if isinstance(exc, errors.PackagerError):
        livepeer = _livepeer(request)
        extra: dict[str, object] = {}
        if isinstance(exc, errors.InvalidField):
            extra["field"] = exc.field
        resp = error_response(status_of(exc), exc.code, exc.detail, livepeer, **extra)
        if isinstance(exc, errors.TooEarly):
            resp.headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, errors.Overloaded):
            resp.headers["Retry-After"] = "1"
        if isinstance(exc, errors.Unauthorized):
            resp.headers["WWW-Authenticate"] = 'Bearer realm="packager"'
        return resp
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = exc.reason.lower().replace(" ", "_")
        resp = error_response(exc.status, code, exc.reason, _livepeer(request))
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    if isinstance(exc, ConnectionError):
        return client_gone(request, exc)
    if isinstance(exc, request.app[SERVICES].store.unavailable):
        log.warning("store unavailable on %s %s: %r", request.method, request.path, exc)
        resp = error_response(
            503, "store_unavailable", "the store cannot be reached right now; retry shortly"
        )
        resp.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return resp
    if isinstance(exc, web.RequestPayloadError):  # a malformed chunked body, say
        return error_response(400, "bad_body", f"the request body could not be read: {exc}")
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(
        500, "internal_error", "the server failed; this is a bug", _livepeer(request)
    )


def client_gone(request: web.Request, exc: Exception) -> web.Response:
    """The client hung up mid-request (a CDN aborting a download, an encoder dropping a PUT):
    an everyday end, not a failure. Raised on, aiohttp would log an ERROR with a traceback;
    this answer is never delivered (aiohttp ends a response whose client is gone quietly), but
    it is counted, as nginx's 499."""
    log.debug("client gone during %s %s: %s", request.method, request.path, exc)
    resp = web.Response(status=CLIENT_CLOSED_REQUEST)
    resp.force_close()
    return resp


def public_cors(request: web.Request, resp: web.StreamResponse) -> None:
    """A playback error carries CORS, so a player on another origin can read the 404."""
    if resp.status >= 400 and request.path.startswith(PUBLIC_PREFIXES):
        resp.headers.update(CORS)


def _livepeer(request: web.Request) -> bool:
    """Worked out only for an error: a regex on every request's path cost the hot path."""
    return LIVEPEER_PATH.fullmatch(request.path) is not None
