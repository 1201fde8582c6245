"""Frame-accurate clips: which frames each rendition shows, computed from the clip's manifest and
its boundary segments' tables (packager.package.frames), the same in every process.

A complete clip's windows never change and are kept until it expires; a growing one's are
computed again as its segments arrive (its tail is decided when its end does).
"""

from __future__ import annotations

from packager.package.frames import SegmentTimes, Window, boundary_segments, segment_times, window
from packager.store.base import Store
from packager.store.model import Clip, ClipRendition, SegmentRef


class FrameCuts:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._windows: dict[tuple[str, str], Window | None] = {}

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
            times = await self.times(cr.segments[k])
            main = times.main
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

    def forget(self, clip: Clip) -> None:
        """Hook: an expired clip's windows go with it."""
        for cr in clip.renditions:
            self._windows.pop((clip.id, cr.name), None)
