"""Frame-accurate clips: which frames each rendition shows (packager.package.frames), the HLS
pieces that show them (packager.package.cuts), and the re-encodes those need.

Everything here is computed from the clip's manifest and its segments' tables, the same in
every process; a complete clip's windows and pieces never change and are kept until it expires,
a growing one's are computed again as its segments arrive (its tail is decided when its end
does). Re-encoded pieces start when the clip is created (or, growing, when its playlist first
lists them), lowest rendition first; their bytes are kept in the store with the clip
(Store.put_clip_media: counted against the memory budget, freed at expiry). A request for one
still being made waits up to WAIT_FOR_ENCODE seconds, then gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from packager.errors import ClipNotFound, Overloaded
from packager.media.rewrite import avc_parameter_set_ids
from packager.package.cuts import (
    Piece,
    PieceKind,
    Source,
    encoded_segment,
    encoder_input,
    kept_segment,
    plan,
    regions,
)
from packager.package.frames import SegmentTimes, Window, boundary_segments, segment_times, window
from packager.service.encode import Encoder
from packager.store.base import Store
from packager.store.model import Clip, ClipRendition, SegmentRef

log = logging.getLogger(__name__)

# A player asks for the first segment right after the playlists: it waits for its re-encode
# (well under a second for a GOP of 1080p here) rather than get a 503 at once.
WAIT_FOR_ENCODE = 5.0


class NotReady(Overloaded):
    """A re-encoded segment is still being made (503 with Retry-After)."""

    code = "not_ready"


class FrameCuts:
    def __init__(self, store: Store, encoder: Encoder | None = None) -> None:
        self.store = store
        self.encoder = encoder or Encoder()
        self._windows: dict[tuple[str, str], Window | None] = {}
        self._pieces: dict[tuple[str, str], list[Piece]] = {}
        self._jobs: dict[tuple[str, str, int], asyncio.Task[tuple[bytes, bytes]]] = {}
        self._starts: set[asyncio.Task[None]] = set()

    # ---- what is shown ---------------------------------------------------------------------

    async def window(self, clip: Clip, cr: ClipRendition) -> Window | None:
        """The frames `cr` shows; None for a segment-aligned clip, or before any frame of it
        has arrived."""
        if not clip.frame_accurate or not cr.segments:
            return None
        key = (clip.id, cr.name)
        if key in self._windows:
            return self._windows[key]
        refs = cr.segments
        indexes = boundary_segments(
            [r.start for r in refs], [r.end for r in refs], clip.requested_start, clip.requested_end
        )
        times = {i: await self.times(refs[i]) for i in indexes}
        found = window([r.duration for r in refs], times, clip.requested_start, clip.requested_end)
        if clip.complete:
            self._windows[key] = found
        return found

    async def times(self, ref: SegmentRef) -> SegmentTimes:
        init = await self.store.init(ref.init_id)
        return segment_times(ref.start, init, await self.store.segment_tables(ref.key))

    async def key_segment(self, cr: ClipRendition, found: Window) -> int:
        """The segment holding the keyframe that the first shown frame decodes from: its own,
        unless a sync sample comes only later in it (a GOP begun in the segment before)."""
        k = found.head_segment
        while k >= 0:
            main = (await self.times(cr.segments[k])).main
            upto = main.composition.index(found.head) + 1 if k == found.head_segment else main.count
            if any(main.sync[:upto]):
                return k
            k -= 1
        return found.head_segment  # nothing before it decodes on its own: the best there is

    async def shown(self, clip: Clip) -> tuple[float, float]:
        """(wall-clock start of the first frame shown, seconds shown): a frame-accurate clip's
        from its frames, once they have arrived; a growing one's runs to its asked end."""
        found = await self.window(clip, clip.reference)
        if found is None:
            return clip.start, clip.duration
        if not clip.complete:
            return found.start, clip.requested_end - found.start
        return found.start, found.duration

    # ---- HLS -------------------------------------------------------------------------------

    async def pieces(self, clip: Clip, cr: ClipRendition) -> list[Piece]:
        """The rendition's media segments, in playlist order; none before its first frame."""
        key = (clip.id, cr.name)
        kept = self._pieces.get(key)
        if kept is not None:
            return kept
        found = await self.window(clip, cr)
        if found is None:
            return []
        first = await self.key_segment(cr, found)
        refs = cr.segments
        times = {
            i: await self.times(refs[i])
            for a, b in regions(refs, found, first)
            for i in range(a, b + 1)
        }
        made = plan(refs, times, found, first)
        if clip.complete:
            self._pieces[key] = made
        return made

    @staticmethod
    def inits(cr: ClipRendition, pieces: Sequence[Piece]) -> list[str]:
        """Each piece's init: the source's id, or `encoded-<piece>` for a re-encoded piece."""
        return [
            f"encoded-{n}" if p.kind is PieceKind.ENCODED else cr.segments[p.segment].init_id
            for n, p in enumerate(pieces)
        ]

    async def init(self, clip: Clip, cr: ClipRendition, index: int) -> bytes:
        """The playlist's `index`-th init segment (EXT-X-MAP URIs count them in order of use)."""
        pieces = await self.pieces(clip, cr)
        ids = list(dict.fromkeys(self.inits(cr, pieces)))
        if index >= len(ids):
            raise ClipNotFound(f"no init segment {index} in {cr.name}")
        name = ids[index]
        if not name.startswith("encoded-"):
            return (await self.store.init(name)).data
        init, _ = await self._encoded(clip, cr, pieces, int(name.removeprefix("encoded-")))
        return init

    async def segment(self, clip: Clip, cr: ClipRendition, index: int) -> bytes:
        pieces = await self.pieces(clip, cr)
        if index >= len(pieces):
            raise ClipNotFound(f"no segment {index} in {cr.name}")
        piece = pieces[index]
        ref = cr.segments[piece.segment]
        if piece.kind is PieceKind.SOURCE:
            return await self.store.segment_data(ref.key)
        if piece.kind is PieceKind.KEPT:
            parts = [await self._source(cr.segments[part.segment]) for part in piece.parts]
            return kept_segment(piece, parts, ref.key.seq + 1)
        _, segment = await self._encoded(clip, cr, pieces, index)
        return segment

    async def _source(self, ref: SegmentRef) -> Source:
        init = await self.store.init(ref.init_id)
        data = await self.store.segment_data(ref.key)
        tables = {t.track_id: t for t in (await self.store.segment_tables(ref.key)).tracks}
        audio = init.audio
        video = tables[init.main.track_id].samples()
        sound = tables[audio.track_id].samples() if audio and audio.track_id in tables else None
        return Source(data, init, video, sound)

    async def _encoded(
        self, clip: Clip, cr: ClipRendition, pieces: Sequence[Piece], index: int
    ) -> tuple[bytes, bytes]:
        names = _names(cr, index)
        init = await self.store.clip_media(clip.stream_id, clip.id, names[0])
        segment = await self.store.clip_media(clip.stream_id, clip.id, names[1])
        if init is not None and segment is not None:
            return init, segment
        job = self._job(clip, cr, pieces, index)
        try:
            return await asyncio.wait_for(asyncio.shield(job), WAIT_FOR_ENCODE)
        except TimeoutError:
            raise NotReady(f"segment {index} of {cr.name} is being re-encoded; retry") from None
        except Exception as exc:
            raise NotReady(f"re-encoding segment {index} of {cr.name} failed; retry") from exc

    def _job(
        self, clip: Clip, cr: ClipRendition, pieces: Sequence[Piece], index: int
    ) -> asyncio.Task[tuple[bytes, bytes]]:
        key = (clip.id, cr.name, index)
        job = self._jobs.get(key)
        if job is None:
            work = self._encode(clip, cr, pieces[index], index)
            job = asyncio.get_running_loop().create_task(work)
            self._jobs[key] = job
            job.add_done_callback(lambda done: self._done(key, done))
        return job

    def _done(self, key: tuple[str, str, int], job: asyncio.Task[tuple[bytes, bytes]]) -> None:
        """A finished job's bytes are in the store; a failed one is tried again when asked."""
        if self._jobs.get(key) is job:
            del self._jobs[key]
        if not job.cancelled() and job.exception() is not None:
            log.error("re-encoding %s failed: %s", key, job.exception())

    async def _encode(
        self, clip: Clip, cr: ClipRendition, piece: Piece, index: int
    ) -> tuple[bytes, bytes]:
        refs = [cr.segments[part.segment] for part in piece.parts]
        sources = [await self._source(ref) for ref in refs]
        first = refs[0]
        init = sources[0].init
        video_bytes = first.track_sizes[init.tracks.index(init.main)] if first.track_sizes else 0
        bitrate = round(video_bytes * 8 / first.duration) if first.duration > 0 else 0
        sps_ids, pps_ids = avc_parameter_set_ids(init.main.stsd)
        encoded = await self.encoder.encode(
            encoder_input(piece, sources),
            init.main,
            piece.frames,
            bitrate,
            max(sps_ids | pps_ids, default=-1) + 1,
        )
        made = encoded_segment(
            piece, sources, encoded.init, encoded.samples, encoded.data, first.key.seq + 1
        )
        names = _names(cr, index)
        await self.store.put_clip_media(clip.stream_id, clip.id, names[0], made[0])
        await self.store.put_clip_media(clip.stream_id, clip.id, names[1], made[1])
        return made

    # ---- hooks -----------------------------------------------------------------------------

    def start(self, clip: Clip) -> None:
        """Hook (a clip created or completed): start its re-encodes now, lowest rendition
        first, so its first segments are ready when players ask."""
        if not clip.frame_accurate:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the server (a script): made when first asked for
            return
        task = loop.create_task(self._start(clip))
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)
        task.add_done_callback(_log_failure)

    async def close(self) -> None:
        """At shutdown: stop every re-encode in flight (its ffmpeg is killed) and wait for
        them, so none outlives the event loop."""
        running = [*self._starts, *self._jobs.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _start(self, clip: Clip) -> None:
        """Every rendition's first re-encoded piece before any later one (a player needs the
        first segments first), lowest rendition first; the encoder runs them in that order."""
        queue: list[tuple[int, int, ClipRendition, list[Piece], int]] = []
        for rank, cr in enumerate(clip.renditions):
            pieces = await self.pieces(clip, cr)
            encoded = [i for i, p in enumerate(pieces) if p.kind is PieceKind.ENCODED]
            queue += [(order, rank, cr, pieces, i) for order, i in enumerate(encoded)]
        for _, _, cr, pieces, index in sorted(queue, key=lambda item: item[:2]):
            if await self.store.clip_media(clip.stream_id, clip.id, _names(cr, index)[1]) is None:
                self._job(clip, cr, pieces, index)

    def forget(self, clip: Clip) -> None:
        """Hook: an expired clip's windows, pieces and unfinished re-encodes go with it."""
        for cr in clip.renditions:
            self._windows.pop((clip.id, cr.name), None)
            self._pieces.pop((clip.id, cr.name), None)
        for key in [k for k in self._jobs if k[0] == clip.id]:
            self._jobs.pop(key).cancel()


def _names(cr: ClipRendition, index: int) -> tuple[str, str]:
    """Where a re-encoded piece's init and segment are kept with the clip."""
    return f"{cr.name}/{index}.init.mp4", f"{cr.name}/{index}.m4s"


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("starting a clip's re-encodes failed: %s", task.exception())
