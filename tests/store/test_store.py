"""The store's contract, through its public interface only: what any backend must do."""

from __future__ import annotations

import struct

import pytest

from packager.clock import ManualClock
from packager.demo import DemoFeed, RecordedRendition
from packager.errors import (
    BudgetExceeded,
    ClipNotFound,
    InvalidField,
    LimitReached,
    NotFound,
    NothingInDvr,
    RangeNotInDvr,
    StreamNotFound,
)
from packager.media.init import parse_init
from packager.store.base import Store
from packager.store.model import Clip, ClipState, InvalidTransition, SegmentKey, StreamInfo
from tests.conftest import Fed, MakeFed, MakeStore, feed_past


def _pinned(clip: Clip) -> int:
    return sum(s.cost for s in {s.key: s for cr in clip.renditions for s in cr.segments}.values())


async def _dvr_bytes(store: Store, stream: str = "demo") -> int:
    total = 0
    for r in await store.ladder(stream):
        total += sum(s.cost for s in await store.dvr_segments(stream, r.name))
    return total


async def test_clip_is_cut_on_segment_boundaries(fed: Fed) -> None:
    origin = fed.origin
    # 2 s segments from `origin`; [origin+5, origin+9) meets segments 2, 3 and 4.
    clip = await fed.clips.create_clip("demo", duration=4, start=origin + 5)
    assert [r.name for r in clip.renditions] == ["media_1_360", "media_2_720", "media_3_1080"]
    for cr in clip.renditions:
        assert [s.start - origin for s in cr.segments] == pytest.approx([4, 6, 8])
    assert clip.complete and clip.state is ClipState.COMPLETE
    assert clip.start == pytest.approx(origin + 4)
    assert clip.duration == pytest.approx(6)


async def test_clip_ending_on_a_boundary_takes_no_extra_segment(fed: Fed) -> None:
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin + 4)
    assert clip.duration == pytest.approx(4)
    assert len(clip.reference.segments) == 2


async def test_clip_shorter_than_asked_when_dvr_holds_less(fed: Fed) -> None:
    clip = await fed.clips.create_clip("demo", duration=75, start=fed.origin - 50)  # ends 5 s ago
    assert clip.start == pytest.approx(fed.origin)
    assert clip.duration == pytest.approx(26)
    assert clip.complete


async def test_dvr_rolls_over_but_clips_keep_their_segments(
    make_fed: MakeFed, clock: ManualClock
) -> None:
    fed = await make_fed(segments=5, dvr=20)  # 10 s
    store = fed.store
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin)
    held = [s for cr in clip.renditions for s in cr.segments]
    # 30 more seconds of live ingest: the first 10 s fall out of a 20 s DVR.
    for k in range(5, 20):
        clock.advance(2)
        await fed.push(k)
    dvr_keys = set()
    for r in await store.ladder("demo"):
        segments = await store.dvr_segments("demo", r.name)
        assert segments[0].start >= clock() - 20 - 2
        assert len(segments) <= 11
        dvr_keys |= {s.key for s in segments}
    assert not dvr_keys & {s.key for s in held}
    again = await store.clip("demo", clip.id)
    assert [s for cr in again.renditions for s in cr.segments] == held
    for ref in held:  # still readable: the clip holds them
        assert len(await store.segment_data(ref.key)) == ref.size
    stats = await store.stats()
    assert stats.clip_only_bytes == _pinned(clip)
    assert stats.dvr_bytes == await _dvr_bytes(store)


async def test_tables_of_many_segments_come_in_order_in_one_call_and_gone_ones_are_named(
    make_fed: MakeFed, clock: ManualClock
) -> None:
    fed = await make_fed(segments=5, dvr=20)
    store = fed.store
    clip = await fed.clips.create_clip("demo", duration=2, start=fed.origin + 4)
    held = [s.key for cr in clip.renditions for s in cr.segments]
    for k in range(5, 20):
        clock.advance(2)
        await fed.push(k)
    live = [s.key for s in await store.dvr_segments("demo", "1")]
    keys = held + live[::-1]  # any order, across renditions, held and in the DVR alike
    one_by_one = [await store.segment_tables(key) for key in keys]
    assert await store.segments_tables(keys) == one_by_one
    assert [t.nbytes for t in await store.segments_tables(keys)] == [t.nbytes for t in one_by_one]
    assert await store.segments_tables([]) == []
    never = SegmentKey("demo", "0", 10**6)
    with pytest.raises(NotFound, match="segment 0/1000000 of 'demo' is gone"):
        await store.segments_tables([*live, never])


async def test_expired_clip_is_gone_and_its_memory_freed(fed: Fed, clock: ManualClock) -> None:
    store = fed.store
    clip = await fed.clips.create_clip(
        "demo", duration=6, start=fed.origin, expiration=clock() + 120
    )
    assert (await store.stats()).pinned_bytes == _pinned(clip)
    clock.advance(119)
    assert (await store.clip("demo", clip.id)).id == clip.id
    clock.advance(1)
    with pytest.raises(ClipNotFound):
        await store.clip("demo", clip.id)  # gone at the second, before any timer ran
    fired = await fed.services.timers.tick()
    assert [(t.clip.id, t.clip.state) for t in fired] == [(clip.id, ClipState.EXPIRED)]
    assert (await store.stats()).pinned_bytes == 0
    assert await store.clips("demo") == []


async def test_many_expired_clips_leave_exact_accounting(fed: Fed, clock: ManualClock) -> None:
    store = fed.store
    dvr_before = (await store.stats()).dvr_bytes
    for i in range(50):
        await fed.clips.create_clip(
            "demo", duration=2 + i % 10, start=fed.origin + i % 20, expiration=clock() + 60 + i
        )
    clock.advance(3600)
    assert len(await fed.services.timers.tick()) == 50
    stats = await store.stats()
    assert (stats.pinned_bytes, stats.clip_only_bytes, stats.clips) == (0, 0, 0)
    assert stats.dvr_bytes <= dvr_before


async def test_budget_evicts_oldest_dvr_segments_first(
    make_fed: MakeFed, ladder_bytes: int
) -> None:
    fed = await make_fed(segments=12, budget=ladder_bytes)  # about 6 segments per rendition
    stats = await fed.store.stats()
    assert stats.held_bytes <= fed.store.budget
    assert stats.evicted_segments > 0
    newest = [
        (await fed.store.dvr_segments("demo", r.name))[-1].key.seq
        for r in await fed.store.ladder("demo")
    ]
    assert newest == [11, 11, 11]


async def test_clip_refused_with_507_when_pins_would_pass_budget(
    make_fed: MakeFed, ladder_bytes: int
) -> None:
    fed = await make_fed(segments=6, budget=ladder_bytes)
    await fed.clips.create_clip("demo", duration=6, start=fed.origin)
    # Half is pinned; the rest of the DVR plus 8 s still to come would pass the budget.
    with pytest.raises(BudgetExceeded, match="memory budget"):
        await fed.clips.create_clip("demo", duration=20, start=fed.origin)
    assert (await fed.store.stats()).held_bytes <= fed.store.budget


def _padded_init(init: bytes, pad: int) -> bytes:
    """The same init with a `free` box of `pad` bytes after it: bigger, and its own bytes."""
    return init + struct.pack(">I4s", 8 + pad, b"free") + bytes(pad)


async def test_inits_count_against_the_budget_and_roll_the_dvr(
    make_fed: MakeFed, ladder: list[RecordedRendition], ladder_bytes: int
) -> None:
    """New renditions' inits make room as segments do (the DVR gives up its oldest)."""
    fed = await make_fed(segments=12, budget=ladder_bytes)
    before = await fed.store.stats()
    pad = ladder_bytes // 10
    for k in range(3):
        init = _padded_init(ladder[0].init, pad + k)
        await fed.services.ingest.receive("demo", f"extra{k}", "init.mp4", init)
    stats = await fed.store.stats()
    assert stats.init_bytes >= before.init_bytes + 3 * pad
    assert stats.held_bytes <= fed.store.budget
    assert stats.evicted_segments > before.evicted_segments


async def test_an_init_that_cannot_fit_beside_pinned_clips_is_refused(
    make_fed: MakeFed, ladder: list[RecordedRendition], ladder_bytes: int
) -> None:
    fed = await make_fed(segments=6, budget=ladder_bytes)
    await fed.clips.create_clip("demo", duration=12, start=fed.origin)  # pins the whole DVR
    before = await fed.store.stats()
    with pytest.raises(BudgetExceeded, match="memory budget"):
        init = _padded_init(ladder[0].init, min(ladder_bytes // 2, 900_000))
        await fed.services.ingest.receive("demo", "extra", "init.mp4", init)
    after = await fed.store.stats()
    assert after.held_bytes == before.held_bytes <= fed.store.budget
    assert after.init_bytes == before.init_bytes


async def test_growing_clip_takes_new_segments_then_completes(fed: Fed, clock: ManualClock) -> None:
    clip = await fed.clips.create_clip("demo", duration=6)  # start omitted: from now on
    assert clip.state is ClipState.GROWING and clip.event
    assert all(cr.segments == () for cr in clip.renditions)
    for k in range(15, 18):
        clock.advance(2)
        await fed.push(k)
    clip = await fed.store.clip("demo", clip.id)
    assert clip.complete
    assert [len(cr.segments) for cr in clip.renditions] == [3, 3, 3]
    assert clip.duration == pytest.approx(6)


async def test_growing_clip_completes_short_when_ingest_stops(fed: Fed, clock: ManualClock) -> None:
    clip = await fed.clips.create_clip("demo", duration=10, start=clock() - 4)
    assert not clip.complete
    clock.advance(2)
    await fed.push(15)
    clock.advance(30)  # past end + grace
    await fed.services.timers.tick()
    clip = await fed.store.clip("demo", clip.id)
    assert clip.complete and clip.note
    assert clip.duration == pytest.approx(6)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration": 0}, "duration"),
        ({"duration": -1}, "duration"),
        ({"duration": 3601}, "duration"),
        ({"duration": 5, "start": 1e12}, "start"),
        ({"duration": 5, "expiration": 0}, "expiration"),
        ({"duration": 5, "expiration": 1_800_000_030}, "expiration"),
        ({"duration": 5, "expiration": 1_800_000_000 + 5 * 3600}, "expiration"),
    ],
)
async def test_bad_clip_fields_are_named(fed: Fed, kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        await fed.clips.create_clip("demo", **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


async def test_expiration_must_follow_clip_end(fed: Fed, clock: ManualClock) -> None:
    with pytest.raises(InvalidField, match="after the clip's end"):
        await fed.clips.create_clip(
            "demo", duration=100, start=clock() - 10, expiration=clock() + 80
        )


async def test_default_expiration_is_start_plus_duration_plus_an_hour(
    fed: Fed, clock: ManualClock
) -> None:
    clip = await fed.clips.create_clip("demo", duration=4, start=clock() - 4)
    assert clip.expiration == clock() + 3600


async def test_range_rolled_out_of_dvr_is_refused(fed: Fed) -> None:
    with pytest.raises(RangeNotInDvr):
        await fed.clips.create_clip("demo", duration=10, start=fed.origin - 100)


async def test_stream_without_media_cannot_be_clipped(make_fed: MakeFed) -> None:
    fed = await make_fed(segments=0)
    await fed.clips.create_stream("empty", "Empty", 600)
    with pytest.raises(NothingInDvr):
        await fed.clips.create_clip("empty", duration=5)
    with pytest.raises(StreamNotFound):
        await fed.clips.create_clip("nope", duration=5)


async def test_clip_count_limits_answer_limit_reached(
    make_fed: MakeFed, clock: ManualClock
) -> None:
    fed = await make_fed(segments=3, max_clips_per_stream=2, max_clips=3)
    origin = fed.origin
    await fed.clips.create_clip("demo", duration=2, start=origin)
    await fed.clips.create_clip("demo", duration=2, start=origin)
    with pytest.raises(LimitReached, match="per stream"):
        await fed.clips.create_clip("demo", duration=2, start=origin)
    # A second stream may still cut, until the clips of all streams reach max_clips.
    other = DemoFeed(fed.services.ingest, fed.feed.ladder, clock, stream_id="other")
    await feed_past(other, clock, 3)
    await fed.clips.create_clip("other", duration=2, start=origin)
    assert (await fed.store.stats()).clips == 3
    with pytest.raises(LimitReached, match="at once"):
        await fed.clips.create_clip("other", duration=2, start=origin)


async def test_a_clip_moves_only_along_its_life(fed: Fed, clock: ManualClock) -> None:
    """The state table: complete -> saving -> saved, never back; an expired clip is gone."""
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin)
    with pytest.raises(InvalidTransition):
        await fed.store.update_clip(clip.id, ClipState.SAVED)  # not without saving first
    saving = await fed.store.update_clip(clip.id, ClipState.SAVING)
    saved = await fed.store.update_clip(saving.id, ClipState.SAVED, video_id=7)
    assert (saved.state, saved.video_id) == (ClipState.SAVED, 7)
    with pytest.raises(InvalidTransition):
        await fed.store.update_clip(clip.id, ClipState.GROWING)
    assert (await fed.store.clip("demo", clip.id)).video_id == 7


async def test_deleting_a_stream_frees_its_dvr_but_not_what_clips_hold(fed: Fed) -> None:
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin)
    await fed.store.delete_stream("demo")
    with pytest.raises(StreamNotFound):
        await fed.store.stream("demo")
    stats = await fed.store.stats()
    assert stats.dvr_bytes == 0 and stats.dvr_segments == 0
    assert stats.held_bytes == _pinned(clip) + stats.init_bytes  # the clip's and their inits
    assert stats.init_bytes > 0
    for cr in clip.renditions:  # the clip still plays
        for ref in cr.segments:
            assert len(await fed.store.segment_data(ref.key)) == ref.size


async def test_a_revised_init_takes_the_pushed_ones_place_and_a_copy_of_that_changes_nothing(
    make_store: MakeStore, ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    """The ingest serves a hev1 init as hvc1 (its revision); an encoder re-sending what it
    pushed must not undo that, nor start a discontinuity."""
    store = make_store()
    await store.create_stream(StreamInfo("s", "s", 3600.0, clock()))
    pushed, revised, other = (parse_init(r.init) for r in ladder)
    await store.put_init("s", "r", pushed, "pushed")
    counted = (await store.stats()).init_bytes

    assert not await store.revise_init(
        "s", "r", "not-current", revised, "revised", source_id="pushed", note=None
    )
    assert await store.revise_init(
        "s", "r", "pushed", revised, "revised", source_id="pushed", note=None
    )
    state = await store.rendition("s", "r")
    assert state is not None
    assert (state.init_id, state.init_source, state.init_note) == ("revised", "pushed", None)
    assert (await store.stats()).init_bytes - counted == len(revised.data) - len(pushed.data)
    assert await store.init("revised") == revised

    assert not await store.put_init("s", "r", pushed, "pushed")  # re-sent: the same init
    state = await store.rendition("s", "r")
    assert state is not None and (state.init_id, state.init_changed) == ("revised", False)

    assert await store.revise_init(
        "s", "r", "revised", revised, "revised", source_id="pushed", note="why", changed=True
    )
    state = await store.rendition("s", "r")
    assert state is not None
    assert (state.init_id, state.init_note, state.init_changed) == ("revised", "why", True)

    assert await store.put_init("s", "r", other, "other")  # a new init forgets both
    state = await store.rendition("s", "r")
    assert state is not None
    assert (state.init_id, state.init_source, state.init_note) == ("other", None, None)


async def test_what_a_clip_makes_is_kept_with_it_counted_and_freed_at_expiry(
    make_fed: MakeFed, clock: ManualClock
) -> None:
    fed = await make_fed(segments=5, budget=1 << 30)
    store = fed.store
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin + 1)
    before = await store.stats()
    await store.put_clip_media("demo", clip.id, "media_1_360/0.m4s", b"x" * 1000)
    await store.put_clip_media("demo", clip.id, "media_1_360/0.init.mp4", b"y" * 200)
    await store.put_clip_media("demo", clip.id, "media_1_360/0.m4s", b"z" * 900)  # written again
    assert await store.clip_media("demo", clip.id, "media_1_360/0.m4s") == b"z" * 900
    assert await store.clip_media("demo", clip.id, "media_1_360/9.m4s") is None
    held = await store.stats()
    assert held.clip_only_bytes - before.clip_only_bytes == 1100
    assert held.pinned_bytes - before.pinned_bytes == 1100
    assert held.held_bytes - before.held_bytes == 1100
    await store.put_clip_media("demo", "no-such-clip", "x", b"x")  # a clip already gone: dropped
    clock.advance(clip.expiration - clock() + 1)
    await store.fire_due()
    after = await store.stats()
    assert (after.clip_only_bytes, after.pinned_bytes) == (before.clip_only_bytes, 0)
    assert await store.clip_media("demo", clip.id, "media_1_360/0.m4s") is None


async def test_what_a_clip_makes_must_fit_the_budget(make_fed: MakeFed) -> None:
    fed = await make_fed(segments=3, budget=40 << 20)
    clip = await fed.clips.create_clip("demo", duration=4, start=fed.origin + 1)
    room = fed.store.budget - (await fed.store.stats()).held_bytes
    with pytest.raises(BudgetExceeded):
        await fed.store.put_clip_media("demo", clip.id, "big", b"x" * (room + (32 << 20)))
    assert await fed.store.clip_media("demo", clip.id, "big") is None
