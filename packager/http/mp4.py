"""Progressive MP4 downloads: `rec_{clip}_master.mp4` and `rec_{clip}_media_{n}_{h}.mp4`.

The file is an `Mp4Layout` (packager.package.mp4), built once per complete clip rendition by
packager.service.mp4 and kept until the clip expires; a request streams the views that cover
its byte range. aiohttp's `FileResponse` does Range only for real files, so the same header
logic lives here: HEAD, single Range -> 206, unsatisfiable -> 416 `bytes */N`, If-Range,
If-None-Match.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable

from aiohttp import hdrs, web

from packager.errors import ClipNotFound, TooEarly
from packager.http import caching
from packager.http.errors import error_response
from packager.http.keys import SERVICES
from packager.package.mp4 import Mp4Layout
from packager.service.mp4 import Mp4File
from packager.store.model import Clip, ClipRendition

# asyncio keeps whatever the socket does not take at once in its own buffer (a copy): writing
# in slices this big bounds that copy, so a slow client costs O(slice), not O(segment). Big
# enough to write a 1080p segment (~300 kB) in one go: 256 KiB split each in two, and the whole
# file came 12-15% slower.
WRITE_SLICE = 512 * 1024
# The segment holding a clip's end arrives after that end (an encoder sends it when done).
RETRY_MARGIN = 2


class RangeNotSatisfiable(Exception):
    """The one range asked for starts past the end of the file (416)."""


MAX_RANGE_HEADER = 200  # a real single range is a few dozen characters


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range, or None to send the whole file.

    None for several ranges (a 200 with the full body is allowed, RFC 9110 §14.2), another
    unit, or a malformed value (which §14.2 lets a server ignore). Linear in the header's
    length and bounded: a regex with optional whitespace cost 250 ms on `bytes=0-` and
    8,100 spaces, and a handful of such clients starved everyone else.
    """
    if len(header) > MAX_RANGE_HEADER:
        return None
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not _digits(first) or not _digits(last):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, size if not last else min(int(last) + 1, size)


def _digits(text: str) -> bool:
    """ASCII digits only (str.isdigit takes superscripts and Arabic-Indic digits), or empty;
    at most 30 of them."""
    return len(text) <= 30 and all("0" <= c <= "9" for c in text)


def _if_range_holds(value: str, file: Mp4File) -> bool:
    """If-Range: an entity tag must match strongly, a date exactly (RFC 9110 §13.1.5)."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == file.etag
    return caching.parse_http_date(value) == file.last_modified


def _precondition_failed(headers: dict[str, str]) -> web.Response:
    resp = error_response(412, "precondition_failed", "If-Match or If-Unmodified-Since failed")
    resp.headers.update(caching.CORS)
    resp.headers[hdrs.ETAG] = headers[hdrs.ETAG]
    return resp


def _unsatisfiable(size: int) -> web.Response:
    """416 with the length, so the client can ask again (RFC 9110 §15.5.17)."""
    resp = error_response(416, "range_not_satisfiable", f"the file has {size} bytes")
    resp.headers.update(caching.CORS)
    resp.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
    resp.headers[hdrs.ACCEPT_RANGES] = "bytes"
    return resp


async def serve(request: web.Request, clip: Clip, cr: ClipRendition) -> web.StreamResponse:
    """GET/HEAD of a clip rendition's MP4, whole or one byte range, streamed from the layout."""
    services = request.app[SERVICES]
    now = services.clock()
    if not clip.complete:
        wait = max(1, math.ceil(clip.requested_end - now) + RETRY_MARGIN)
        raise TooEarly(f"clip {clip.id} is still being recorded; its MP4 is ready at its end", wait)
    if not cr.segments:
        raise ClipNotFound(f"rendition {cr.name} of clip {clip.id} holds no media")
    file = await services.mp4.get(clip, cr, now)
    headers = caching.cache_headers(now, clip.expiration, True)
    return await send_file(request, file, headers, services.mp4.read)


Reader = Callable[[Hashable], Awaitable[bytes]]


async def _no_reader(key: Hashable) -> bytes:
    raise LookupError(f"no reader for layout piece {key!r}")


async def send_file(
    request: web.Request, file: Mp4File, headers: dict[str, str], read: Reader = _no_reader
) -> web.StreamResponse:
    """GET/HEAD of an MP4, whole or one byte range, with validators and preconditions; the
    body is streamed from the layout's views (a computed MP4, or a saved file mapped in)."""
    size = file.layout.size
    headers[hdrs.ETAG] = file.etag
    headers[hdrs.LAST_MODIFIED] = caching.http_date(file.last_modified)
    headers[hdrs.ACCEPT_RANGES] = "bytes"
    if caching.precondition_failed(request, file.etag, file.last_modified):
        return _precondition_failed(headers)
    if caching.not_modified(request, file.etag, file.last_modified):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = "video/mp4"
    headers[hdrs.CONTENT_DISPOSITION] = f'inline; filename="{file.filename}"'
    start, end, status = 0, size, 200
    asked = request.headers.get(hdrs.RANGE)
    if asked is not None and _if_range_holds(request.headers.get(hdrs.IF_RANGE, file.etag), file):
        try:
            picked = byte_range(asked, size)
        except RangeNotSatisfiable:
            return _unsatisfiable(size)
        if picked is not None:
            start, end = picked
            status = 206
            headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = end - start
    await resp.prepare(request)
    if request.method != hdrs.METH_HEAD:
        # A client that hangs up raises ConnectionError here: packager.http.errors.client_gone.
        await _stream(resp, file.layout, start, end, read)
    await resp.write_eof()
    return resp


async def _stream(
    resp: web.StreamResponse, layout: Mp4Layout, start: int, end: int, read: Reader
) -> None:
    for key, offset, length in layout.pieces_in_range(start, end):
        if key is None:
            data: bytes | memoryview = layout.header
        elif isinstance(key, bytes | memoryview):  # a saved file's own bytes
            data = key
        else:  # a segment's, read from the store only now: nothing before `start`
            data = await read(key)
        piece = memoryview(data)[offset : offset + length]
        for at in range(0, length, WRITE_SLICE):
            await resp.write(piece[at : at + WRITE_SLICE])
