from __future__ import annotations

import pytest

from packager.errors import BadMedia
from packager.media.codecs import avc_codec, hevc_codec, mp4a_codec


def test_avc_codec_string_is_profile_constraints_level() -> None:
    assert avc_codec("avc1", bytes([1, 0x64, 0x00, 0x1F, 0xFF])) == "avc1.64001f"
    assert avc_codec("avc3", bytes([1, 0x42, 0xC0, 0x1E])) == "avc3.42c01e"


def test_hevc_codec_string_follows_iso_14496_15_annex_e() -> None:
    # Main profile, Main tier, level 3.1 (93), compat flag 2 set (bit-reversed -> 0x6? per spec:
    # flags 0x60000000 reversed is 0x6), constraint byte 0xB0: the common "hvc1.1.6.L93.B0".
    record = bytes([1, 0x01, 0x60, 0x00, 0x00, 0x00, 0xB0, 0, 0, 0, 0, 0, 93])
    assert hevc_codec("hvc1", record) == "hvc1.1.6.L93.B0"
    high_tier = bytes([1, 0x22, 0x20, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120])
    assert hevc_codec("hev1", high_tier) == "hev1.2.4.H120.90"


def _esds(asc: bytes, oti: int = 0x40) -> bytes:
    dsi = bytes([0x05, len(asc)]) + asc
    dcd_body = bytes([oti, 0x15]) + bytes(11) + dsi
    dcd = bytes([0x04, len(dcd_body)]) + dcd_body
    es_body = b"\x00\x01\x00" + dcd
    return b"\x00\x00\x00\x00" + bytes([0x03, len(es_body)]) + es_body


def test_mp4a_codec_reads_audio_object_type() -> None:
    assert mp4a_codec(_esds(bytes([0x11, 0x90]))) == "mp4a.40.2"  # AAC-LC
    assert mp4a_codec(_esds(bytes([0x2B, 0x92, 0x08]))) == "mp4a.40.5"  # HE-AAC (SBR)
    # Escape value 31: the object type continues in the next 6 bits (here 32 + 10 = 42).
    assert mp4a_codec(_esds(bytes([0xF9, 0x40]))) == "mp4a.40.42"
    assert mp4a_codec(_esds(b"", oti=0x6B)) == "mp4a.6b"  # MP3


def test_mp4a_codec_refuses_truncated_descriptors() -> None:
    with pytest.raises(BadMedia):
        mp4a_codec(_esds(bytes([0x11, 0x90]))[:12])
