"""RFC 6381 `codecs` strings from decoder configuration records.

pymp4 reads avcC but not hvcC or esds, so these are small readers of our own over the
record bytes (ISO/IEC 14496-15 for avcC/hvcC, ISO/IEC 14496-1 §7.2.6 for esds).
"""

from __future__ import annotations

from packager.errors import BadMedia


def avc_codec(fourcc: str, avcc: bytes | memoryview) -> str:
    """`avc1.PPCCLL`: profile_idc, constraint flags, level_idc from AVCDecoderConfigurationRecord."""
    if len(avcc) < 4 or avcc[0] != 1:
        raise BadMedia("avcC: not an AVCDecoderConfigurationRecord version 1")
    return f"{fourcc}.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def hevc_codec(fourcc: str, hvcc: bytes | memoryview) -> str:
    """`hvc1.<space><profile>.<compat>.<tier><level>.<constraints>` (ISO/IEC 14496-15 Annex E)."""
    if len(hvcc) < 13 or hvcc[0] != 1:
        raise BadMedia("hvcC: not an HEVCDecoderConfigurationRecord version 1")
    b1 = hvcc[1]
    space = ("", "A", "B", "C")[b1 >> 6]
    tier = "H" if b1 & 0x20 else "L"
    profile = b1 & 0x1F
    compat = int.from_bytes(hvcc[2:6], "big")
    compat_rev = int(f"{compat:032b}"[::-1], 2)  # the spec writes the flags bit-reversed
    constraints = bytes(hvcc[6:12])
    level = hvcc[12]
    parts = [fourcc, f"{space}{profile}", f"{compat_rev:x}", f"{tier}{level}"]
    trimmed = constraints.rstrip(b"\x00")
    parts.extend(f"{b:X}" for b in trimmed)  # as Apple and ffmpeg write them
    return ".".join(parts)


def _descriptor(buf: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """Read an MPEG-4 descriptor header: (tag, payload start, payload end)."""
    if pos >= len(buf):
        raise BadMedia("esds: truncated descriptor")
    tag = buf[pos]
    pos += 1
    size = 0
    for _ in range(4):  # expandable size: up to four 7-bit groups
        if pos >= len(buf):
            raise BadMedia("esds: truncated descriptor size")
        b = buf[pos]
        pos += 1
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if pos + size > len(buf):
        raise BadMedia("esds: descriptor overruns its box")
    return tag, pos, pos + size


def mp4a_codec(esds_payload: bytes | memoryview) -> str:
    """`mp4a.<objectTypeIndication hex>.<audioObjectType>` from the esds box payload."""
    buf = esds_payload[4:]  # skip full-box version/flags
    tag, pos, end = _descriptor(buf, 0)
    if tag != 0x03:
        raise BadMedia("esds: no ES_Descriptor")
    pos += 2  # ES_ID
    if pos >= end:
        raise BadMedia("esds: truncated ES_Descriptor")
    flags = buf[pos]
    pos += 1
    if flags & 0x80:
        pos += 2  # dependsOn_ES_ID
    if flags & 0x40:
        if pos >= end:
            raise BadMedia("esds: truncated URL")
        pos += 1 + buf[pos]
    if flags & 0x20:
        pos += 2  # OCR_ES_Id
    tag, pos, dend = _descriptor(buf, pos)
    if tag != 0x04 or dend - pos < 13:
        raise BadMedia("esds: no DecoderConfigDescriptor")
    oti = buf[pos]
    pos += 13
    if oti != 0x40 or pos >= dend:  # only MPEG-4 Audio carries an AudioSpecificConfig
        return f"mp4a.{oti:02x}"
    tag, pos, aend = _descriptor(buf, pos)
    if tag != 0x05 or aend <= pos:
        return f"mp4a.{oti:02x}"
    aot = buf[pos] >> 3
    if aot == 31:  # escape: 6 more bits follow
        if aend - pos < 2:
            raise BadMedia("esds: truncated AudioSpecificConfig")
        aot = 32 + (((buf[pos] & 0x07) << 3) | (buf[pos + 1] >> 5))
    return f"mp4a.40.{aot}"
