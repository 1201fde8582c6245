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
            version = data[p]
            if version == 1:
                (dts,) = struct.unpack_from(">Q", data, p + 4)
                struct.pack_into(">Q", out, p + 4, dts + shift[track_id])
            else:
                (dts,) = struct.unpack_from(">I", data, p + 4)
                if dts + shift[track_id] >= 2**32:
                    raise BadMedia("tfdt version 0 cannot hold the shifted time")
                struct.pack_into(">I", out, p + 4, dts + shift[track_id])
    return bytes(out)
