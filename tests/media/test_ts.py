"""TS segments from a real encoder become fMP4 the packager parses and ffmpeg plays identically.

Every stream here is ffmpeg's own MPEG-TS output (its HLS and segment muxers, x264 with
B-frames, x265 with its default open GOP, AAC), encoded once per session; the judge of what
we write is ffmpeg decoding it, frame by frame, against the TS it came from.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, pairwise
from pathlib import Path

import pytest

from packager.errors import BadMedia
from packager.media import boxes, nal
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment, SegmentMedia, TrackSamples
from packager.media.ts import TsSegment, TsState, demux_segment, is_transport_stream
from tests.media.real_media import (
    SMALL_VIDEO,
    TONE,
    ffmpeg,
    ffmpeg_fmp4,
    frame_hashes,
    probe,
    samples,
    video_size,
)

WRAP = 2**33  # PTS ticks
WRAP_SECONDS = WRAP / 90_000
FPS = 30
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", str(FPS)]
HEVC = ["-c:v", "libx265", "-preset", "ultrafast", "-g", str(FPS)]
HEVC += ["-x265-params", "log-level=error"]  # open GOP is x265's default
AAC = ["-c:a", "aac"]
HLS_TS = ["-f", "hls", "-hls_segment_type", "mpegts", "-hls_time", "1", "-hls_list_size", "0"]


@dataclass(frozen=True)
class Encoded:
    """One encoder run: its TS segments in playlist order, and what ffmpeg says about them."""

    segments: list[bytes]
    paths: list[Path]
    master_codecs: str | None  # ffmpeg's HLS master playlist CODECS, when it wrote one

    @property
    def joined(self) -> bytes:
        return b"".join(self.segments)


def _hls(exe: str, out: Path, seconds: float, *args: str, video: bool, audio: bool) -> Encoded:
    out.mkdir()
    inputs: list[str] = []
    if video:
        inputs += ["-f", "lavfi", "-i", SMALL_VIDEO]
    if audio:
        inputs += ["-f", "lavfi", "-i", TONE]
    ffmpeg(
        exe,
        *inputs,
        *("-t", str(seconds), *args, *HLS_TS),
        *("-master_pl_name", "master.m3u8"),
        *("-hls_segment_filename", str(out / "seg_%d.ts"), str(out / "media.m3u8")),
    )
    names = [ln for ln in (out / "media.m3u8").read_text().splitlines() if ln.endswith(".ts")]
    paths = [out / name for name in names]
    master = (out / "master.m3u8").read_text()
    m = re.search(r'CODECS="([^"]+)"', master)
    return Encoded([p.read_bytes() for p in paths], paths, m[1] if m else None)


def _one_frame_segments(exe: str, out: Path) -> Encoded:
    """Intra-only video cut after 0.2 s and then at every frame: segments of a single frame."""
    out.mkdir()
    ffmpeg(
        exe,
        *("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "0.4", "-an"),
        *("-c:v", "libx264", "-preset", "veryfast", "-g", "1"),
        *("-f", "segment", "-segment_format", "mpegts", "-segment_times", "0.2,0.24,0.28"),
        *("-segment_list", str(out / "list.txt"), str(out / "seg_%d.ts")),
    )
    paths = [out / name for name in (out / "list.txt").read_text().split()]
    return Encoded([p.read_bytes() for p in paths], paths, None)


def _adts_with_crc(exe: str, out: Path) -> Encoded:
    """ADTS frames with protection_absent 0 (a CRC after each header), stream-copied into TS:
    ffmpeg's AAC encoder never writes the CRC, so the frames get one spliced in first."""
    out.mkdir()
    plain = out / "plain.aac"
    ffmpeg(exe, "-f", "lavfi", "-i", TONE, "-t", "2", "-ac", "2", "-c:a", "aac", str(plain))
    data, pos, crc = plain.read_bytes(), 0, bytearray()
    while pos < len(data):
        length = (data[pos + 3] & 3) << 11 | data[pos + 4] << 3 | data[pos + 5] >> 5
        header = bytearray(data[pos : pos + 7])
        header[1] &= 0xFE  # protection_absent = 0
        new = length + 2
        header[3] = (header[3] & 0xFC) | new >> 11
        header[4] = (new >> 3) & 0xFF
        header[5] = (header[5] & 0x1F) | (new & 7) << 5
        crc += header + b"\xab\xcd" + data[pos + 7 : pos + length]  # the decoder skips it
        pos += length
    (out / "crc.aac").write_bytes(crc)
    ts = out / "crc.ts"
    ffmpeg(exe, "-i", str(out / "crc.aac"), "-c:a", "copy", "-f", "mpegts", str(ts))
    return Encoded([ts.read_bytes()], [ts], None)


@pytest.fixture(scope="session")
def encoded(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Encoded]:
    tmp = tmp_path_factory.mktemp("ts")
    exe = ffmpeg_exe
    # -output_ts_offset puts the first PTS 1.6 s before the 33-bit wrap (ffmpeg's TS muxer
    # starts 1.4 s in): the wrap falls inside the second segment.
    wrap_offset = f"{WRAP_SECONDS - 3.0:.6f}"
    return {
        "h264": _hls(exe, tmp / "h264", 3, *H264, *AAC, video=True, audio=True),
        "hevc": _hls(exe, tmp / "hevc", 3, *HEVC, *AAC, video=True, audio=True),
        "hevc10": _hls(
            exe, tmp / "hevc10", 2, *HEVC, "-pix_fmt", "yuv420p10le", *AAC, video=True, audio=True
        ),
        "wrap": _hls(
            exe,
            tmp / "wrap",
            4,
            *H264,
            *AAC,
            *("-output_ts_offset", wrap_offset),
            video=True,
            audio=True,
        ),
        "video_only": _hls(exe, tmp / "video", 2, *H264, video=True, audio=False),
        "audio_only": _hls(exe, tmp / "audio", 2, *AAC, video=False, audio=True),
        "one_frame": _one_frame_segments(exe, tmp / "one"),
        "adts_crc": _adts_with_crc(exe, tmp / "crc"),
    }


@dataclass(frozen=True)
class Demuxed:
    out: TsSegment
    state: TsState
    init: InitSegment
    media: SegmentMedia

    def track(self, handler: str) -> TrackSamples | None:
        t = next((t for t in self.init.tracks if t.handler == handler), None)
        return self.media.track(t.track_id) if t else None

    def video(self) -> TrackSamples:
        track = self.track("vide")
        assert track is not None
        return track

    def audio(self) -> TrackSamples:
        track = self.track("soun")
        assert track is not None
        return track


def demux_all(segments: list[bytes]) -> list[Demuxed]:
    """Demux in order carrying the state, as ingest will; both outputs must parse."""
    out: list[Demuxed] = []
    state: TsState | None = None
    for data in segments:
        seg, state = demux_segment(data, state)
        init = parse_init(seg.init)
        out.append(Demuxed(seg, state, init, parse_segment(seg.fragment, init)))
    return out


ALL = ["h264", "hevc", "hevc10", "wrap", "video_only", "audio_only", "one_frame", "adts_crc"]
WITH_VIDEO = ["h264", "hevc", "hevc10", "wrap", "video_only", "one_frame"]
WITH_AUDIO = ["h264", "hevc", "hevc10", "wrap", "audio_only", "adts_crc"]


@pytest.mark.parametrize("name", ALL)
def test_every_segment_becomes_fmp4_the_packager_parses(
    encoded: dict[str, Encoded], name: str
) -> None:
    runs = demux_all(encoded[name].segments)
    assert len(runs) == len(encoded[name].segments)
    for run in runs:
        top = [b.type for b in boxes.iter_boxes(run.out.fragment)]
        assert top == [b"styp", b"moof", b"mdat"]
        assert [b.type for b in boxes.iter_boxes(run.out.init)] == [b"ftyp", b"moov"]
    # An unchanged stream keeps one init, byte for byte, whatever its segments' timing.
    assert len({run.out.init for run in runs}) == 1
    expected = (["vide"] if name in WITH_VIDEO else []) + (["soun"] if name in WITH_AUDIO else [])
    assert [t.handler for t in runs[0].init.tracks] == expected


@pytest.mark.parametrize("name", ALL)
def test_ffmpeg_decodes_the_fmp4_to_the_very_frames_of_the_ts(
    encoded: dict[str, Encoded], ffmpeg_exe: str, name: str
) -> None:
    """init + fragment 0 + fragment 1 + ... decodes without an error line, frame for frame
    (and sample for sample) what the TS segments decode to."""
    runs = demux_all(encoded[name].segments)
    mp4 = runs[0].out.init + b"".join(run.out.fragment for run in runs)
    streams = (["0:v"] if name in WITH_VIDEO else []) + (["0:a"] if name in WITH_AUDIO else [])
    for stream in streams:
        source = frame_hashes(ffmpeg_exe, encoded[name].joined, stream)
        assert source
        assert frame_hashes(ffmpeg_exe, mp4, stream) == source, stream


@pytest.mark.parametrize("name", WITH_VIDEO)
def test_one_video_sample_per_source_frame(
    encoded: dict[str, Encoded], ffmpeg_exe: str, name: str
) -> None:
    runs = demux_all(encoded[name].segments)
    frames = len(frame_hashes(ffmpeg_exe, encoded[name].joined, "0:v"))
    assert sum(run.video().count for run in runs) == frames


@pytest.mark.parametrize("name", ["h264", "hevc", "hevc10", "wrap", "video_only", "audio_only"])
def test_decode_times_continue_from_segment_to_segment(
    encoded: dict[str, Encoded], name: str
) -> None:
    """Each segment starts where the previous one ended, to the tick for video and to the
    sample for audio: ffmpeg's source is gapless."""
    runs = demux_all(encoded[name].segments)
    for prev, run in pairwise(runs):
        if name in WITH_VIDEO:
            assert run.video().base_decode_time == prev.video().end_decode_time
        if name in WITH_AUDIO:
            # ffmpeg's audio is gapless and 48 kHz is exact in 90 kHz: no rounding left over.
            assert run.audio().base_decode_time == prev.audio().end_decode_time
    for run in runs:
        if name in WITH_AUDIO:
            assert set(run.audio().durations) == {1024}


@pytest.mark.parametrize("name", ["h264", "hevc", "video_only", "audio_only"])
def test_the_first_segment_keeps_the_encoders_timestamps(
    encoded: dict[str, Encoded], ffmpeg_exe: str, name: str
) -> None:
    """No rebasing to 0: the first sample presents when ffmpeg says the TS stream starts."""
    run = demux_all(encoded[name].segments[:1])[0]
    text = probe(ffmpeg_exe, encoded[name].paths[0])
    starts = {
        kind: float(start)
        for kind, start in re.findall(r"(Video|Audio): .*, start (-?[\d.]+)", text)
    }
    if name in WITH_VIDEO:
        video = run.video()
        first_pts = min(_presentation_times(video))
        assert abs(first_pts / 90_000 - starts["Video"]) < 1e-5
    if name in WITH_AUDIO:
        audio = run.audio()
        assert abs(audio.base_decode_time / 48_000 - starts["Audio"]) < 1 / 48_000


@pytest.mark.parametrize("name", ["h264", "hevc", "hevc10"])
def test_size_and_codecs_are_what_ffmpeg_reports(
    encoded: dict[str, Encoded], ffmpeg_exe: str, tmp_path: Path, name: str
) -> None:
    run = demux_all(encoded[name].segments[:1])[0]
    video = run.init.video
    assert video is not None
    assert (video.width, video.height) == video_size(ffmpeg_exe, encoded[name].paths[0])
    # ffmpeg's own fMP4 of the same TS builds its avcC/hvcC from the same parameter sets.
    theirs, _ = ffmpeg_fmp4(
        ffmpeg_exe, encoded[name].paths[0], tmp_path / "ref.mp4", video.codec[:4]
    )
    assert theirs.video is not None
    assert video.codec == theirs.video.codec
    audio = run.init.audio
    assert audio is not None
    assert (audio.codec, audio.sample_rate, audio.channels, audio.timescale) == (
        "mp4a.40.2",
        48_000,
        1,
        48_000,
    )
    if name == "h264":
        assert run.init.codecs == encoded[name].master_codecs  # what ffmpeg's HLS muxer says
        assert video.codec.startswith("avc1.64")  # High profile
    else:  # Main or Main 10 profile; parameter sets out of band
        assert video.codec.startswith("hvc1.2." if name == "hevc10" else "hvc1.1.")


@pytest.mark.parametrize("name", ["h264", "hevc"])
def test_samples_are_length_prefixed_pictures_with_sync_flags_on_random_access_points(
    encoded: dict[str, Encoded], name: str
) -> None:
    hevc = name == "hevc"
    for run in demux_all(encoded[name].segments):
        video = run.video()
        for k, sample in enumerate(samples(run.out.fragment, run.media, video.track_id)):
            types = nal.nal_types(sample, 4, hevc=hevc)
            # Parameter sets live in the sample entry only; delimiters are dropped.
            assert not set(types) & ({32, 33, 34, 35} if hevc else {7, 8, 9})
            random_access = nal.hevc_is_irap(types) if hevc else nal.h264_is_idr(types)
            assert video.sync[k] == random_access
        assert video.sync[0]  # ffmpeg's HLS muxer cuts at keyframes


def test_hevc_open_gop_segments_open_on_a_cra_and_keep_its_rasl_pictures(
    encoded: dict[str, Encoded],
) -> None:
    runs = demux_all(encoded["hevc"].segments)
    for run in runs[1:]:
        video = run.video()
        types = [
            nal.nal_types(s, 4, hevc=True)
            for s in samples(run.out.fragment, run.media, video.track_id)
        ]
        assert 21 in types[0]  # CRA: open GOP
        assert any(nal.hevc_is_leading_skipped(t) for t in types[1:4])
        assert not video.sync[1]


def test_b_frames_give_signed_composition_offsets_that_order_presentation(
    encoded: dict[str, Encoded],
) -> None:
    runs = demux_all(encoded["h264"].segments)
    presentation: list[int] = []
    for run in runs:
        presentation += _presentation_times(run.video())
        assert any(run.video().cts_offsets)
    presentation.sort()
    steps = {b - a for a, b in pairwise(presentation)}
    assert steps == {90_000 // FPS}  # every frame presented once, 1/30 s apart


def test_decode_times_keep_growing_across_the_33_bit_wrap(encoded: dict[str, Encoded]) -> None:
    runs = demux_all(encoded["wrap"].segments)
    video = [run.video() for run in runs]
    audio = [run.audio() for run in runs]
    assert video[0].base_decode_time < WRAP < video[-1].base_decode_time
    assert audio[0].base_decode_time < WRAP * 48_000 // 90_000 < audio[-1].base_decode_time
    for track in (video, audio):
        for prev, cur in pairwise(track):
            assert cur.base_decode_time == prev.end_decode_time


def test_a_one_frame_segment_lasts_as_long_as_the_frame_before_it(
    encoded: dict[str, Encoded],
) -> None:
    runs = demux_all(encoded["one_frame"].segments)
    counts = [run.video().count for run in runs]
    assert counts[0] > 1 and 1 in counts[1:]
    frame = runs[0].video().durations[0]
    assert frame == 90_000 // 25
    for prev, run in pairwise(runs):
        video = run.video()
        assert video.base_decode_time == prev.video().end_decode_time
        assert list(video.durations) == [frame] * video.count


def test_adts_frames_with_a_crc_and_several_per_pes(encoded: dict[str, Encoded]) -> None:
    data = encoded["adts_crc"].segments[0]
    run = demux_all([data])[0]
    audio = run.audio()
    pid = _audio_pid(data)
    pes_starts = sum(1 for _, p, start, _ in _packets(data) if p == pid and start)
    assert audio.count > pes_starts  # several frames per PES packet
    assert run.init.audio is not None and run.init.audio.channels == 2
    assert run.init.audio.timescale == 48_000


def test_state_survives_json_and_continues_identically(encoded: dict[str, Encoded]) -> None:
    segments = encoded["h264"].segments
    _, state = demux_segment(segments[0], None)
    text = state.to_json()
    again = TsState.from_json(text)
    assert again == state
    assert demux_segment(segments[1], again) == demux_segment(segments[1], state)
    for bad in [
        "",
        "[]",
        "{}",
        '{"sequence": -1, "clocks": []}',
        '{"sequence": 1.5, "clocks": []}',
    ]:
        with pytest.raises(ValueError):
            TsState.from_json(bad)
    with pytest.raises(ValueError):
        TsState.from_json('{"sequence": 1, "clocks": [[256, 1, 2]]}')
    with pytest.raises(ValueError):
        TsState.from_json('{"sequence": true, "clocks": []}')


def test_streams_other_than_h264_hevc_and_aac_are_skipped(encoded: dict[str, Encoded]) -> None:
    data = bytearray(encoded["h264"].segments[0])
    tables = _pmt(bytes(data))
    assert tables
    for entries in tables:
        for offset, _, kind in entries:
            if kind == 0x0F:
                data[offset] = 0x15  # the audio becomes ID3 timed metadata
    seg, _ = demux_segment(bytes(data), None)
    assert [t.handler for t in parse_init(seg.init).tracks] == ["vide"]
    for entries in tables:
        for offset, _, kind in entries:
            if kind == 0x1B:
                data[offset] = 0x86  # and the video SCTE-35
    with pytest.raises(BadMedia, match=r"stream types: 0x86, 0x15"):
        demux_segment(bytes(data), None)


def _presentation_times(track: TrackSamples) -> list[int]:
    decode = accumulate(track.durations, initial=track.base_decode_time)  # one extra: the end
    return [d + c for d, c in zip(decode, track.cts_offsets, strict=False)]


def test_audio_clock_jitter_of_a_tick_keeps_continuity_but_a_real_gap_shows(
    encoded: dict[str, Encoded],
) -> None:
    """An encoder clock's 90 kHz rounding (a tick or two) is no gap: the next segment continues
    exactly. A real gap in the audio stays a gap, to the sample."""
    segments = encoded["h264"].segments
    first, state = demux_segment(segments[0], None)
    end = parse_segment(first.fragment, parse_init(first.init)).tracks[1].end_decode_time
    pid = _audio_pid(segments[1])
    for shift, expected in ((2, end), (-2, end), (90_000, end + 48_000)):
        data = bytearray(segments[1])
        _shift_timestamps(data, pid, shift)
        seg, _ = demux_segment(bytes(data), state)
        audio = parse_segment(seg.fragment, parse_init(seg.init)).tracks[1]
        assert audio.base_decode_time == expected, shift


def test_a_first_segment_whose_streams_straddle_the_wrap_keeps_them_together(
    encoded: dict[str, Encoded],
) -> None:
    """The PMT lists audio first (as some encoders do), audio has just wrapped and video not
    yet: decode times stay non-negative and audio keeps its offset from video."""
    source = encoded["h264"].segments[0]
    before = demux_all([source])[0]
    offset = before.audio().base_decode_time * 90_000 / 48_000 - before.video().base_decode_time
    assert 1_000 < offset < 90_000  # ffmpeg starts its audio a little after its video
    data = bytearray(source)
    (entries,) = _pmt(source)
    (video_at, video, _), (audio_at, audio, _) = entries
    data[video_at : video_at + 5], data[audio_at : audio_at + 5] = (
        source[audio_at : audio_at + 5],
        source[video_at : video_at + 5],
    )
    delta = WRAP - 1_000 - before.video().base_decode_time  # video's first DTS: 1,000 ticks early
    for pid in (video, audio):
        _shift_timestamps(data, pid, delta)
    after = demux_all([bytes(data)])[0]
    assert [t.handler for t in after.init.tracks] == ["soun", "vide"]
    assert after.video().base_decode_time == WRAP - 1_000
    moved = after.audio().base_decode_time * 90_000 / 48_000 - after.video().base_decode_time
    assert abs(moved - offset) < 2  # the same to a sample, across the wrap


# ---- hostile input ------------------------------------------------------------------------


def _checked(data: bytes, state: TsState | None = None) -> bool:
    """Demux: BadMedia, or output the packager parses. True if it demuxed."""
    try:
        seg, _ = demux_segment(data, state)
    except BadMedia:
        return False
    init = parse_init(seg.init)
    parse_segment(seg.fragment, init)
    return True


@pytest.mark.parametrize("name", ["h264", "hevc"])
def test_truncation_at_every_packet_boundary_is_bad_media_or_valid(
    encoded: dict[str, Encoded], name: str
) -> None:
    _, state = demux_segment(encoded[name].segments[0], None)
    data = encoded[name].segments[1]
    worst, demuxed = 0.0, 0
    for cut in range(0, len(data), 188):
        start = time.perf_counter()
        demuxed += _checked(data[:cut], state)
        worst = max(worst, time.perf_counter() - start)
    assert demuxed  # most cuts still hold whole pictures
    assert worst < 0.5


def test_a_cut_inside_a_packet_is_bad_media(encoded: dict[str, Encoded]) -> None:
    data = encoded["h264"].segments[0]
    for cut in (1, 100, 188 * 7 + 5, len(data) - 1):
        with pytest.raises(BadMedia, match=r"truncated transport stream|not an MPEG"):
            demux_segment(data[:cut], None)


def test_random_bytes_are_bad_media() -> None:
    rng = random.Random(7)
    for k in range(300):
        n = rng.randrange(0, 40) * 188 + (rng.randrange(188) if k % 3 == 0 else 0)
        data = bytearray(rng.randbytes(n))
        if k % 2:
            data[::188] = b"\x47" * len(data[::188])  # past the sync check
            for pos in range(0, n - 187, 188):
                data[pos + 1] &= 0xE0  # PIDs 0 and 0x1000: PAT and PMT-looking packets
                data[pos + 2] = 0 if rng.random() < 0.5 else data[pos + 2]
        with pytest.raises(BadMedia):
            demux_segment(bytes(data), None)


@pytest.mark.parametrize("name", ["h264", "hevc", "adts_crc"])
def test_mutated_segments_are_bad_media_or_valid(encoded: dict[str, Encoded], name: str) -> None:
    rng = random.Random(11)
    source = encoded[name].segments[0]
    for _ in range(150):
        data = bytearray(source)
        for _ in range(rng.randrange(1, 24)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        _checked(bytes(data))


def test_pes_length_lie_is_bad_media(encoded: dict[str, Encoded]) -> None:
    source = encoded["h264"].segments[0]
    pid = _audio_pid(source)
    for delta in (+700, -300):
        data = bytearray(source)
        off = next(off for _, p, start, off in _packets(source) if p == pid and start)
        length = int.from_bytes(data[off + 4 : off + 6], "big")
        data[off + 4 : off + 6] = (length + delta).to_bytes(2, "big")
        with pytest.raises(BadMedia, match=r"PES packet declares|ADTS"):
            demux_segment(bytes(data), None)


def test_adts_frame_length_lie_is_bad_media(encoded: dict[str, Encoded]) -> None:
    source = encoded["h264"].segments[0]
    es = _audio_es(source)
    first = es[0]
    for lie in (_adts_length(source, first, 0) + 1, 0x1FFF, 3):
        data = bytearray(source)
        _set_adts_length(data, first, 0, lie)
        with pytest.raises(BadMedia, match="ADTS"):
            demux_segment(bytes(data), None)
    # The segment's last frame made 4 bytes shorter: what is left is too short for a header.
    last = es[-1]
    pos = 0
    while pos + _adts_length(source, last, pos) < len(last):
        pos += _adts_length(source, last, pos)
    data = bytearray(source)
    _set_adts_length(data, last, pos, _adts_length(source, last, pos) - 4)
    with pytest.raises(BadMedia, match="truncated ADTS header"):
        demux_segment(bytes(data), None)


def test_missing_pat_or_pmt_is_bad_media(encoded: dict[str, Encoded]) -> None:
    source = encoded["h264"].segments[0]
    pmt_pid = _pat_pmt_pid(source)
    for pid, what in ((0, "PAT"), (pmt_pid, "PMT")):
        data = bytearray(source)
        for pos, p, _, _ in _packets(source):
            if p == pid:
                data[pos + 1] |= 0x1F  # now a null packet (PID 0x1FFF)
                data[pos + 2] = 0xFF
        with pytest.raises(BadMedia, match=f"no complete {what}"):
            demux_segment(bytes(data), None)


def test_pes_without_its_start_code_is_bad_media(encoded: dict[str, Encoded]) -> None:
    source = encoded["h264"].segments[0]
    video = next(pid for pid, kind in _streams(source) if kind == 0x1B)
    data = bytearray(source)
    off = next(off for _, p, start, off in _packets(source) if p == video and start)
    data[off + 2] = 0x02
    with pytest.raises(BadMedia, match="start code"):
        demux_segment(bytes(data), None)


def test_psi_alone_holds_no_samples(encoded: dict[str, Encoded]) -> None:
    source = encoded["h264"].segments[0]
    pmt_pid = _pat_pmt_pid(source)
    psi = b"".join(
        source[pos : pos + 188] for pos, pid, _, _ in _packets(source) if pid in (0, pmt_pid)
    )
    with pytest.raises(BadMedia, match="no timestamped PES"):
        demux_segment(psi, None)


def test_only_transport_streams_are_sniffed_as_such(
    encoded: dict[str, Encoded], ffmpeg_exe: str, tmp_path: Path
) -> None:
    assert all(is_transport_stream(s) for e in encoded.values() for s in e.segments)
    assert is_transport_stream(memoryview(encoded["h264"].segments[0]))
    init, segment = ffmpeg_fmp4(ffmpeg_exe, encoded["h264"].paths[0], tmp_path / "f.mp4", "avc1")
    for data in (init.data, segment, b"", b"\x47" * 100, b"\x47" + bytes(187) + b"\x00"):
        assert not is_transport_stream(data)
    with pytest.raises(BadMedia, match="not an MPEG transport stream"):
        demux_segment(segment, None)


def test_a_large_segment_demuxes_in_tens_of_milliseconds(ffmpeg_exe: str, tmp_path: Path) -> None:
    """About 1 MB and 5,000+ packets (a 2 s 1080p segment's worth), made cheaply: noisy small
    frames at a high quality. A per-byte loop in Python would take several times the bound."""
    out = tmp_path / "big.ts"
    ffmpeg(
        ffmpeg_exe,
        *("-f", "lavfi", "-i", f"{SMALL_VIDEO},noise=alls=40:allf=t", "-t", "2"),
        *("-f", "lavfi", "-i", TONE, "-t", "2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", *AAC),
        *("-f", "mpegts", str(out)),
    )
    data = out.read_bytes()
    assert len(data) // 188 >= 5_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        demux_segment(data, None)
        best = min(best, time.perf_counter() - start)
    assert best < 0.25, f"{len(data) // 188} packets took {best * 1000:.0f} ms"


# ---- a small TS reader of the tests' own, to find what to break ---------------------------


def _packets(data: bytes) -> Iterator[tuple[int, int, bool, int]]:
    """(packet offset, PID, payload_unit_start_indicator, payload offset) per payload packet."""
    for pos in range(0, len(data), 188):
        pid = (data[pos + 1] & 0x1F) << 8 | data[pos + 2]
        control = data[pos + 3] >> 4 & 3
        if control & 1:
            payload = pos + 4 + (1 + data[pos + 4] if control & 2 else 0)
            yield pos, pid, bool(data[pos + 1] & 0x40), payload


def _pat_pmt_pid(data: bytes) -> int:
    off = next(off for _, pid, start, off in _packets(data) if pid == 0 and start)
    section = off + 1 + data[off]
    return (data[section + 10] & 0x1F) << 8 | data[section + 11]


def _pmt(data: bytes) -> list[list[tuple[int, int, int]]]:
    """Per PMT packet, (offset of stream_type, PID, stream_type) of each elementary stream."""
    pmt_pid = _pat_pmt_pid(data)
    tables: list[list[tuple[int, int, int]]] = []
    for _, pid, start, off in _packets(data):
        if pid != pmt_pid or not start:
            continue
        s = off + 1 + data[off]
        end = s + 3 + ((data[s + 1] & 0x0F) << 8 | data[s + 2]) - 4
        pos = s + 12 + ((data[s + 10] & 0x0F) << 8 | data[s + 11])
        entries: list[tuple[int, int, int]] = []
        while pos < end:
            entries.append((pos, (data[pos + 1] & 0x1F) << 8 | data[pos + 2], data[pos]))
            pos += 5 + ((data[pos + 3] & 0x0F) << 8 | data[pos + 4])
        tables.append(entries)
    return tables


def _streams(data: bytes) -> list[tuple[int, int]]:
    """(PID, stream_type) of the first PMT."""
    return [(pid, kind) for _, pid, kind in _pmt(data)[0]]


def _audio_pid(data: bytes) -> int:
    return next(pid for pid, kind in _streams(data) if kind == 0x0F)


def _audio_es(data: bytes) -> list[list[int]]:
    """Per audio PES packet, the file offset of each byte of its payload (past the header)."""
    pid = _audio_pid(data)
    pes: list[list[int]] = []
    for pos, p, start, off in _packets(data):
        if p != pid:
            continue
        if start:
            pes.append(list(range(off + 9 + data[off + 8], pos + 188)))
        elif pes:
            pes[-1].extend(range(off, pos + 188))
    return pes


def _adts_length(data: bytes | bytearray, es: list[int], pos: int) -> int:
    b3, b4, b5 = (data[es[pos + k]] for k in (3, 4, 5))
    return (b3 & 3) << 11 | b4 << 3 | b5 >> 5


def _set_adts_length(data: bytearray, es: list[int], pos: int, length: int) -> None:
    at = [es[pos + k] for k in (3, 4, 5)]
    data[at[0]] = (data[at[0]] & 0xFC) | length >> 11
    data[at[1]] = (length >> 3) & 0xFF
    data[at[2]] = (data[at[2]] & 0x1F) | (length & 7) << 5


def _timestamp(data: bytes | bytearray, p: int) -> int:
    return (
        (data[p] >> 1 & 7) << 30
        | data[p + 1] << 22
        | (data[p + 2] >> 1) << 15
        | data[p + 3] << 7
        | data[p + 4] >> 1
    )


def _shift_timestamps(data: bytearray, pid: int, delta: int) -> None:
    """Move every PTS and DTS of a PID by `delta` ticks, modulo 2**33 as the field wraps."""
    for _, p, start, off in _packets(bytes(data)):
        if p != pid or not start:
            continue
        flags = data[off + 7] >> 6
        for at in (off + 9, off + 14)[: {2: 1, 3: 2}.get(flags, 0)]:
            value = (_timestamp(data, at) + delta) % WRAP
            data[at] = (data[at] & 0xF0) | (value >> 29 & 0x0E) | 1
            data[at + 1] = value >> 22 & 0xFF
            data[at + 2] = (value >> 14 & 0xFE) | 1
            data[at + 3] = value >> 7 & 0xFF
            data[at + 4] = (value << 1 & 0xFE) | 1
