"""Hostile pushes through `Ingest.receive`, what an encoder's HTTP PUT reaches.

Each example replays a few pushes (hostile or real init segments, media segments and playlists,
to known and new streams and renditions, with the clock moving between them) against a copy of
a store that already holds a live ladder. A push either succeeds and leaves the store
consistent, or raises a PackagerError (mapped to a 4xx) and leaves the store exactly as it was.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packager.clock import ManualClock
from packager.demo import DemoFeed, load_ladder
from packager.errors import PackagerError
from packager.media.fragment import parse_segment
from packager.package import hls
from packager.package.mp4 import build_layout
from packager.service.clips import ClipService
from packager.service.ingest import Ingest
from packager.store.memory import MemoryStore
from tests.conftest import LADDER_DIR, T0, feed_past
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import count_case, examples
from tests.fuzz.test_media_fuzz import TIME_LIMIT, check_segment
from tests.mp4_support import stored_segments

pytestmark = pytest.mark.fuzz

STREAMS = ["demo", "fresh", "a" * 64]
RENDITIONS = ["0", "1", "2", "new"]


T = TypeVar("T")
_LOOP = asyncio.new_event_loop()  # the memory store never yields: one loop runs every step


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return _LOOP.run_until_complete(coroutine)


@cache
def _template() -> tuple[MemoryStore, Ingest]:
    """A store holding 3 segments of the 3-rendition ladder, ending at T0."""
    clock = ManualClock(T0)
    store = MemoryStore(clock, 1 << 30)
    ingest = Ingest(store, 3600.0)
    run(feed_past(DemoFeed(ingest, load_ladder(LADDER_DIR), clock), clock, 3))
    return store, ingest


def fresh() -> tuple[MemoryStore, Ingest]:
    copied: tuple[MemoryStore, Ingest] = copy.deepcopy(_template())
    return copied


def snapshot(store: MemoryStore) -> Any:
    """Everything a push may change, by value and by identity (white-box: the memory store)."""
    return (
        run(store.stats()),
        dict(store._inits),
        {
            sid: (
                s.info,
                {
                    name: (
                        r.init_id,
                        r.init_changed,
                        r.next_seq,
                        r.last_end_dts,
                        r.last_digest,
                        dict(r.playlist),
                        [(id(g), g.ref) for g in r.segments],
                    )
                    for name, r in s.renditions.items()
                },
            )
            for sid, s in store._streams.items()
        },
    )


def check_store(store: MemoryStore) -> None:
    """The byte accounting matches the rings; every stored segment is consistent media."""
    rings = [r for s in store._streams.values() for r in s.renditions.values()]
    segments = [g for r in rings for g in r.segments]
    stats = run(store.stats())
    assert stats.dvr_bytes == sum(g.ref.cost for g in segments)
    assert stats.dvr_segments == len(segments)
    for ring in rings:
        seqs = [g.ref.key.seq for g in ring.segments]
        assert seqs == sorted(set(seqs))
        for g in ring.segments:
            assert g.ref.duration > 0 and math.isfinite(g.ref.start)
            init = store._inits[g.ref.init_id]
            media = parse_segment(g.data, init)  # what the store keeps parsed it once
            check_segment(media, g.data, init)
            assert media.track(init.main.track_id) is not None
            assert g.tables.track_ids == tuple(t.track_id for t in media.tracks)


@st.composite
def push(draw: st.DrawFn) -> tuple[str, str, str, bytes]:
    stream = draw(st.sampled_from(STREAMS))
    rendition = draw(st.sampled_from(RENDITIONS))
    kind = draw(st.sampled_from(["init", "segment", "segment", "segment", "playlist", "real"]))
    if kind == "init":
        return (
            stream,
            rendition,
            draw(st.sampled_from(["init_0.mp4", "init.mp4"])),
            draw(fz.hostile_init()),
        )
    if kind == "playlist":
        return stream, rendition, "index.m3u8", draw(fz.hostile_playlist())
    name = draw(st.sampled_from(["live3.m4s", "live2.m4s", "index0.m4s", "x.m4s", "seg.mp4"]))
    source = draw(fz.rendition_ids)
    if kind == "real":  # real bytes, maybe of another rendition or out of order
        if draw(st.booleans()):
            return stream, rendition, "init_0.mp4", fz.init_bytes(source)
        return stream, rendition, name, fz.segment_bytes(source, draw(fz.segment_indexes))
    return stream, rendition, name, draw(fz.hostile_segment(source))


@examples(5)
@given(
    pushes=st.lists(
        st.tuples(push(), st.sampled_from([0.0, 0.0, 0.5, 2.0, 3600.0])), min_size=1, max_size=4
    )
)
def test_a_push_is_taken_whole_or_leaves_the_store_as_it_was(
    pushes: list[tuple[tuple[str, str, str, bytes], float]],
) -> None:
    count_case("ingest: receive")
    store, ingest = fresh()
    clock = store.clock
    assert isinstance(clock, ManualClock)
    for (stream, rendition, name, body), wait in pushes:
        clock.advance(wait)
        before = snapshot(store)
        started = time.perf_counter()
        try:
            run(ingest.receive(stream, rendition, name, body))
        except PackagerError:
            assert snapshot(store) == before, f"a refused push of {name} changed the store"
        assert time.perf_counter() - started < TIME_LIMIT
        check_store(store)


CUT = st.tuples(st.just("cut"), st.sampled_from(STREAMS), st.floats(0, 20), st.floats(0.5, 20))


@examples(3)
@given(ops=st.lists(st.one_of(push(), push(), CUT), min_size=1, max_size=5))
def test_what_ingest_accepts_can_be_cut_and_packaged(ops: list[tuple[Any, ...]]) -> None:
    """Hostile but accepted media, pushed before or after clips are cut from it, must not break
    the playlists or the MP4 of any clip."""
    count_case("ingest: accepted media packaged")
    store, ingest = fresh()
    cutter = ClipService(store, 3600.0)
    clips = []
    for op in ops:
        try:
            if op[0] == "cut":
                _, stream_id, ago, seconds = op
                start = store.clock() - ago - seconds
                clips.append(run(cutter.create_clip(stream_id, seconds, start=start)))
            else:
                run(ingest.receive(*op))
        except PackagerError:
            pass
    for made in clips:
        clip = run(store.clip(made.stream_id, made.id))
        inits = {cr.first_init: run(store.init(cr.first_init)) for cr in clip.renditions}
        hls.master_playlist(clip, inits)
        for cr in clip.renditions:
            hls.media_playlist(clip, cr)
            if cr.segments:
                layout = build_layout(run(stored_segments(store, cr)), clip.start)
                assert layout.size == sum(len(p) for p in layout.pieces)
