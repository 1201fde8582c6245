"""Built progressive MP4s of complete clip renditions: one build each, shared by every request,
dropped when the clip expires.

Building is CPU work (the moov from the segments' sample tables) done in a thread, a few at a
time (`max_builds` slots). A burst of new clips does not get 503s at once: up to twice the
slots more requests wait for a slot, each at most QUEUE_WAIT seconds; past that bound the
answer is 503 with Retry-After (the churn bench saw 98 of 1,000 first GETs refused before).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from packager.errors import ClipNotFound, Overloaded
from packager.media.model import InitSegment
from packager.package.mp4 import Cut, LayoutSegment, Mp4Layout, build_layout
from packager.service.frames import FrameCuts
from packager.store.base import Store
from packager.store.model import Clip, ClipRendition, SegmentKey, SegmentRef

QUEUE_WAIT = 2.0  # seconds a request may wait for a build slot before it gets 503
QUEUE_FACTOR = 2  # how many waiters per slot
# Segments up to which a layout is joined on the event loop (about 1 ms; past it, a thread).
INLINE_BUILD = 300
# Seconds a new clip's creation waits for its master.mp4 build (an hour's is ~7 ms); past it,
# the first GET waits for the rest.
SETTLE_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class Mp4File:
    """A built MP4 with the validators HTTP caches and players check."""

    layout: Mp4Layout
    etag: str
    last_modified: int  # unix seconds
    filename: str


class Mp4Builds:
    def __init__(
        self,
        store: Store,
        observe_build: Callable[[float], None] = lambda seconds: None,
        max_builds: int = 4,
        frames: FrameCuts | None = None,
    ) -> None:
        self.store = store
        self.frames = frames or FrameCuts(store)
        self._files: dict[tuple[str, str], Mp4File] = {}
        self._building: dict[tuple[str, str], asyncio.Task[Mp4File]] = {}
        self._observe_build = observe_build
        self._slots = asyncio.Semaphore(max_builds)
        self._max_waiting = QUEUE_FACTOR * max_builds
        self._waiting = 0

    def __len__(self) -> int:
        return len(self._files)

    def cached(self, clip_id: str, rendition: str) -> Mp4File | None:
        return self._files.get((clip_id, rendition))

    async def get(self, clip: Clip, cr: ClipRendition, now: float, wait: bool = False) -> Mp4File:
        """The built file; `wait` (background work) queues for a slot without a bound."""
        key = (clip.id, cr.name)
        built = self._files.get(key)
        if built is not None:
            return built
        task = self._building.get(key)
        if task is None:
            if not wait and self._slots.locked() and self._waiting >= self._max_waiting:
                raise Overloaded("too many MP4 files are being prepared right now; retry shortly")
            task = self._start(key, clip, cr, now, wait)
        # Shielded: a client that hangs up does not cancel the build the others wait for.
        return await asyncio.shield(task)

    def _start(
        self, key: tuple[str, str], clip: Clip, cr: ClipRendition, now: float, wait: bool
    ) -> asyncio.Task[Mp4File]:
        """The build, registered at once: a burst of first requests (Range probes) and the
        clip's own `settle` share it."""
        task = asyncio.ensure_future(self._build(key, clip, cr, now, wait))
        self._building[key] = task
        return task

    async def _build(
        self, key: tuple[str, str], clip: Clip, cr: ClipRendition, now: float, wait: bool
    ) -> Mp4File:
        try:
            await self._acquire(wait)
            try:
                started = time.perf_counter()
                refs, cut = await self._cut(clip, cr)
                segments = await self._layout_segments(refs)
                if len(segments) > INLINE_BUILD:
                    layout = await asyncio.to_thread(build_layout, segments, clip.start, cut)
                else:  # ~0.1 ms: less than a thread's hop
                    layout = build_layout(segments, clip.start, cut)
                self._observe_build(time.perf_counter() - started)
            finally:
                self._slots.release()
        finally:
            expired = self._building.pop(key, None) is None
        built = _describe(clip, cr, layout, now)
        if not expired:
            self._files[key] = built
        return built

    async def _acquire(self, wait: bool) -> None:
        if wait:
            await self._slots.acquire()
            return
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), QUEUE_WAIT)
        except TimeoutError:
            raise Overloaded(
                "too many MP4 files are being prepared right now; retry shortly"
            ) from None
        finally:
            self._waiting -= 1

    async def _cut(
        self, clip: Clip, cr: ClipRendition
    ) -> tuple[tuple[SegmentRef, ...], Cut | None]:
        """The segments a build reads and, frame-accurate, its cut: from the keyframe the first
        shown frame decodes from to the segment of the last."""
        if not clip.frame_accurate:
            return cr.segments, None
        found = await self.frames.window(clip, cr)
        if found is None:
            raise ClipNotFound(f"rendition {cr.name} of clip {clip.id} shows no frame")
        first = await self.frames.key_segment(cr, found)
        refs = cr.segments[first : found.tail_segment + 1]
        return refs, Cut(found.head_segment - first, found.head, found.tail)

    async def _layout_segments(self, refs: tuple[SegmentRef, ...]) -> list[LayoutSegment]:
        """What the builder needs: each segment's prepared tables and init, keyed by where its
        bytes are (the layout holds keys, never the bytes)."""
        store = self.store
        inits: dict[str, InitSegment] = {}
        for ref in refs:
            if ref.init_id not in inits:
                inits[ref.init_id] = await store.init(ref.init_id)
        tables = await store.segments_tables([ref.key for ref in refs])
        return [
            LayoutSegment(ref.key, inits[ref.init_id], t)
            for ref, t in zip(refs, tables, strict=True)
        ]

    async def read(self, key: Hashable) -> bytes:
        """A layout piece's bytes: a segment's, from the store."""
        assert isinstance(key, SegmentKey)
        return await self.store.segment_data(key)

    def prebuild(self, clip: Clip) -> None:
        """Hook: build a completed clip's `master.mp4` now, in the background, so its first
        download does not wait for the moov. Other renditions are built on first request."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # completed outside the server (a script, a test): build lazily
            return
        cr = clip.reference
        key = (clip.id, cr.name)
        if cr.segments and key not in self._files and key not in self._building:
            now = clip.completed_at or clip.created_at
            self._start(key, clip, cr, now, wait=True).add_done_callback(_ignore_result)

    async def settle(self, clip: Clip) -> None:
        """Hook: wait, at most SETTLE_WAIT, for the build `prebuild` started. A new clip's MP4
        is fetched right after it is cut, by a CDN: its first GET then costs what a later one
        does, and the cut's answer pays the build instead (a thread's hop past INLINE_BUILD
        segments, so other requests are not held up)."""
        task = self._building.get((clip.id, clip.reference.name))
        if task is not None:
            await asyncio.wait([task], timeout=SETTLE_WAIT)

    def forget(self, clip: Clip) -> None:
        """Hook: an expired clip's files go with it."""
        for cr in clip.renditions:
            self._files.pop((clip.id, cr.name), None)
            self._building.pop((clip.id, cr.name), None)


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
