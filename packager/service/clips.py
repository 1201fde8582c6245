"""Cutting instant clips out of a stream's DVR: the contract's rules, over any store.

The cut is computed here from what the store's DVR index says, then handed to the store as a
finished manifest that it pins atomically; a segment that left the DVR in between (another
process rolled it) makes the store refuse, and the cut is made again.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from packager.errors import (
    InvalidField,
    NothingInDvr,
    RangeNotInDvr,
)
from packager.service.encode import reencodable
from packager.service.ingest import key_hash
from packager.store.base import END_EPSILON, SegmentGone, Store
from packager.store.model import (
    Clip,
    ClipRendition,
    ClipState,
    RenditionInfo,
    SegmentRef,
    StreamInfo,
)

STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MIN_EXPIRATION = 60.0  # contract: expiration within [now + 60 s, now + 4 h]
MAX_EXPIRATION = 4 * 3600.0
DEFAULT_LIFETIME = 3600.0  # contract: omitted expiration = start + duration + 3600 s
FUTURE_TOLERANCE = 2.0  # seconds of clock skew allowed on a `start` "in the future"
SPAN_EPSILON = 0.01  # seconds: renditions cut on the same instant, to PDT precision
CUT_ATTEMPTS = 3  # a cut races the DVR rolling on in another process at most this often


@dataclass
class ClipService:
    store: Store
    default_dvr_duration: float
    # Called with each clip complete when cut (MP4 prebuild, VOD save).
    on_complete: list[Callable[[Clip], None]] = field(default_factory=list)
    # Awaited before a complete clip is handed back (the MP4 prebuild, so that the first GET,
    # which usually follows at once, finds its moov built).
    settle: Callable[[Clip], Awaitable[None]] | None = None
    # Called with every new clip (a frame-accurate one's re-encodes start at once).
    on_create: list[Callable[[Clip], None]] = field(default_factory=list)

    # ---- streams -------------------------------------------------------------------------

    async def create_stream(
        self,
        stream_id: str | None,
        name: str,
        dvr_duration: float | None,
        public_live: bool = False,
    ) -> tuple[StreamInfo, str]:
        """A new stream and its push key: handed out once, only its hash is kept."""
        if stream_id is None:
            stream_id = secrets.token_hex(8)
        elif not STREAM_ID.fullmatch(stream_id):
            raise InvalidField("id", "1-64 characters of A-Z a-z 0-9 _ -, starting alphanumeric")
        if dvr_duration is None:
            dvr_duration = self.default_dvr_duration
        limit = self.store.limits.max_dvr_duration
        if not 0 < dvr_duration <= limit:
            raise InvalidField("dvr_duration", f"must be > 0 and <= {limit:g} seconds")
        push_key = secrets.token_urlsafe(24)
        info = StreamInfo(
            stream_id,
            name or stream_id,
            dvr_duration,
            self.store.clock(),
            push_key_hash=key_hash(push_key),
            public_live=public_live,
        )
        return await self.store.create_stream(info), push_key

    # ---- clips ---------------------------------------------------------------------------

    async def create_clip(
        self,
        stream_id: str,
        duration: float,
        start: float | None = None,
        expiration: float | None = None,
        vod_required: bool = False,
        name: str | None = None,
        private: bool = False,
        frame_accurate: bool | None = False,
    ) -> Clip:
        """`frame_accurate` None: if the stream's video can be re-encoded for HLS (Livepeer's
        default); True where it cannot is a 400 naming the field."""
        frame_accurate = await self._frame_accurate(stream_id, frame_accurate)
        for attempt in range(CUT_ATTEMPTS):
            try:
                clip = await self._cut(
                    stream_id, duration, start, expiration, vod_required, name, private
                )
                clip = await self.store.add_clip(
                    dataclasses.replace(clip, frame_accurate=frame_accurate)
                )
                break
            except SegmentGone:
                if attempt == CUT_ATTEMPTS - 1:
                    raise
        for hook in self.on_create:
            hook(clip)
        if clip.complete:
            for hook in self.on_complete:
                hook(clip)
            if self.settle is not None:
                await self.settle(clip)
        return clip

    async def _frame_accurate(self, stream_id: str, asked: bool | None) -> bool:
        if asked is False:
            return False
        ladder = await self.store.ladder(stream_id)
        unfit = [r.codecs for r in ladder if not reencodable(r.codecs)]
        if not unfit:
            return True
        if asked is None:
            return False
        raise InvalidField(
            "frame_accurate",
            f"needs H.264 video (its partial GOPs are re-encoded for HLS); this stream's is "
            f"{unfit[0]}",
        )

    async def _cut(
        self,
        stream_id: str,
        duration: float,
        start: float | None,
        expiration: float | None,
        vod_required: bool,
        name: str | None,
        private: bool,
    ) -> Clip:
        """The clip's manifest, segment-aligned; not yet in the store."""
        store = self.store
        now = store.clock()
        stream = await store.stream(stream_id)
        await store.sweep()
        if not 0 < duration <= stream.dvr_duration:
            raise InvalidField(
                "duration",
                f"must be > 0 and <= the stream's dvr_duration ({stream.dvr_duration:g} s)",
            )
        if start is None:
            start = now
        elif start > now + FUTURE_TOLERANCE:
            raise InvalidField("start", "must not lie in the future")
        end = start + duration
        expiration = default_expiration(now, end, expiration)
        ladder = await store.ladder(stream_id)
        if not ladder:
            raise NothingInDvr(f"stream {stream_id!r} has no media in its DVR yet")
        cuts = [await store.dvr_segments(stream_id, r.name, start, end) for r in ladder]
        growing = any(r.end < end - END_EPSILON for r in ladder)
        if not growing and not any(cuts):
            dvr_start = min(r.start for r in ladder)
            dvr_end = max(r.end for r in ladder)
            raise RangeNotInDvr(
                f"[{start:.3f}, {end:.3f}) is not in the DVR, which holds "
                f"[{dvr_start:.3f}, {dvr_end:.3f})"
            )
        cuts = await self._align(stream_id, ladder, cuts)
        kept = [(r, cut) for r, cut in zip(ladder, cuts, strict=True) if cut or growing]
        starts = [cut[0].start for _, cut in kept if cut]
        spread = max(starts) - min(starts) if starts else 0.0
        renditions = tuple(
            ClipRendition(
                number=number,
                height=rendition.height,
                source=rendition.name,
                target_duration=rendition.target_duration,
                init_id=rendition.init_id,
                bandwidth=rendition.peak_bitrate,
                average_bandwidth=math.ceil(rendition.bitrate),
                source_frame_rate=rendition.frame_rate,
                segments=tuple(cut),
            )
            for number, (rendition, cut) in enumerate(kept, start=1)
        )
        clip = Clip(
            id=secrets.token_hex(16),  # 128 random bits: links are unguessable
            stream_id=stream_id,
            created_at=now,
            requested_start=start,
            requested_end=end,
            expiration=expiration,
            vod_required=vod_required,
            renditions=renditions,
            state=ClipState.GROWING if growing else ClipState.COMPLETE,
            name=name,
            private=private,
            event=growing,
            completed_at=None if growing else now,
            spread=round(spread, 3),
        )
        return clip

    async def _align(
        self, stream_id: str, ladder: list[RenditionInfo], cuts: list[list[SegmentRef]]
    ) -> list[list[SegmentRef]]:
        """Every rendition's cut starts where it decodes (a segment that does not start with a
        keyframe, or an open GOP's CRA with leading pictures, takes the segment before it too)
        and covers the span of all of them: renditions whose GOPs do not line up (50 vs 60
        frames) were each cut on their own boundaries, up to a segment apart."""
        if not any(cuts):
            return cuts
        dvrs: dict[str, list[SegmentRef]] = {}
        for _ in range(3):  # each widening may call for another; two passes settle real ladders
            cuts = [
                await self._decodable(stream_id, r.name, cut, dvrs)
                for r, cut in zip(ladder, cuts, strict=True)
            ]
            span_start = min(c[0].start for c in cuts if c)
            span_end = max(c[-1].end for c in cuts if c)
            widened = []
            for r, cut in zip(ladder, cuts, strict=True):
                covered = cut
                if cut and (
                    cut[0].start > span_start + SPAN_EPSILON
                    or cut[-1].end < span_end - SPAN_EPSILON
                ):
                    dvr = await self._dvr(stream_id, r.name, dvrs)
                    covered = [
                        s
                        for s in dvr
                        if s.end > span_start + SPAN_EPSILON and s.start < span_end - SPAN_EPSILON
                    ] or cut
                widened.append(covered)
            if widened == cuts:
                break
            cuts = widened
        return cuts

    async def _decodable(
        self,
        stream_id: str,
        rendition: str,
        cut: list[SegmentRef],
        dvrs: dict[str, list[SegmentRef]],
    ) -> list[SegmentRef]:
        if not cut or cut[0].keyframe:
            return cut
        dvr = await self._dvr(stream_id, rendition, dvrs)
        keys = [s.key for s in dvr]
        if cut[0].key not in keys:
            return cut
        i = keys.index(cut[0].key)
        k = i
        while k > 0 and not dvr[k].keyframe and not dvr[k].discontinuity:
            k -= 1
        if not dvr[k].keyframe:
            return cut  # nothing before it decodes on its own: the best there is
        return dvr[k:i] + cut

    async def _dvr(
        self, stream_id: str, rendition: str, dvrs: dict[str, list[SegmentRef]]
    ) -> list[SegmentRef]:
        if rendition not in dvrs:
            dvrs[rendition] = await self.store.dvr_segments(stream_id, rendition)
        return dvrs[rendition]

    async def clip(self, stream_id: str, clip_id: str) -> Clip:
        return await self.store.clip(stream_id, clip_id)

    async def clips(self, stream_id: str) -> list[Clip]:
        await self.store.stream(stream_id)
        return await self.store.clips(stream_id)


def default_expiration(now: float, end: float, expiration: float | None) -> float:
    """The contract's rule: omitted, Gcore's `start + duration + 3600` as a whole second (the
    end rounded up on milliseconds, so float noise cannot add a second), raised only to the
    minimum life (a clip cut from long ago lives a minute) and capped at the maximum; given,
    within [now + 60 s, now + 4 h] and after the clip's end."""
    latest = now + MAX_EXPIRATION
    if expiration is None:
        default = math.ceil(round(end, 3)) + DEFAULT_LIFETIME
        return min(max(default, math.ceil(now + MIN_EXPIRATION)), math.floor(latest))
    if not now + MIN_EXPIRATION <= expiration <= latest:
        raise InvalidField("expiration", "must lie within [now + 60 s, now + 4 h]")
    if expiration <= end:
        raise InvalidField("expiration", "must lie after the clip's end (start + duration)")
    return expiration
