"""NAL units of H.264 (ITU-T H.264) and HEVC (ITU-T H.265), sans-IO.

What the TS demuxer and open-GOP handling need and no more: Annex B byte-stream splitting
(§B.2 of both), emulation-prevention removal, an exp-Golomb bit reader, the SPS fields that
name a codec (profile, level, chroma, bit depth) and give a picture's size, and the NAL types
of a length-prefixed sample as ISO/IEC 14496-15 stores them in MP4.

Every read is bounded by the real bytes: a short SPS or a lying NAL length is `BadMedia`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packager.errors import BadMedia

# H.264 nal_unit_type (Table 7-1).
H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
# HEVC nal_unit_type (Table 7-1).
HEVC_RASL_N = 8
HEVC_RASL_R = 9
HEVC_IRAP = range(16, 24)  # BLA, IDR, CRA and the reserved IRAP types 22-23
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34
HEVC_AUD = 35

_START = b"\x00\x00\x01"
_EPB = b"\x00\x00\x03"
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (H.264 §7.3.2.1.1).
_H264_HIGH = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
# (SubWidthC, SubHeightC) by chroma_format_idc (H.264 Table 6-1, HEVC Table 6-1).
_SUBSAMPLING = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}
MAX_DIMENSION = 65535  # a sample entry stores width and height in 16 bits


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, start codes and trailing zeros removed.

    A NAL unit never ends in 0x00 (it ends in rbsp_stop_one_bit or cabac_zero_word's 0x03),
    so trailing zeros belong to the next start code or to trailing_zero_8bits (§B.2).
    Bytes before the first start code belong to no NAL unit and are ignored.
    """
    out: list[bytes] = []
    find = data.find
    pos = find(_START)
    while pos != -1:
        start = pos + 3
        nxt = find(_START, start)
        end = len(data) if nxt == -1 else nxt
        while end > start and data[end - 1] == 0:  # at most a few bytes
            end -= 1
        if end > start:
            out.append(data[start:end])
        pos = nxt
    return out


def h264_type(nal: bytes | memoryview) -> int:
    return nal[0] & 0x1F


def hevc_type(nal: bytes | memoryview) -> int:
    return (nal[0] >> 1) & 0x3F


def nal_types(sample: bytes | memoryview, length_size: int, hevc: bool) -> list[int]:
    """nal_unit_type of each NAL unit of a length-prefixed sample (ISO/IEC 14496-15 §4.3.2)."""
    if length_size not in (1, 2, 4):
        raise BadMedia(f"NAL length size {length_size} is not 1, 2 or 4")
    out: list[int] = []
    pos, end = 0, len(sample)
    while pos < end:
        if end - pos < length_size:
            raise BadMedia(f"sample ends inside a NAL unit length at byte {pos}")
        size = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or size > end - pos:
            raise BadMedia(f"NAL unit of {size} bytes at byte {pos}: {end - pos} left in sample")
        header = sample[pos]
        out.append((header >> 1) & 0x3F if hevc else header & 0x1F)
        pos += size
    return out


def hevc_is_leading_skipped(types: Sequence[int]) -> bool:
    """Whether the picture is RASL (HEVC §8.1.3: not output, and undecodable, when decoding
    starts at the CRA it leads). A picture's slices share one type: the first VCL unit tells."""
    vcl = next((t for t in types if t < 32), None)
    return vcl in (HEVC_RASL_N, HEVC_RASL_R)


def hevc_is_irap(types: Sequence[int]) -> bool:
    """Whether the picture is IRAP (types 16-23): decoding can start here (§3.73)."""
    return any(t in HEVC_IRAP for t in types)


def h264_is_idr(types: Sequence[int]) -> bool:
    return H264_IDR in types


def rbsp(nal: bytes) -> bytes:
    """The NAL unit without its emulation_prevention_three_bytes (H.264 §7.4.1, HEVC §7.4.2)."""
    pos = nal.find(_EPB)
    if pos == -1:
        return nal
    parts: list[bytes] = []
    start = 0
    while pos != -1:
        parts.append(nal[start : pos + 2])
        start = pos + 3
        pos = nal.find(_EPB, start)
    parts.append(nal[start:])
    return b"".join(parts)


class BitReader:
    """MSB-first bits of an RBSP with the exp-Golomb codes of §9.1; reading past the end is
    BadMedia. The whole RBSP is one Python int: parameter sets are tens of bytes."""

    __slots__ = ("_bits", "_pos", "_value", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = 8 * len(data)
        self._pos = 0
        self.what = what

    def u(self, n: int) -> int:
        if self._pos + n > self._bits:
            raise BadMedia(f"{self.what}: truncated at bit {self._pos}")
        self._pos += n
        return (self._value >> (self._bits - self._pos)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.u(n)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:  # §9.1: values fit in 32 bits; more zeros is garbage
                raise BadMedia(f"{self.what}: exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


@dataclass(frozen=True, slots=True)
class H264Sps:
    """The fields of a seq_parameter_set_rbsp (H.264 §7.3.2.1.1) an avcC and a player need."""

    sps_id: int
    profile_idc: int
    constraint_flags: int  # constraint_set0..5_flag + reserved_zero_2bits: avcC's second byte
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int  # cropped, in luma samples
    height: int


def _h264_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def parse_h264_sps(nal: bytes) -> H264Sps:
    """Parse an H.264 SPS NAL unit (header byte included)."""
    if not nal or h264_type(nal) != H264_SPS:
        raise BadMedia("not an H.264 SPS NAL unit")
    r = BitReader(rbsp(nal)[1:], "H.264 SPS")
    profile, constraints, level = r.u(8), r.u(8), r.u(8)
    sps_id = r.ue()
    if sps_id > 31:
        raise BadMedia(f"H.264 SPS: seq_parameter_set_id {sps_id} > 31")
    chroma, separate_planes, depth_luma, depth_chroma = 1, 0, 8, 8
    if profile in _H264_HIGH:
        chroma = r.ue()
        if chroma > 3:
            raise BadMedia(f"H.264 SPS: chroma_format_idc {chroma}")
        if chroma == 3:
            separate_planes = r.u(1)
        depth_luma, depth_chroma = 8 + r.ue(), 8 + r.ue()
        if depth_luma > 14 or depth_chroma > 14:
            raise BadMedia("H.264 SPS: bit depth above 14")
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.u(1):
                    _h264_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.skip(1)  # delta_pic_order_always_zero_flag
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > 255:
            raise BadMedia("H.264 SPS: num_ref_frames_in_pic_order_cnt_cycle > 255")
        for _ in range(cycle):
            r.se()
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)
    # Cropping units (§7.4.2.1.1, frame_crop_*_offset): ChromaArrayType 0 counts luma samples.
    if separate_planes or chroma == 0:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        sub_w, sub_h = _SUBSAMPLING[chroma]
        unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = 16 * width_mbs - unit_x * (crop[0] + crop[1])
    height = 16 * height_units * (2 - frame_mbs_only) - unit_y * (crop[2] + crop[3])
    return H264Sps(
        sps_id,
        profile,
        constraints,
        level,
        chroma,
        depth_luma,
        depth_chroma,
        *_checked_size("H.264 SPS", width, height),
    )


@dataclass(frozen=True, slots=True)
class HevcSps:
    """The fields of an HEVC seq_parameter_set_rbsp (§7.3.2.2) an hvcC and a player need."""

    vps_id: int
    sps_id: int
    max_sub_layers: int
    temporal_id_nesting: int
    profile_space: int
    tier: int
    profile_idc: int
    compatibility_flags: int  # general_profile_compatibility_flag[0..31], flag 0 the MSB
    constraint_flags: int  # the 48 bits from general_progressive_source_flag on
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int  # inside the conformance window, in luma samples
    height: int


def parse_hevc_sps(nal: bytes) -> HevcSps:
    """Parse an HEVC SPS NAL unit (2-byte header included)."""
    if len(nal) < 2 or hevc_type(nal) != HEVC_SPS:
        raise BadMedia("not an HEVC SPS NAL unit")
    r = BitReader(rbsp(nal)[2:], "HEVC SPS")
    vps_id = r.u(4)
    sub_layers = r.u(3) + 1
    if sub_layers > 7:
        raise BadMedia("HEVC SPS: sps_max_sub_layers_minus1 is 7")
    nesting = r.u(1)
    # profile_tier_level(1, sps_max_sub_layers_minus1), §7.3.3
    space, tier, profile = r.u(2), r.u(1), r.u(5)
    compat = r.u(32)
    constraints = r.u(48)
    level = r.u(8)
    present = [(r.u(1), r.u(1)) for _ in range(sub_layers - 1)]
    if sub_layers > 1:
        r.skip(2 * (8 - (sub_layers - 1)))  # reserved_zero_2bits
    for profile_present, level_present in present:
        r.skip(88 * profile_present + 8 * level_present)
    sps_id = r.ue()
    if sps_id > 15:
        raise BadMedia(f"HEVC SPS: sps_seq_parameter_set_id {sps_id} > 15")
    chroma = r.ue()
    if chroma > 3:
        raise BadMedia(f"HEVC SPS: chroma_format_idc {chroma}")
    separate_planes = r.u(1) if chroma == 3 else 0
    width, height = r.ue(), r.ue()
    window = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)
    depth_luma, depth_chroma = 8 + r.ue(), 8 + r.ue()
    if depth_luma > 16 or depth_chroma > 16:
        raise BadMedia("HEVC SPS: bit depth above 16")
    # conf_win_*_offset are in chroma units (§7.4.3.2.1); ChromaArrayType 0 counts luma.
    sub_w, sub_h = (1, 1) if separate_planes else _SUBSAMPLING[chroma]
    width -= sub_w * (window[0] + window[1])
    height -= sub_h * (window[2] + window[3])
    return HevcSps(
        vps_id,
        sps_id,
        sub_layers,
        nesting,
        space,
        tier,
        profile,
        compat,
        constraints,
        level,
        chroma,
        depth_luma,
        depth_chroma,
        *_checked_size("HEVC SPS", width, height),
    )


def pps_id(nal: bytes, hevc: bool) -> int:
    """pic_parameter_set_id, the first field of a PPS (H.264 §7.3.2.2, HEVC §7.3.2.3)."""
    header = 2 if hevc else 1
    if len(nal) <= header:
        raise BadMedia("truncated PPS")
    value = BitReader(rbsp(nal)[header:], "PPS").ue()
    if value > (63 if hevc else 255):
        raise BadMedia(f"PPS id {value} out of range")
    return value


def vps_id(nal: bytes) -> int:
    """vps_video_parameter_set_id, the first 4 bits of an HEVC VPS (§7.3.2.1)."""
    if len(nal) < 3:
        raise BadMedia("truncated VPS")
    return nal[2] >> 4


def _checked_size(what: str, width: int, height: int) -> tuple[int, int]:
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise BadMedia(f"{what}: picture size {width}x{height} out of range")
    return width, height
