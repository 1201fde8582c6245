"""A clip's poster: the first frame its highest rendition shows, as a JPEG.

ffmpeg decodes it in a subprocess (asyncio, so the event loop never waits on it), fed the
rendition's init segment and first media segment on stdin: a fragmented MP4 has its `moov`
first, so ffmpeg needs no seeking, and nothing touches the disk. A decoder emits frames in
presentation order, so its first output frame is the first one shown. A few decodes run at
once (each takes a core for ~0.1 s at 1080p); requests for the same clip share one. The JPEG is
kept until the clip expires (the timers' `on_expire` hook), within a bound on how many.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import imageio_ffmpeg

from packager.errors import NotFound, TooEarly
from packager.service.encode import stop_process
from packager.store.base import Store
from packager.store.model import Clip

DECODES_AT_ONCE = 2
DECODE_TIMEOUT = 20.0  # seconds; a segment is a few seconds of media, decoded in ~0.1 s
POSTERS_KEPT = 2000  # ~50-100 KB each at 1080p; least recently used go first
JPEG_QUALITY = 3  # mjpeg's qscale: 2 (best) .. 31
RETRY_MARGIN = 2  # the first segment arrives when the encoder has finished it, a bit after


class PosterFailed(NotFound):
    """The first segment gave no picture (audio only, or it did not decode)."""

    code = "poster_not_available"


@dataclass(frozen=True, slots=True)
class Poster:
    jpeg: bytes
    etag: str


class Posters:
    def __init__(self, store: Store, ffmpeg: str | None = None) -> None:
        self.store = store
        self._ffmpeg = ffmpeg
        self._kept: OrderedDict[str, Poster] = OrderedDict()
        self._decoding: dict[str, asyncio.Future[Poster]] = {}
        self._slots = asyncio.Semaphore(DECODES_AT_ONCE)

    def __len__(self) -> int:
        return len(self._kept)

    async def get(self, clip: Clip) -> Poster:
        kept = self._kept.get(clip.id)
        if kept is not None:
            self._kept.move_to_end(clip.id)
            return kept
        cr = clip.reference
        if not cr.segments:
            # A growing clip whose first segment the encoder has not sent yet.
            first_end = max(clip.requested_start, clip.created_at) + cr.target_duration
            wait = max(1, math.ceil(first_end - self.store.clock()) + RETRY_MARGIN)
            raise TooEarly(f"clip {clip.id} has no frame yet; its poster comes with it", wait)
        task = self._decoding.get(clip.id)
        if task is None:
            task = asyncio.ensure_future(self._decode(clip))
            self._decoding[clip.id] = task
        # Shielded: a client that hangs up does not cancel the decode others wait for.
        return await asyncio.shield(task)

    async def _decode(self, clip: Clip) -> Poster:
        try:
            first = clip.reference.segments[0]
            init = await self.store.init(first.init_id)
            if init.video is None:
                raise PosterFailed(f"clip {clip.id} has no video to take a poster from")
            media = await self.store.segment_data(first.key)
            async with self._slots:
                jpeg = await self._first_frame(init.data + media)
        finally:
            forgotten = self._decoding.pop(clip.id, None) is None
        poster = Poster(jpeg, '"' + hashlib.blake2b(jpeg, digest_size=12).hexdigest() + '"')
        if not forgotten:  # the clip did not expire while it was decoding
            self._kept[clip.id] = poster
            while len(self._kept) > POSTERS_KEPT:
                self._kept.popitem(last=False)
        return poster

    async def _first_frame(self, mp4: bytes) -> bytes:
        if self._ffmpeg is None:
            # Finding the binary looks at the filesystem: once, off the loop.
            found: str = await asyncio.to_thread(imageio_ffmpeg.get_ffmpeg_exe)
            self._ffmpeg = found
        exe: str = self._ffmpeg
        process = await asyncio.create_subprocess_exec(
            exe,
            *("-v", "error", "-f", "mp4", "-i", "pipe:0", "-map", "0:v:0", "-frames:v", "1"),
            *("-c:v", "mjpeg", "-q:v", str(JPEG_QUALITY), "-f", "image2pipe", "pipe:1"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(mp4), DECODE_TIMEOUT)
        except TimeoutError:
            await stop_process(process)
            raise PosterFailed(
                f"decoding the clip's first frame took over {DECODE_TIMEOUT:g} s"
            ) from None
        except BaseException:  # the server is stopping: leave no ffmpeg behind
            await stop_process(process)
            raise
        if process.returncode != 0 or not out.startswith(b"\xff\xd8"):
            detail = err.decode(errors="replace").strip()[-300:] or f"exit {process.returncode}"
            raise PosterFailed(f"the clip's first segment did not decode: {detail}")
        return out

    def forget(self, clip: Clip) -> None:
        """Hook: an expired clip's poster goes with it."""
        self._kept.pop(clip.id, None)
        self._decoding.pop(clip.id, None)
