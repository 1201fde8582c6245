"""The demo feed is a continuous live stream: no gap and no overlap at its loop points."""

from __future__ import annotations

from fractions import Fraction

from packager.demo import RecordedRendition
from packager.media.fragment import parse_segment
from tests.conftest import MakeFed

HALF_AAC_FRAME = Fraction(512, 48000)


async def test_every_track_goes_on_exactly_where_it_ended_across_loops(
    ladder: list[RecordedRendition], make_fed: MakeFed
) -> None:
    fed = await make_fed(segments=40)  # six loop points
    for recorded in ladder:
        init = recorded.parsed_init
        refs = await fed.store.dvr_segments("demo", recorded.name)
        originals = [parse_segment(s, init) for s in recorded.segments]
        recorded_data = recorded.segments
        ends: dict[int, int] = {}
        for k, ref in enumerate(refs):
            data = await fed.store.segment_data(ref.key)
            video, audio = parse_segment(data, init).tracks
            for samples in (video, audio):
                if samples.track_id in ends:
                    assert samples.base_decode_time == ends[samples.track_id], (k, samples.track_id)
                ends[samples.track_id] = samples.end_decode_time
            # Each audio frame sits where the recording has it against the video, to half a
            # frame (the feed drops or repeats a frame at a loop point to stay there).
            rv, ra = originals[k % len(originals)].tracks
            source = recorded_data[k % len(originals)]
            first = bytes(data[audio.offsets[0] : audio.offsets[0] + audio.sizes[0]])
            j = next(
                j for j in range(3) if source[ra.offsets[j] : ra.offsets[j] + ra.sizes[j]] == first
            )
            moved = Fraction(video.base_decode_time - rv.base_decode_time, 15360)
            placed = Fraction(audio.base_decode_time - ra.base_decode_time - 1024 * j, 48000)
            assert abs(placed - moved) <= HALF_AAC_FRAME, k
