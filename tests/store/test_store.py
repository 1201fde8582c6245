from __future__ import annotations

from collections.abc import Callable

import pytest

from packager.clock import ManualClock
from packager.demo import DemoFeed, RecordedRendition
from packager.errors import (
    BudgetExceeded,
    ClipNotFound,
    InvalidField,
    NothingInDvr,
    RangeNotInDvr,
    StreamNotFound,
)
from packager.ingest import Ingest
from packager.store.store import Store
from tests.conftest import feed_past

Fed = tuple[Store, DemoFeed, float]


def test_clip_is_cut_on_segment_boundaries(fed_store: Fed, clock: ManualClock) -> None:
    store, _, origin = fed_store
    # 2 s segments from `origin`; [origin+5, origin+9) meets segments 2, 3 and 4.
    clip = store.create_clip("demo", duration=4, start=origin + 5)
    assert [r.name for r in clip.renditions] == ["media_1_360", "media_2_720", "media_3_1080"]
    for cr in clip.renditions:
        assert [s.start - origin for s in cr.segments] == pytest.approx([4, 6, 8])
    assert clip.complete
    assert clip.start == pytest.approx(origin + 4)
    assert clip.duration == pytest.approx(6)


def test_clip_ending_on_a_boundary_takes_no_extra_segment(fed_store: Fed) -> None:
    store, _, origin = fed_store
    clip = store.create_clip("demo", duration=4, start=origin + 4)
    assert clip.duration == pytest.approx(4)
    assert len(clip.reference.segments) == 2


def test_clip_shorter_than_asked_when_dvr_holds_less(fed_store: Fed, clock: ManualClock) -> None:
    store, _, origin = fed_store
    clip = store.create_clip("demo", duration=75, start=origin - 50)  # ends 5 s ago
    assert clip.start == pytest.approx(origin)
    assert clip.duration == pytest.approx(26)
    assert clip.complete


def test_dvr_rolls_over_but_clips_keep_their_segments(
    make_store: Callable[..., Store], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    store = make_store(dvr=20)
    feed = DemoFeed(Ingest(store), ladder, clock)
    origin = feed_past(feed, clock, 5)  # 10 s
    clip = store.create_clip("demo", duration=4, start=origin)
    held = [s for s in clip.segments()]
    # 30 more seconds of live ingest: the first 10 s fall out of a 20 s DVR.
    for k in range(5, 20):
        clock.advance(2)
        feed.push(k, feed.segment_start(k, origin))
    stream = store.stream("demo")
    for rendition in stream.renditions.values():
        assert rendition.segments[0].start >= clock() - 20 - 2
        assert len(rendition.segments) <= 11
    assert all(not s.in_dvr for s in held)
    assert store.clip("demo", clip.id).segments() == held
    stats = store.stats()
    assert stats.clip_only_bytes == sum(s.size for s in held)
    assert stats.dvr_bytes == sum(s.size for s in stream.segments())


def test_expired_clip_is_gone_and_its_memory_freed(fed_store: Fed, clock: ManualClock) -> None:
    store, _, origin = fed_store
    clip = store.create_clip("demo", duration=6, start=origin, expiration=clock() + 120)
    assert store.stats().pinned_bytes == sum(s.size for s in clip.segments())
    clock.advance(119)
    assert store.clip("demo", clip.id) is clip
    clock.advance(1)
    with pytest.raises(ClipNotFound):
        store.clip("demo", clip.id)  # gone at the second, before any timer ran
    assert store.run_due() == [clip]
    assert store.stats().pinned_bytes == 0
    assert store.list_clips("demo") == []


def test_many_expired_clips_leave_exact_accounting(fed_store: Fed, clock: ManualClock) -> None:
    store, _, origin = fed_store
    dvr_before = store.stats().dvr_bytes
    for i in range(50):
        store.create_clip(
            "demo", duration=2 + i % 10, start=origin + i % 20, expiration=clock() + 60 + i
        )
    clock.advance(3600)
    store.sweep_all()
    assert len(store.run_due()) == 50
    stats = store.stats()
    assert (stats.pinned_bytes, stats.clip_only_bytes, stats.clips) == (0, 0, 0)
    assert stats.dvr_bytes <= dvr_before


def test_budget_evicts_oldest_dvr_segments_first(
    make_store: Callable[..., Store], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    total_per_loop = sum(len(s) for r in ladder for s in r.segments)
    store = make_store(budget=total_per_loop)  # room for about 6 segments per rendition
    feed = DemoFeed(Ingest(store), ladder, clock)
    feed_past(feed, clock, 12)
    stats = store.stats()
    assert stats.held_bytes <= store.budget
    assert stats.evicted_segments > 0
    newest = [r.segments[-1].seq for r in store.stream("demo").renditions.values()]
    assert newest == [11, 11, 11]


def test_clip_refused_with_507_when_pins_would_pass_budget(
    make_store: Callable[..., Store], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    total_per_loop = sum(len(s) for r in ladder for s in r.segments)
    store = make_store(budget=total_per_loop)
    feed = DemoFeed(Ingest(store), ladder, clock)
    origin = feed_past(feed, clock, 6)
    store.create_clip("demo", duration=6, start=origin)
    # Half is pinned; the rest of the DVR plus 8 s still to come would pass the budget.
    with pytest.raises(BudgetExceeded, match="memory budget"):
        store.create_clip("demo", duration=20, start=origin)
    assert store.stats().held_bytes <= store.budget


def test_growing_clip_takes_new_segments_then_completes(fed_store: Fed, clock: ManualClock) -> None:
    store, feed, origin = fed_store
    clip = store.create_clip("demo", duration=6)  # start omitted: from now on
    assert not clip.complete
    assert all(cr.segments == [] for cr in clip.renditions)
    for k in range(15, 18):
        clock.advance(2)
        feed.push(k, feed.segment_start(k, origin))
    assert clip.complete
    assert [len(cr.segments) for cr in clip.renditions] == [3, 3, 3]
    assert clip.duration == pytest.approx(6)


def test_growing_clip_completes_short_when_ingest_stops(fed_store: Fed, clock: ManualClock) -> None:
    store, feed, origin = fed_store
    clip = store.create_clip("demo", duration=10, start=clock() - 4)
    assert not clip.complete
    clock.advance(2)
    feed.push(15, feed.segment_start(15, origin))
    clock.advance(30)  # past end + grace
    store.run_due()
    assert clip.complete and clip.completion_note
    assert clip.duration == pytest.approx(6)


@pytest.mark.parametrize(
    "kwargs, field",
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
def test_bad_clip_fields_are_named(fed_store: Fed, kwargs: dict[str, float], field: str) -> None:
    store, _, _ = fed_store
    with pytest.raises(InvalidField) as err:
        store.create_clip("demo", **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_expiration_must_follow_clip_end(fed_store: Fed, clock: ManualClock) -> None:
    store, _, _ = fed_store
    with pytest.raises(InvalidField, match="after the clip's end"):
        store.create_clip("demo", duration=100, start=clock() - 10, expiration=clock() + 80)


def test_default_expiration_is_end_plus_an_hour(fed_store: Fed, clock: ManualClock) -> None:
    store, _, _ = fed_store
    clip = store.create_clip("demo", duration=4, start=clock() - 4)
    assert clip.expiration == pytest.approx(clock() + 3600)


def test_range_rolled_out_of_dvr_is_refused(fed_store: Fed) -> None:
    store, _, origin = fed_store
    with pytest.raises(RangeNotInDvr):
        store.create_clip("demo", duration=10, start=origin - 100)


def test_stream_without_media_cannot_be_clipped(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.create_stream("empty", "Empty", 600)
    with pytest.raises(NothingInDvr):
        store.create_clip("empty", duration=5)
    with pytest.raises(StreamNotFound):
        store.create_clip("nope", duration=5)


def test_clip_count_limits_answer_limit_reached(
    make_store: Callable[..., Store], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    from packager.errors import LimitReached

    store = make_store(max_clips_per_stream=2, max_clips=3)
    feed = DemoFeed(Ingest(store), ladder, clock)
    origin = feed_past(feed, clock, 3)
    store.create_clip("demo", duration=2, start=origin)
    store.create_clip("demo", duration=2, start=origin)
    with pytest.raises(LimitReached, match="per stream"):
        store.create_clip("demo", duration=2, start=origin)
    # A second stream may still cut, until the clips of all streams reach max_clips.
    other = DemoFeed(Ingest(store), ladder, clock, stream_id="other")
    feed_past(other, clock, 3)
    store.create_clip("other", duration=2, start=origin)
    assert len(store.clips) == 3
    with pytest.raises(LimitReached, match="at once"):
        store.create_clip("other", duration=2, start=origin)
