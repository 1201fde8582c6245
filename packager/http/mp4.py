"""Progressive MP4 downloads: `rec_{clip}_master.mp4` and `rec_{clip}_media_{n}_{h}.mp4`.

The file is an `Mp4Layout` (packager.package.mp4), built once per complete clip rendition and
kept until the clip expires; a request streams the views that cover its byte range. aiohttp's
`FileResponse` does Range only for real files, so the same header logic lives here: HEAD,
single Range -> 206, unsatisfiable -> 416 `bytes */N`, If-Range, If-None-Match.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import hdrs, web

from packager.errors import ClipNotFound, Overloaded, TooEarly
from packager.http import caching
from packager.http.errors import error_response
from packager.http.keys import STORE
from packager.package.mp4 import Mp4Layout, build_layout
from packager.store.clips import Clip, ClipRendition

# asyncio keeps whatever the socket does not take at once in its own buffer (a copy): writing
# in slices this big bounds that copy, so a slow client costs O(slice), not O(segment).
WRITE_SLICE = 256 * 1024
# The segment holding a clip's end arrives after that end (an encoder sends it when done).
RETRY_MARGIN = 2
_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]{0,30})\s*-\s*([0-9]{0,30})\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Mp4File:
    """A built MP4 with the validators HTTP caches and players check."""

    layout: Mp4Layout
    etag: str
    last_modified: int  # unix seconds
    filename: str


class Mp4Files:
    """Built files of complete clip renditions by (clip id, rendition): one build per rendition,
    shared by every request, dropped when the clip expires."""

    def __init__(
        self,
        observe_build: Callable[[float], None] = lambda seconds: None,
        max_builds: int = 4,
    ) -> None:
        self._files: dict[tuple[str, str], Mp4File] = {}
        self._building: dict[tuple[str, str], asyncio.Future[Mp4File]] = {}
        self._observe_build = observe_build
        # Builds are CPU work in threads: past this many at once, requests get 503, not a queue.
        self._slots = asyncio.Semaphore(max_builds)

    def __len__(self) -> int:
        return len(self._files)

    async def get(self, clip: Clip, cr: ClipRendition, now: float, wait: bool = False) -> Mp4File:
        """The built file; `wait` queues for a build slot instead of raising Overloaded."""
        key = (clip.id, cr.name)
        built = self._files.get(key)
        if built is not None:
            return built
        task = self._building.get(key)
        if task is None and not wait and self._slots.locked():
            raise Overloaded("too many MP4 files are being prepared right now; retry shortly")
        if task is None:  # a burst of first requests (Range probes) shares one build
            task = asyncio.ensure_future(self._build(key, clip, cr, now))
            self._building[key] = task
        # Shielded: a client that hangs up does not cancel the build the others wait for.
        return await asyncio.shield(task)

    async def _build(
        self, key: tuple[str, str], clip: Clip, cr: ClipRendition, now: float
    ) -> Mp4File:
        try:
            # O(samples) of pure Python (~0.2 s for an hour): in a thread, so other requests
            # keep flowing while a long clip's tables are built.
            async with self._slots:
                started = time.perf_counter()
                layout = await asyncio.to_thread(build_layout, list(cr.segments), clip.start)
                self._observe_build(time.perf_counter() - started)
        finally:
            expired = self._building.pop(key, None) is None
        built = _describe(clip, cr, layout, now)
        if not expired:
            self._files[key] = built
        return built

    def prebuild(self, clip: Clip) -> None:
        """Store hook: build a completed clip's `master.mp4` now, in the background, so its
        first download does not wait O(samples) for the moov (about 0.1 s per hour of media).
        Other renditions, downloaded less, are built on first request."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # completed outside the server (a script, a test): build lazily
            return
        cr = clip.reference
        key = (clip.id, cr.name)
        if cr.segments and key not in self._files and key not in self._building:
            now = clip.completed_at or clip.created_at
            task = loop.create_task(self.get(clip, cr, now, wait=True))
            task.add_done_callback(_ignore_result)

    def forget(self, clip: Clip) -> None:
        """Store hook: an expired clip's files go with it."""
        for cr in clip.renditions:
            self._files.pop((clip.id, cr.name), None)
            self._building.pop((clip.id, cr.name), None)


MP4_FILES = web.AppKey("mp4_files", Mp4Files)


def _ignore_result(task: asyncio.Task[Mp4File]) -> None:
    """A prebuild that failed (or was cancelled) is redone by the request that needs it."""
    if not task.cancelled():
        task.exception()


def _describe(clip: Clip, cr: ClipRendition, layout: Mp4Layout, now: float) -> Mp4File:
    start = datetime.fromtimestamp(clip.start, tz=UTC).strftime("%Y%m%d-%H%M%S")
    stream = re.sub(r"[^A-Za-z0-9_-]", "_", clip.stream_id)
    final = clip.completed_at if clip.completed_at is not None else clip.created_at
    return Mp4File(
        layout=layout,
        etag=f'"{clip.id}-{cr.name}-{layout.size:x}"',
        last_modified=math.floor(min(final, now)),
        filename=f"{stream}_{start}_{cr.name}.mp4",
    )


class RangeNotSatisfiable(Exception):
    """The one range asked for starts past the end of the file (416)."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range, or None to send the whole file.

    None for several ranges (a 200 with the full body is allowed, RFC 9110 §14.2), another
    unit, or a malformed value (which §14.2 lets a server ignore).
    """
    m = _RANGE.fullmatch(header)
    if m is None:
        return None
    first, last = m[1], m[2]
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
    store = request.app[STORE]
    now = store.clock()
    if not clip.complete:
        wait = max(1, math.ceil(clip.requested_end - now) + RETRY_MARGIN)
        raise TooEarly(f"clip {clip.id} is still being recorded; its MP4 is ready at its end", wait)
    if not cr.segments:
        raise ClipNotFound(f"rendition {cr.name} of clip {clip.id} holds no media")
    file = await request.app[MP4_FILES].get(clip, cr, now)
    return await send_file(request, file, caching.cache_headers(now, clip.expiration, True))


async def send_file(
    request: web.Request, file: Mp4File, headers: dict[str, str]
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
        for piece in file.layout.iter_range(start, end):
            for at in range(0, len(piece), WRITE_SLICE):
                await resp.write(piece[at : at + WRITE_SLICE])
    await resp.write_eof()
    return resp
