"""Durable VOD copies: a completed `vod_required` clip is written to disk in a thread, and its
life moves COMPLETE -> SAVING -> SAVED (or FAILED, with the reason) in the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from packager.errors import ClipNotFound
from packager.package.spec import video_spec
from packager.service.mp4 import Mp4Builds
from packager.store.base import Store
from packager.store.model import Clip, ClipState, InvalidTransition
from packager.store.videos import Video, VideoFile, VideoLibrary

log = logging.getLogger(__name__)

SAVE_HOLD = 60.0  # seconds a save holds its clip before another process may take it up


class VideoSaver:
    """Hook on completion: one copy per clip, however often it is told the clip completed."""

    def __init__(self, store: Store, library: VideoLibrary, builds: Mp4Builds) -> None:
        self.store = store
        self.library = library
        self.builds = builds
        self.pending: set[asyncio.Task[None]] = set()
        self._saving: set[str] = set()

    def on_complete(self, clip: Clip) -> None:
        """Also called for a SAVING clip whose saver's hold ran out (its process died)."""
        if not clip.vod_required or clip.id in self._saving:
            return
        saved = self.library.for_clip(clip.id)
        if saved is not None and clip.state is not ClipState.SAVING:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # completed outside the server (a script): nothing to run it
            return
        self._saving.add(clip.id)
        task = loop.create_task(self._save(clip))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _save(self, clip: Clip) -> None:
        hold: asyncio.Task[None] | None = None
        try:
            try:
                # COMPLETE -> SAVING happens once, in the store: the process that made that
                # move saves. SAVING -> SAVING is a takeover after a dead process's hold.
                clip = await self.store.update_clip(clip.id, ClipState.SAVING)
            except InvalidTransition:
                return  # saved (or being saved) by another process
            hold = asyncio.create_task(self._hold(clip.id))
            video = self.library.for_clip(clip.id)  # written before its process died?
            if video is None:
                video = await self._write(clip)
        except ClipNotFound:
            return  # it expired meanwhile
        except Exception as exc:
            log.exception("saving clip %s failed", clip.id)
            await self._mark(clip, ClipState.FAILED, vod_error=f"saving the VOD failed: {exc}")
        else:
            log.info("clip %s saved as video %s", clip.id, video.id)
            await self._mark(clip, ClipState.SAVED, video_id=video.id)
        finally:
            self._saving.discard(clip.id)
            if hold is not None:
                hold.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await hold
                with contextlib.suppress(Exception):
                    await self.store.hold_save(clip.id, None)

    async def _hold(self, clip_id: str) -> None:
        """Keep the save's hold on the clip renewed while it writes."""
        while True:
            await self.store.hold_save(clip_id, self.store.clock() + SAVE_HOLD)
            await asyncio.sleep(SAVE_HOLD / 4)

    async def _mark(
        self, clip: Clip, state: ClipState, *, video_id: int | None = None, vod_error: str = ""
    ) -> None:
        try:
            await self.store.update_clip(
                clip.id, state, video_id=video_id, vod_error=vod_error or None
            )
        except ClipNotFound:
            pass  # expired while saving: the video (if any) is still listed under /videos

    async def _write(self, clip: Clip) -> Video:
        renditions = [cr for cr in clip.renditions if cr.segments]
        if not renditions:
            raise ValueError("the clip holds no media to save")
        bodies = []
        for cr in renditions:
            built = await self.builds.get(clip, cr, clip.completed_at or clip.created_at, wait=True)
            init = await self.store.init(cr.first_init)
            video = init.video
            info = VideoFile(
                rendition=cr.name,
                size=0,
                sha256="",
                width=video.width if video else 0,
                height=video.height if video else 0,
                codecs=init.codecs,
                bandwidth=cr.average_bitrate(),
            )
            # The writer runs in a thread: it gets the segments' bytes up front (references
            # to what the store holds, for the memory store).
            data = {k: await self.builds.read(k) for k in built.layout.keys()}
            bodies.append((info, built.layout.iter_range(read=data.__getitem__)))
        video_id, slug = await asyncio.to_thread(self.library.reserve)
        reference_init = await self.store.init(clip.reference.first_init)
        start, duration = await self.builds.frames.shown(clip)  # what its MP4 shows
        draft = Video(
            id=video_id,
            slug=slug,
            clip_id=clip.id,
            stream_id=clip.stream_id,
            name=clip.name,
            created_at=clip.completed_at or clip.created_at,
            start=start,
            duration=duration,
            spec=video_spec(clip.reference, reference_init, duration),
            private=clip.private,
        )
        return await asyncio.to_thread(self.library.write, draft, bodies)

    async def drain(self) -> None:
        """Graceful shutdown: let every write under way finish."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)
