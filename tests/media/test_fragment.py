from __future__ import annotations

import struct

import pytest

from packager.demo import RecordedRendition
from packager.errors import BadMedia
from packager.media.boxes import iter_boxes
from packager.media.fragment import MAX_SAMPLES_PER_SEGMENT, parse_segment
from packager.media.init import parse_init
from packager.media.rewrite import shift_decode_times


def test_segment_samples_keyframes_and_durations(ladder: list[RecordedRendition]) -> None:
    for rendition in ladder:
        init = parse_init(rendition.init)
        video_dts = 0
        for data in rendition.segments:
            media = parse_segment(data, init)
            video = media.track(1)
            audio = media.track(2)
            assert video is not None and audio is not None
            assert video.count == 60 and video.duration == 30720  # 2.000 s at 15360
            assert video.base_decode_time == video_dts
            video_dts += video.duration
            assert list(video.sync).count(1) == 1 and video.sync[0] == 1
            assert all(audio.sync)
            assert 1900 <= audio.duration * 1000 // 48000 <= 2100
            for track in (video, audio):
                assert len(track.offsets) == len(track.sizes) == len(track.cts_offsets)
                # Offsets point into the segment's mdat, contiguous within a run.
                assert track.offsets[-1] + track.sizes[-1] <= len(data)
                for i in range(1, track.count):
                    assert track.offsets[i] == track.offsets[i - 1] + track.sizes[i - 1]
            assert any(video.cts_offsets)  # B-frames


def test_sample_bytes_are_where_the_tables_say(ladder: list[RecordedRendition]) -> None:
    data = ladder[0].segments[1]
    media = parse_segment(data, parse_init(ladder[0].init))
    video = media.track(1)
    assert video is not None
    first = data[video.offsets[0] : video.offsets[0] + video.sizes[0]]
    # An AVC sample is length-prefixed NAL units; the first length fits in the sample.
    (nal_len,) = struct.unpack(">I", first[:4])
    assert 0 < nal_len <= len(first) - 4
    mdat = next(b for b in iter_boxes(data) if b.type == b"mdat")
    assert video.offsets[0] == mdat.payload_start


def test_segment_before_its_init_track_is_refused(ladder: list[RecordedRendition]) -> None:
    init = parse_init(ladder[0].init)
    data = bytearray(ladder[0].segments[0])
    pos = data.find(b"tfhd")
    struct.pack_into(">I", data, pos + 8, 7)  # track_ID 7
    with pytest.raises(BadMedia, match="track 7"):
        parse_segment(bytes(data), init)


def test_trun_with_lying_sample_count_is_refused_before_allocating(
    ladder: list[RecordedRendition],
) -> None:
    init = parse_init(ladder[0].init)
    data = bytearray(ladder[0].segments[0])
    pos = data.find(b"trun")
    struct.pack_into(">I", data, pos + 8, 0xFFFFFFFF)
    with pytest.raises(BadMedia, match="trun declares"):
        parse_segment(bytes(data), init)
    struct.pack_into(">I", data, pos + 8, MAX_SAMPLES_PER_SEGMENT - 1)
    with pytest.raises(BadMedia, match="its box holds fewer"):
        parse_segment(bytes(data), init)


def test_samples_pointing_outside_mdat_are_refused(ladder: list[RecordedRendition]) -> None:
    init = parse_init(ladder[0].init)
    data = bytearray(ladder[0].segments[0])
    pos = data.find(b"trun")
    struct.pack_into(">i", data, pos + 12, 10**8)  # data_offset far past the end
    with pytest.raises(BadMedia, match="outside every mdat"):
        parse_segment(bytes(data), init)


def test_truncated_segment_is_bad_media(ladder: list[RecordedRendition]) -> None:
    init = parse_init(ladder[0].init)
    data = ladder[0].segments[0]
    for cut in (10, 200, len(data) // 2, len(data) - 1):
        with pytest.raises(BadMedia):
            parse_segment(data[:cut], init)


def test_segment_without_moof_is_bad_media(ladder: list[RecordedRendition]) -> None:
    with pytest.raises(BadMedia, match="no moof"):
        parse_segment(ladder[0].init, parse_init(ladder[0].init))


def test_shift_decode_times_moves_every_track(ladder: list[RecordedRendition]) -> None:
    init = parse_init(ladder[0].init)
    data = ladder[0].segments[2]
    before = parse_segment(data, init)
    after = parse_segment(shift_decode_times(data, {1: 15360, 2: 48000}), init)
    v0, v1 = before.track(1), after.track(1)
    a0, a1 = before.track(2), after.track(2)
    assert v0 and v1 and a0 and a1
    assert v1.base_decode_time == v0.base_decode_time + 15360
    assert a1.base_decode_time == a0.base_decode_time + 48000
    assert v1.sizes == v0.sizes and a1.offsets == a0.offsets
