"""Move a media segment along its timeline: patch every tfdt by a per-track offset.

Used to replay a recorded ladder as a live stream whose timestamps keep growing.
"""

from __future__ import annotations

import struct

from packager.errors import BadMedia
from packager.media import boxes


def shift_decode_times(data: bytes, shift: dict[int, int]) -> bytes:
    """A copy of the segment with `shift[track_id]` added to each traf's baseMediaDecodeTime."""
    out = bytearray(data)
    for moof in boxes.iter_boxes(data):
        if moof.type != b"moof":
            continue
        for traf in boxes.children(data, moof):
            if traf.type != b"traf":
                continue
            tfhd = boxes.require(data, traf, b"tfhd")
            if tfhd.end - tfhd.payload_start < 8:
                raise BadMedia("truncated tfhd box")
            (track_id,) = struct.unpack_from(">I", data, tfhd.payload_start + 4)
            tfdt = boxes.find(data, traf, b"tfdt")
            if tfdt is None or track_id not in shift:
                continue
            p = tfdt.payload_start
            width = {0: 4, 1: 8}.get(data[p]) if tfdt.end > p else None
            if width is None or tfdt.end - p < 4 + width:
                raise BadMedia("tfdt box truncated or of unknown version")
            dts = int.from_bytes(data[p + 4 : p + 4 + width], "big") + shift[track_id]
            if not 0 <= dts < 2 ** (8 * width):
                raise BadMedia(f"tfdt version {data[p]} cannot hold the shifted time")
            out[p + 4 : p + 4 + width] = dts.to_bytes(width, "big")
    return bytes(out)
