"""NAL unit reading, judged by ffmpeg: its trace_headers filter reads the same bitstreams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from packager.errors import BadMedia
from packager.media import boxes, nal
from packager.media.fragment import parse_segment
from tests.media.real_media import (
    Fields,
    ffmpeg,
    ffmpeg_fmp4,
    frame_hashes,
    samples,
    trace_headers,
    values,
    video_size,
)

# name -> (frame size, encoder arguments): the SPS branches a real encoder takes.
H264_VARIANTS = {
    "high": ("320x180", ["-preset", "veryfast"]),  # 180 = 12 rows of macroblocks, cropped
    "baseline_odd_size": ("318x178", ["-profile:v", "baseline"]),  # cropped on both axes
    # High 4:2:2 and 4:4:4 crop in other chroma units (H.264 Table 6-1); High 10's bit depth.
    "high422_odd_size": ("318x178", ["-pix_fmt", "yuv422p"]),
    "high444_odd_size": ("318x178", ["-pix_fmt", "yuv444p"]),
    "high10": ("320x180", ["-pix_fmt", "yuv420p10le"]),
    "interlaced": ("320x180", ["-flags", "+ildct+ilme", "-x264-params", "interlaced=1"]),
}
HEVC_VARIANTS = {
    "main_open_gop": ("320x180", ["-g", "10"]),  # x265 defaults to open GOP: CRA + RASL
    "main10": ("318x178", ["-pix_fmt", "yuv420p10le"]),
    # Temporal sub-layers: the SPS's profile_tier_level grows per-sub-layer flags (§7.3.3).
    "sub_layers": ("320x180", ["-x265-params", "log-level=error:temporal-layers=3"]),
}


@dataclass(frozen=True)
class Stream:
    path: Path  # a raw Annex B elementary stream as the encoder wrote it
    size: tuple[int, int]  # what ffmpeg reports decoding it
    extradata: Fields
    packets: list[Fields]


def _encode(exe: str, out: Path, size: str, codec: str, args: list[str]) -> Stream:
    fmt = "h264" if codec == "libx264" else "hevc"
    extra = ["-preset", "ultrafast"] if fmt == "hevc" else []
    if fmt == "hevc" and "-x265-params" not in args:
        extra += ["-x265-params", "log-level=error"]
    ffmpeg(
        exe,
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", "1"),
        *("-c:v", codec, *extra, *args, "-f", fmt, str(out)),
    )
    extradata, packets = trace_headers(exe, out)
    return Stream(out, video_size(exe, out), extradata, packets)


@pytest.fixture(scope="session")
def h264(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stream]:
    tmp = tmp_path_factory.mktemp("nal_h264")
    return {
        name: _encode(ffmpeg_exe, tmp / f"{name}.h264", size, "libx264", args)
        for name, (size, args) in H264_VARIANTS.items()
    }


@pytest.fixture(scope="session")
def hevc(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stream]:
    tmp = tmp_path_factory.mktemp("nal_hevc")
    return {
        name: _encode(ffmpeg_exe, tmp / f"{name}.hevc", size, "libx265", args)
        for name, (size, args) in HEVC_VARIANTS.items()
    }


def _traced_types(stream: Stream) -> list[int]:
    return [v for packet in stream.packets for v in values(packet, "nal_unit_type")]


@pytest.mark.parametrize("name", H264_VARIANTS)
def test_h264_annexb_splits_into_the_nal_units_ffmpeg_reads(
    h264: dict[str, Stream], name: str
) -> None:
    stream = h264[name]
    units = nal.split_annexb(stream.path.read_bytes())
    assert [nal.h264_type(u) for u in units] == _traced_types(stream)
    assert all(u and u[-1] != 0 for u in units)  # start codes and trailing zeros left out


@pytest.mark.parametrize("name", HEVC_VARIANTS)
def test_hevc_annexb_splits_into_the_nal_units_ffmpeg_reads(
    hevc: dict[str, Stream], name: str
) -> None:
    stream = hevc[name]
    units = nal.split_annexb(stream.path.read_bytes())
    assert [nal.hevc_type(u) for u in units] == _traced_types(stream)


@pytest.mark.parametrize("name", H264_VARIANTS)
def test_h264_sps_gives_the_profile_level_and_size_ffmpeg_reports(
    h264: dict[str, Stream], name: str
) -> None:
    stream = h264[name]
    sps_unit = next(
        u for u in nal.split_annexb(stream.path.read_bytes()) if nal.h264_type(u) == nal.H264_SPS
    )
    sps = nal.parse_h264_sps(sps_unit)
    traced = stream.extradata
    flags = [values(traced, f"constraint_set{k}_flag")[0] for k in range(6)]
    assert sps.profile_idc == values(traced, "profile_idc")[0]
    assert sps.constraint_flags == sum(f << (7 - k) for k, f in enumerate(flags))
    assert sps.level_idc == values(traced, "level_idc")[0]
    assert sps.chroma_format_idc == (values(traced, "chroma_format_idc") or [1])[0]
    assert (sps.width, sps.height) == stream.size
    if name == "baseline_odd_size":
        assert sps.profile_idc == 66
    assert sps.bit_depth_luma == 8 + (values(traced, "bit_depth_luma_minus8") or [0])[0]
    if name == "high10":
        assert (sps.profile_idc, sps.bit_depth_luma) == (110, 10)
    if name.startswith("high4"):
        assert sps.chroma_format_idc == (2 if "422" in name else 3)
    if name == "interlaced":
        assert values(traced, "frame_mbs_only_flag") == [0]


@pytest.mark.parametrize("name", HEVC_VARIANTS)
def test_hevc_sps_gives_profile_tier_level_and_size_ffmpeg_reports(
    hevc: dict[str, Stream], name: str
) -> None:
    stream = hevc[name]
    sps_unit = next(
        u for u in nal.split_annexb(stream.path.read_bytes()) if nal.hevc_type(u) == nal.HEVC_SPS
    )
    sps = nal.parse_hevc_sps(sps_unit)
    # The extradata's VPS has a profile_tier_level of its own: read the fields from the SPS's
    # first syntax element on.
    traced = stream.extradata[
        max(i for i, (n, _) in enumerate(stream.extradata) if n == "sps_video_parameter_set_id") :
    ]
    compat = [values(traced, f"general_profile_compatibility_flag[{j}]")[0] for j in range(32)]
    assert sps.profile_space == values(traced, "general_profile_space")[0]
    assert sps.tier == values(traced, "general_tier_flag")[0]
    assert sps.profile_idc == values(traced, "general_profile_idc")[0]
    assert sps.compatibility_flags == sum(f << (31 - j) for j, f in enumerate(compat))
    assert sps.constraint_flags >> 44 == (
        values(traced, "general_progressive_source_flag")[0] << 3
        | values(traced, "general_interlaced_source_flag")[0] << 2
        | values(traced, "general_non_packed_constraint_flag")[0] << 1
        | values(traced, "general_frame_only_constraint_flag")[0]
    )
    assert sps.level_idc == values(traced, "general_level_idc")[0]
    assert sps.chroma_format_idc == values(traced, "chroma_format_idc")[0]
    assert sps.bit_depth_luma == 8 + values(traced, "bit_depth_luma_minus8")[0]
    assert sps.max_sub_layers == 1 + values(traced, "sps_max_sub_layers_minus1")[0]
    assert (sps.width, sps.height) == stream.size
    if name == "main10":
        assert (sps.profile_idc, sps.bit_depth_luma) == (2, 10)
    if name == "sub_layers":
        assert sps.max_sub_layers == 3


def test_nal_types_of_mp4_samples_match_ffmpeg_and_find_rasl_after_cra(
    hevc: dict[str, Stream], ffmpeg_exe: str, tmp_path: Path
) -> None:
    stream = hevc["main_open_gop"]
    mp4 = tmp_path / "open_gop.mp4"
    init, segment = ffmpeg_fmp4(ffmpeg_exe, stream.path, mp4, "hvc1")
    _, traced = trace_headers(ffmpeg_exe, mp4)
    media = parse_segment(segment, init)
    types = [nal.nal_types(s, 4, hevc=True) for s in samples(segment, media, 1)]
    assert types == [values(packet, "nal_unit_type") for packet in traced]
    rasl = [nal.hevc_is_leading_skipped(t) for t in types]
    irap = [nal.hevc_is_irap(t) for t in types]
    track = media.tracks[0]
    assert irap == [bool(s) for s in track.sync]  # ffmpeg marks IRAP pictures as sync samples
    cra = [k for k, t in enumerate(types) if 21 in t]
    assert cra and any(rasl), "x265's open GOP should give CRA pictures led by RASL ones"
    for k in (k for k, r in enumerate(rasl) if r):
        assert any(c < k for c in cra)  # a RASL picture leads a CRA before it in decode order


def test_rasl_pictures_are_what_a_decoder_starting_at_the_cra_drops(
    hevc: dict[str, Stream], ffmpeg_exe: str, tmp_path: Path
) -> None:
    """Decoding from the second keyframe (a CRA), ffmpeg outputs every picture but the RASL
    ones that lead that CRA: exactly those `hevc_is_leading_skipped` names."""
    stream = hevc["main_open_gop"]
    init, segment = ffmpeg_fmp4(ffmpeg_exe, stream.path, tmp_path / "g.mp4", "hvc1")
    moofs = [b for b in boxes.iter_boxes(segment) if b.type == b"moof"]
    later = segment[moofs[1].start :]  # frag_keyframe: each moof opens at a keyframe
    media = parse_segment(later, init)
    types = [nal.nal_types(s, 4, hevc=True) for s in samples(later, media, 1)]
    assert 21 in types[0]  # the decoder starts at a CRA
    next_irap = next(k for k, t in enumerate(types) if k and nal.hevc_is_irap(t))
    led = sum(nal.hevc_is_leading_skipped(t) for t in types[:next_irap])
    assert led
    decoded = frame_hashes(ffmpeg_exe, init.data + later, "0:v")
    assert len(decoded) == len(types) - led


def test_nal_types_reads_every_length_size_and_refuses_lies(h264: dict[str, Stream]) -> None:
    units = nal.split_annexb(h264["high"].path.read_bytes())[:6]
    expected = [nal.h264_type(u) for u in units]
    small = [u[:200] for u in units]  # fits a 1-byte length
    for size, chosen in ((4, units), (2, units), (1, small)):
        sample = b"".join(len(u).to_bytes(size, "big") + u for u in chosen)
        assert nal.nal_types(sample, size, hevc=False) == expected
        with pytest.raises(BadMedia):
            nal.nal_types(sample[:-1], size, hevc=False)  # last unit overruns the sample
        if size > 1:
            with pytest.raises(BadMedia):
                nal.nal_types(sample + b"\x00" * (size - 1), size, hevc=False)  # partial length
    with pytest.raises(BadMedia):
        nal.nal_types(b"\x00\x00\x00\x00", 4, hevc=False)  # an empty NAL unit
    with pytest.raises(BadMedia):
        nal.nal_types(b"\x00\x00\x01\x65", 3, hevc=False)  # lengthSizeMinusOne 2 is illegal


def test_rbsp_removes_emulation_prevention_bytes() -> None:
    # H.264 §7.4.1: in 0x000003 the 0x03 is an escape and goes; a lone 0x0003 stays.
    assert nal.rbsp(b"\x67\x00\x00\x03\x01\x42\x00\x00\x03\x00") == (
        b"\x67\x00\x00\x01\x42\x00\x00\x00"
    )
    assert nal.rbsp(b"\x67\x00\x03\x00") == b"\x67\x00\x03\x00"


def test_exp_golomb_codes_follow_table_9_2() -> None:
    # ue(v): 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3, 0001000 -> 7; se(v) maps 1, 2, 3, 4 to
    # 1, -1, 2, -2 (§9.1.1). Bits: 1 010 011 00100 0001000 | 010 011 00100 00101
    bits = "10100110010000010000100110010000101"
    data = int(bits, 2).to_bytes((len(bits) + 7) // 8, "big")
    r = nal.BitReader(data, "test")
    r.skip((8 - len(bits) % 8) % 8)  # the leading zero pad of to_bytes
    assert [r.ue() for _ in range(5)] == [0, 1, 2, 3, 7]
    assert [r.se() for _ in range(4)] == [1, -1, 2, -2]
    with pytest.raises(BadMedia, match="truncated"):
        r.u(1)


def test_truncated_parameter_sets_are_bad_media(
    h264: dict[str, Stream], hevc: dict[str, Stream]
) -> None:
    sps264 = next(
        u
        for u in nal.split_annexb(h264["high"].path.read_bytes())
        if nal.h264_type(u) == nal.H264_SPS
    )
    sps265 = next(
        u
        for u in nal.split_annexb(hevc["main10"].path.read_bytes())
        if nal.hevc_type(u) == nal.HEVC_SPS
    )
    # Cut anywhere, an SPS parses (the fields we read may all be before the cut) or is
    # BadMedia; cut inside the fields before the picture size, it is always BadMedia.
    for unit, parse, always_short in (
        (sps264, nal.parse_h264_sps, 6),
        (sps265, nal.parse_hevc_sps, 17),
    ):
        for cut in range(len(unit)):
            try:
                parse(unit[:cut])
            except BadMedia:
                continue
            assert cut >= always_short
    with pytest.raises(BadMedia, match=r"not an H\.264 SPS"):
        nal.parse_h264_sps(b"\x68\x00")
    with pytest.raises(BadMedia):
        nal.parse_h264_sps(b"\x67" + b"\x00" * 12)  # exp-Golomb code of 96 zero bits
