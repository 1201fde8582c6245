from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC

import pytest

from packager.clock import ManualClock
from packager.demo import RecordedRendition
from packager.errors import BadMedia
from packager.service.ingest import Ingest, NoInitSegment, Received, init_id
from packager.store.base import Store
from packager.store.model import Timing
from tests.conftest import Hev1
from tests.media.real_media import hvcc_arrays, with_hvcc_arrays

PDT = 1_799_999_900.0  # ffmpeg's playlist: 2027-01-15T08:38:20.000Z, 100 s before T0


def playlist(names: list[str], start: float = PDT, discontinuity_at: int = -1) -> bytes:
    from datetime import datetime

    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:2",
        '#EXT-X-MAP:URI="init_0.mp4"',
    ]
    for i, name in enumerate(names):
        if i == discontinuity_at:
            lines.append("#EXT-X-DISCONTINUITY")
        pdt = datetime.fromtimestamp(start + 2 * i, tz=UTC).isoformat(timespec="milliseconds")
        lines += ["#EXTINF:2.000000,", f"#EXT-X-PROGRAM-DATE-TIME:{pdt}", name]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def ingest(make_store: Callable[..., Store]) -> Ingest:
    return Ingest(make_store(), 3600.0)


async def test_playlist_after_segment_gives_it_the_encoders_clock(
    ingest: Ingest, ladder: list[RecordedRendition]
) -> None:
    r = ladder[0]
    assert (await ingest.receive("s", "0", "init_0.mp4", r.init)).kind is Received.INIT
    names: list[str] = []
    for k in range(3):
        names.append(f"index{k}.m4s")
        assert (await ingest.receive("s", "0", names[-1], r.segments[k])).kind is Received.SEGMENT
        assert (
            await ingest.receive("s", "0", "index.m3u8", playlist(names))
        ).kind is Received.PLAYLIST
    segs = await ingest.store.dvr_segments("s", "0")
    assert [s.start for s in segs] == pytest.approx([PDT, PDT + 2, PDT + 4])
    assert all(s.timing is Timing.PDT for s in segs)
    assert not any(s.discontinuity for s in segs)


async def test_playlist_before_segment_works_the_same(
    ingest: Ingest, ladder: list[RecordedRendition]
) -> None:
    r = ladder[1]
    await ingest.receive("s", "1", "init_1.mp4", r.init)
    names = [f"index{k}.m4s" for k in range(3)]
    for k in range(3):
        await ingest.receive("s", "1", "index.m3u8", playlist(names[: k + 1]))
        await ingest.receive("s", "1", names[k], r.segments[k])
    segs = await ingest.store.dvr_segments("s", "1")
    assert [s.start for s in segs] == pytest.approx([PDT, PDT + 2, PDT + 4])


async def test_without_playlist_arrival_time_and_continuity_time_segments(
    ingest: Ingest, ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    r = ladder[0]
    await ingest.receive("s", "0", "init.mp4", r.init)
    await ingest.receive("s", "0", "a.m4s", r.segments[0])
    clock.advance(1.7)  # jitter: the next one is placed by media time, not arrival
    await ingest.receive("s", "0", "b.m4s", r.segments[1])
    first, second = await ingest.store.dvr_segments("s", "0")
    assert first.timing is Timing.ARRIVAL and first.start == pytest.approx(clock() - 1.7 - 2)
    assert second.timing is Timing.CONTINUED and second.start == pytest.approx(first.end)


async def test_encoder_restart_marks_a_discontinuity(
    ingest: Ingest, ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    r = ladder[0]
    await ingest.receive("s", "0", "init_0.mp4", r.init)
    await ingest.receive("s", "0", "index0.m4s", r.segments[0])
    await ingest.receive("s", "0", "index1.m4s", r.segments[1])
    clock.advance(30)
    await ingest.receive("s", "0", "init_0.mp4", r.init)  # restarted: same init, tfdt from 0 again
    await ingest.receive("s", "0", "index0.m4s", r.segments[0])
    segs = await ingest.store.dvr_segments("s", "0")
    assert [s.discontinuity for s in segs] == [False, False, True]
    assert segs[2].start > segs[1].end


async def test_retried_put_of_the_same_segment_is_stored_once(
    ingest: Ingest, ladder: list[RecordedRendition]
) -> None:
    r = ladder[0]
    await ingest.receive("s", "0", "init_0.mp4", r.init)
    await ingest.receive("s", "0", "index0.m4s", r.segments[0])
    assert (await ingest.receive("s", "0", "index0.m4s", r.segments[0])).kind is Received.DUPLICATE
    assert len(await ingest.store.dvr_segments("s", "0")) == 1


async def test_a_new_streams_renditions_pushed_at_once_are_all_taken(
    ingest: Ingest, ladder: list[RecordedRendition]
) -> None:
    """An encoder's first pushes of a ladder arrive together, each creating the stream it is
    the first to see; on a shared store the losers of that race must still be taken."""
    firsts = await asyncio.gather(
        *(ingest.receive("new", str(n), "init.mp4", r.init) for n, r in enumerate(ladder))
    )
    assert [got.kind for got in firsts] == [Received.INIT] * len(ladder)
    for n, r in enumerate(ladder):
        got = await ingest.receive("new", str(n), "index0.m4s", r.segments[0])
        assert got.kind is Received.SEGMENT
    assert [len(await ingest.store.dvr_segments("new", str(n))) for n in range(3)] == [1] * 3


async def test_segment_before_init_is_refused(
    ingest: Ingest, ladder: list[RecordedRendition]
) -> None:
    with pytest.raises(NoInitSegment):
        await ingest.receive("s", "0", "index0.m4s", ladder[0].segments[0])


@pytest.mark.parametrize(
    "body", [b"", b"hello world", b"\x00\x00\x00\x08free", b"#EXTM3U\n" + b"\xff" * 3]
)
async def test_bad_media_is_refused_and_nothing_stored(
    ingest: Ingest, ladder: list[RecordedRendition], body: bytes
) -> None:
    r = ladder[0]
    await ingest.receive("s", "0", "init_0.mp4", r.init)
    await ingest.receive("s", "0", "index0.m4s", r.segments[0])
    before = await ingest.store.stats()
    with pytest.raises(BadMedia):
        name = "index.m3u8" if body.startswith(b"#EXTM3U") else "index1.m4s"
        await ingest.receive("s", "0", name, body)
    with pytest.raises(BadMedia):
        await ingest.receive("s", "0", "index1.m4s", r.segments[1][: len(r.segments[1]) // 2])
    assert await ingest.store.stats() == before
    state = await ingest.store.rendition("s", "0")
    assert state is not None and state.init_id is not None


@pytest.mark.parametrize("pdt_every_segment", [True, False])
def test_long_event_playlist_reads_its_recent_entries_like_a_full_parse(
    pdt_every_segment: bool,
) -> None:
    import m3u8

    from packager.service.ingest import TAIL_ENTRIES, parse_playlist

    names = [f"index{k}.m4s" for k in range(300)]
    text = playlist(names, discontinuity_at=290).decode()
    if not pdt_every_segment:
        first, *rest = text.split("#EXT-X-PROGRAM-DATE-TIME:")
        text = (
            first
            + "#EXT-X-PROGRAM-DATE-TIME:"
            + rest[0]
            + "".join(r.split("\n", 1)[1] for r in rest[1:])
        )
    entries = parse_playlist(text.encode())
    full = m3u8.loads(text).segments
    assert list(entries)[-TAIL_ENTRIES:] == names[-TAIL_ENTRIES:]
    for seg in full[-TAIL_ENTRIES:]:
        entry = entries[seg.uri]
        assert entry.program_date_time == seg.current_program_date_time.timestamp()
        assert entry.discontinuity == seg.discontinuity
    assert entries["index299.m4s"].program_date_time == pytest.approx(PDT + 598)


async def test_a_program_date_time_days_away_is_not_trusted(
    ingest: Ingest, ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    r = ladder[0]
    await ingest.receive("s", "0", "init_0.mp4", r.init)
    far = playlist(["index0.m4s"], start=clock() + 30 * 86400)
    await ingest.receive("s", "0", "index.m3u8", far)
    await ingest.receive("s", "0", "index0.m4s", r.segments[0])
    (seg,) = await ingest.store.dvr_segments("s", "0")
    assert seg.timing is Timing.ARRIVAL
    assert seg.start == pytest.approx(clock() - 2)


# ---- hev1 served as hvc1 (Apple's HLS takes only hvc1 in fMP4) ----------------------------

APPLE_WONT = "; Apple devices will not play this rendition"


async def test_a_hev1_rendition_is_served_as_hvc1_from_its_first_segment(
    ingest: Ingest, hev1: dict[str, Hev1]
) -> None:
    made = hev1["in_band"]
    pushed = with_hvcc_arrays(made.init, [])  # the parameter sets only in the samples
    store = ingest.store
    await ingest.receive("s", "v", "init.mp4", pushed)
    before = (await store.stats()).init_bytes

    for k, segment in enumerate(made.segments):
        await ingest.receive("s", "v", f"index{k}.m4s", segment)

    state = await store.rendition("s", "v")
    assert state is not None and state.init_id is not None and state.init_id != init_id(pushed)
    served = await store.init(state.init_id)
    assert hvcc_arrays(served.data)[0] == b"hvc1"
    (rendition,) = await store.ladder("s")
    assert rendition.codecs.startswith("hvc1.") and rendition.note is None
    segments = await store.dvr_segments("s", "v")
    assert {s.init_id for s in segments} == {state.init_id}
    assert not any(s.discontinuity for s in segments)
    # The pushed init is no longer held; the served one is counted in its place.
    assert (await store.stats()).init_bytes - before == len(served.data) - len(pushed)


async def test_a_resent_hev1_init_keeps_the_hvc1_one_and_no_discontinuity(
    ingest: Ingest, hev1: dict[str, Hev1]
) -> None:
    made = hev1["in_band"]
    pushed = with_hvcc_arrays(made.init, [])
    await ingest.receive("s", "v", "init.mp4", pushed)
    await ingest.receive("s", "v", "index0.m4s", made.segments[0])
    served = (await ingest.store.ladder("s"))[0].init_id
    await ingest.receive("s", "v", "init.mp4", pushed)  # ffmpeg's -hls_fmp4_init_resend
    await ingest.receive("s", "v", "index1.m4s", made.segments[1])
    segments = await ingest.store.dvr_segments("s", "v")
    assert [(s.init_id, s.discontinuity) for s in segments] == [(served, False), (served, False)]


async def test_a_hev1_rendition_without_parameter_sets_stays_hev1_and_says_why(
    ingest: Ingest, hev1: dict[str, Hev1]
) -> None:
    made = hev1["entry_only"]  # sets in hvcC only: taken away, there are none
    pushed = with_hvcc_arrays(made.init, [])
    await ingest.receive("s", "v", "init.mp4", pushed)
    for k, segment in enumerate(made.segments):
        await ingest.receive("s", "v", f"index{k}.m4s", segment)
    (rendition,) = await ingest.store.ladder("s")
    assert rendition.init_id == init_id(pushed)
    assert rendition.codecs.startswith("hev1.")
    assert rendition.note == (
        "hev1: no parameter sets in the sample entry or the first segment" + APPLE_WONT
    )


async def test_sets_that_change_after_the_first_segment_turn_it_back_to_hev1(
    ingest: Ingest, hev1: dict[str, Hev1]
) -> None:
    made = hev1["in_band"]
    pushed = with_hvcc_arrays(made.init, [])
    await ingest.receive("s", "v", "init.mp4", pushed)
    await ingest.receive("s", "v", "index0.m4s", made.segments[0])
    await ingest.receive("s", "v", "index1.m4s", made.segments[1])
    # The encoder's next segment carries another SPS and PPS under the same ids.
    await ingest.receive("s", "v", "index2.m4s", hev1["other_sets"].segments[0])

    (rendition,) = await ingest.store.ladder("s")
    assert rendition.codecs.startswith("hev1.")
    assert rendition.note == "hev1: parameter sets only in-band and changing" + APPLE_WONT
    first, second, third = await ingest.store.dvr_segments("s", "v")
    converted = await ingest.store.init(first.init_id)
    assert hvcc_arrays(converted.data)[0] == b"hvc1"  # right for the segments it served
    assert second.init_id == first.init_id and not second.discontinuity
    assert third.init_id == rendition.init_id != first.init_id and third.discontinuity
    fourcc, arrays = hvcc_arrays((await ingest.store.init(third.init_id)).data)
    assert fourcc == b"hev1" and not any(first & 0x80 for first, _ in arrays)
    # A re-sent copy of the pushed init does not bring hvc1 back.
    await ingest.receive("s", "v", "init.mp4", pushed)
    await ingest.receive("s", "v", "index3.m4s", hev1["other_sets"].segments[1])
    (again,) = await ingest.store.ladder("s")
    assert (again.init_id, again.note) == (rendition.init_id, rendition.note)
