from __future__ import annotations

import struct

import pytest

from packager.errors import BadMedia
from packager.media.boxes import box32, iter_boxes


def box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def test_walks_32_bit_64_bit_and_to_end_boxes() -> None:
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 3) + b"abc"
    to_end = struct.pack(">I4s", 0, b"free") + b"rest"
    data = box(b"ftyp", b"isom") + large + to_end
    found = [(b.type, b.start, b.header_size, b.end) for b in iter_boxes(data)]
    assert found == [(b"ftyp", 0, 8, 12), (b"mdat", 12, 16, 31), (b"free", 31, 8, len(data))]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00\x00", "truncated box header"),
        (struct.pack(">I4s", 4, b"moov"), "< its header"),
        (struct.pack(">I4s", 100, b"moov") + b"x" * 10, "only 18 present"),
        (struct.pack(">I4s", 1, b"mdat") + b"\x00" * 4, "truncated 64-bit"),
        (struct.pack(">I4sQ", 1, b"mdat", 2**63), "only 16 present"),
    ],
)
def test_sizes_that_lie_are_bad_media(data: bytes, message: str) -> None:
    with pytest.raises(BadMedia, match=message):
        list(iter_boxes(data))


def test_box32_reheads_a_64_bit_leaf_for_pymp4() -> None:
    large = struct.pack(">I4sQ", 1, b"tfdt", 16 + 8) + b"\x00" * 8
    (b,) = iter_boxes(large)
    assert box32(large, b) == box(b"tfdt", b"\x00" * 8)
