"""What a CDN and a browser need of playback responses: validators, 304s, lifetimes, CORS."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

# A growing playlist changes every segment: let the CDN coalesce requests, never pin it.
GROWING_MAX_AGE = 1

CORS = {
    "Access-Control-Allow-Origin": "*",
    # hls.js and <video> read these on cross-origin responses (Range replies, validators).
    "Access-Control-Expose-Headers": (
        "Content-Length, Content-Range, Accept-Ranges, ETag, Age, Content-Disposition"
    ),
}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, If-None-Match, If-Modified-Since, If-Range",
    "Access-Control-Max-Age": "86400",
}


def http_date(ts: float) -> str:
    return _http_date(math.floor(ts))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    """The same few dates (clip creation, completion) are formatted on every response."""
    return format_datetime(datetime.fromtimestamp(seconds, tz=UTC), usegmt=True)


def cache_headers(now: float, expiration: float, immutable: bool) -> dict[str, str]:
    """Immutable things live until the clip expires, not a second longer (the CDN must drop them)."""
    if immutable:
        cache = f"public, max-age={max(0, math.floor(expiration - now))}"
    else:
        cache = f"public, max-age={GROWING_MAX_AGE}"
    return {"Cache-Control": cache, **CORS}


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 §13.1.2): W/"x" matches "x".
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag.removeprefix("W/") in tags


def parse_http_date(text: str) -> float | None:
    """Seconds of an HTTP date; None for anything unreadable (a header is hostile input)."""
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def precondition_failed(request: web.Request, etag: str, last_modified: float | None) -> bool:
    """If-Match (strong comparison) or, without it, If-Unmodified-Since (RFC 9110 §13.2.2)."""
    im = request.headers.get("If-Match")
    if im is not None:
        tags = {t.strip() for t in im.split(",")}
        return not ("*" in tags or etag in tags)
    ius = request.headers.get("If-Unmodified-Since")
    if ius is not None and last_modified is not None:
        since = parse_http_date(ius)
        return since is not None and math.floor(last_modified) > since
    return False


def not_modified(request: web.Request, etag: str, last_modified: float | None) -> bool:
    """RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = request.headers.get("If-Modified-Since")
    if ims is not None and last_modified is not None:
        since = parse_http_date(ims)
        return since is not None and math.floor(last_modified) <= since
    return False


def validated(
    request: web.Request,
    headers: dict[str, str],
    etag: str,
    last_modified: float | None,
) -> web.Response | None:
    """Add validators to `headers`; a 304 response when the client's copy is current."""
    headers["ETag"] = etag
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    if not_modified(request, etag, last_modified):
        return web.Response(status=304, headers=headers)
    return None


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for playback routes (a player on another origin sending Range)."""
    return web.Response(status=204, headers=PREFLIGHT)
