from __future__ import annotations

import m3u8
import pytest

from packager.clock import ManualClock
from packager.media.model import InitSegment
from packager.package import hls, names
from packager.store.model import Clip
from tests.conftest import Fed


async def _inits(fed: Fed, clip: Clip) -> dict[str, InitSegment]:
    return {cr.first_init: await fed.store.init(cr.first_init) for cr in clip.renditions}


async def test_master_playlist_lists_the_ladder_with_media_attributes(fed: Fed) -> None:
    origin = fed.origin
    clip = await fed.clips.create_clip("demo", duration=6, start=origin + 2)
    inits = await _inits(fed, clip)
    parsed = m3u8.loads(hls.master_playlist(clip, inits))
    assert parsed.is_variant
    variants = parsed.playlists
    assert [p.uri for p in variants] == [
        names.playlist(clip.id, f"media_{n}_{h}") for n, h in ((1, 360), (2, 720), (3, 1080))
    ]
    assert [p.stream_info.resolution for p in variants] == [(640, 360), (1280, 720), (1920, 1080)]
    for p, cr in zip(variants, clip.renditions, strict=True):
        info = p.stream_info
        assert info.codecs == f"{inits[cr.first_init].video.codec},mp4a.40.2"  # type: ignore[union-attr]
        assert info.frame_rate == pytest.approx(30.0)
        sizes = [s.size * 8 / s.duration for s in cr.segments]
        assert info.bandwidth == pytest.approx(max(sizes), abs=1)
        assert info.average_bandwidth == pytest.approx(sum(sizes) / len(sizes), rel=1e-3)
        assert info.average_bandwidth <= info.bandwidth
    bandwidths = [p.stream_info.bandwidth for p in variants]
    assert bandwidths == sorted(bandwidths)


async def test_media_playlist_of_a_complete_clip_is_vod(fed: Fed) -> None:
    origin = fed.origin
    clip = await fed.clips.create_clip("demo", duration=6, start=origin + 2)
    cr = clip.renditions[1]
    text = hls.media_playlist(clip, cr)
    parsed = m3u8.loads(text)
    assert parsed.playlist_type == "vod" and parsed.is_endlist
    assert parsed.target_duration == 2 and parsed.version == 7
    assert parsed.is_independent_segments
    assert [s.uri for s in parsed.segments] == [
        names.segment(clip.id, cr.name, i) for i in range(3)
    ]
    assert [s.duration for s in parsed.segments] == pytest.approx([2.0, 2.0, 2.0])
    assert parsed.segments[0].init_section.uri == names.init(clip.id, cr.name, 0)
    pdts = [s.program_date_time.timestamp() for s in parsed.segments]
    assert pdts == pytest.approx([origin + 2, origin + 4, origin + 6], abs=1e-3)
    assert not any(s.discontinuity for s in parsed.segments)


async def test_growing_clip_playlist_stays_event_and_gains_endlist(
    fed: Fed, clock: ManualClock
) -> None:
    """RFC 8216 §4.3.3.5: an EVENT playlist is only appended to, so it never turns VOD."""
    clip = await fed.clips.create_clip("demo", duration=4, start=clock() - 2)
    growing = hls.media_playlist(clip, clip.reference)
    parsed = m3u8.loads(growing)
    assert parsed.playlist_type == "event" and not parsed.is_endlist
    assert len(parsed.segments) == 1
    clock.advance(2)
    await fed.push(15)
    clip = await fed.store.clip("demo", clip.id)
    complete = hls.media_playlist(clip, clip.reference)
    parsed = m3u8.loads(complete)
    assert clip.complete and parsed.playlist_type == "event" and parsed.is_endlist
    assert len(parsed.segments) == 2
    assert complete.startswith(growing)


async def test_every_clip_playlist_says_to_start_at_its_first_frame(fed: Fed) -> None:
    origin = fed.origin
    for clip in (
        await fed.clips.create_clip("demo", duration=4, start=origin),  # complete when cut
        await fed.clips.create_clip("demo", duration=10, start=fed.store.clock() - 2),  # growing
    ):
        for cr in clip.renditions:
            parsed = m3u8.loads(hls.media_playlist(clip, cr))
            assert parsed.start is not None
            assert parsed.start.time_offset == 0 and parsed.start.precise == "YES"


async def test_gap_in_dvr_is_marked_as_discontinuity(fed: Fed, clock: ManualClock) -> None:
    origin = fed.origin
    clock.advance(20)
    # The encoder restarts: a new init (same bytes) and timestamps from zero again.
    for r in fed.feed.ladder:
        await fed.services.ingest.receive("demo", r.name, "init.mp4", r.init)
        await fed.services.ingest.receive("demo", r.name, "again0.m4s", r.segments[0])
    clip = await fed.clips.create_clip("demo", duration=40, start=origin + 20)
    parsed = m3u8.loads(hls.media_playlist(clip, clip.reference))
    flags = [s.discontinuity for s in parsed.segments]
    assert flags == [False] * 5 + [True]
