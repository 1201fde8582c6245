from __future__ import annotations

import pytest

from packager.demo import RecordedRendition
from packager.errors import BadMedia
from packager.media.init import parse_init


def test_init_segment_gives_codecs_sizes_and_timescales(ladder: list[RecordedRendition]) -> None:
    expected = [(640, 360, "avc1.64001e"), (1280, 720, "avc1.64001f"), (1920, 1080, "avc1.640028")]
    for rendition, (width, height, codec) in zip(ladder, expected, strict=True):
        init = parse_init(rendition.init)
        video, audio = init.video, init.audio
        assert video is not None and audio is not None
        assert (video.width, video.height, video.codec) == (width, height, codec)
        assert video.timescale == 15360
        assert (audio.codec, audio.channels, audio.sample_rate) == ("mp4a.40.2", 2, 48000)
        assert audio.timescale == 48000
        assert init.codecs == f"{codec},mp4a.40.2"
        assert init.main is video
        assert video.stsd[4:8] == b"stsd"


def test_init_without_moov_is_bad_media(ladder: list[RecordedRendition]) -> None:
    with pytest.raises(BadMedia, match="no moov"):
        parse_init(ladder[0].init[:28])  # the ftyp alone


@pytest.mark.parametrize("cut", [30, 100, 500, 1000])
def test_truncated_init_is_bad_media(ladder: list[RecordedRendition], cut: int) -> None:
    with pytest.raises(BadMedia):
        parse_init(ladder[0].init[:cut])


def test_init_without_mvex_is_refused_as_not_fragmented(ladder: list[RecordedRendition]) -> None:
    data = bytearray(ladder[0].init)
    pos = data.find(b"mvex")
    data[pos : pos + 4] = b"free"
    with pytest.raises(BadMedia, match="not a fragmented MP4"):
        parse_init(bytes(data))
