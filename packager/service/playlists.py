"""A clip's playlists as bytes with their ETag: rendered once for a complete clip (it can no
longer change), so a CDN's misses and revalidations cost a lookup, not a rendering; every time
for a growing one."""

from __future__ import annotations

import hashlib

from packager.errors import ClipNotFound
from packager.media.model import InitSegment
from packager.package import hls
from packager.service.frames import FrameCuts
from packager.store.base import Store
from packager.store.model import Clip, ClipRendition

RENDERED_PER_CLIP = 16  # bounds the variety of signed queries a private clip may cache


class Playlists:
    def __init__(self, store: Store, frames: FrameCuts | None = None) -> None:
        self.store = store
        self.frames = frames or FrameCuts(store)
        self._rendered: dict[str, dict[tuple[str, str], tuple[bytes, str]]] = {}

    async def render(self, clip: Clip, rendition: str | None, query: str) -> tuple[bytes, str]:
        """`rendition` None: the master playlist. `query` (a signed link's) rides on each URI."""
        key = (rendition or "master", query)
        kept = self._rendered.get(clip.id)
        if kept is not None and key in kept:
            return kept[key]
        if rendition is None:
            inits = {cr.first_init: await self._init(cr) for cr in clip.renditions}
            text = hls.master_playlist(clip, inits, query)
        elif clip.frame_accurate:
            cr = rendition_of(clip, rendition)
            pieces = await self.frames.pieces(clip, cr)
            if not clip.complete:
                self.frames.start(clip)  # a growing clip's head may have just arrived
            text = hls.media_playlist(clip, cr, query, pieces)
        else:
            text = hls.media_playlist(clip, rendition_of(clip, rendition), query)
        body = text.encode()
        rendered = body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        if clip.complete:
            kept = self._rendered.setdefault(clip.id, {})
            if len(kept) < RENDERED_PER_CLIP:
                kept[key] = rendered
        return rendered

    async def _init(self, cr: ClipRendition) -> InitSegment:
        return await self.store.init(cr.first_init)

    def forget(self, clip: Clip) -> None:
        """Hook: an expired clip's playlists go with it."""
        self._rendered.pop(clip.id, None)


def rendition_of(clip: Clip, name: str | None) -> ClipRendition:
    """The named rendition, or the highest for `master`."""
    if name is None:
        return clip.reference
    cr = clip.rendition(name)
    if cr is None:
        raise ClipNotFound(f"clip {clip.id} has no rendition {name!r}")
    return cr
