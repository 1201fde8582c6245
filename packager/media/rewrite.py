"""Move a media segment along its timeline: patch every tfdt by a per-track offset.

Used to replay a recorded ladder as a live stream whose timestamps keep growing.
"""

from __future__ import annotations

import struct

from packager.errors import BadMedia
from packager.media import boxes
from packager.media.nal import BitReader, parse_h264_sps, rbsp


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


# ---- a re-encoded GOP's decoder configuration beside the source's ------------------------------

_SAMPLE_ENTRY = 8 + 78  # a VisualSampleEntry's header and fields before its child boxes
_AVC = (b"avc1", b"avc3")


def _avc_config(stsd: bytes) -> tuple[int, int]:
    """(start, end) of the avcC box of an stsd holding one AVC sample entry."""
    if len(stsd) < 24 or stsd[4:8] != b"stsd" or stsd[20:24] not in _AVC:
        raise BadMedia("not an stsd of one AVC sample entry")
    entry_end = 16 + int.from_bytes(stsd[16:20], "big")
    for child in boxes.iter_boxes(stsd, 16 + _SAMPLE_ENTRY, min(entry_end, len(stsd))):
        if child.type == b"avcC":
            return child.start, child.end
    raise BadMedia("AVC sample entry without avcC")


def _parameter_sets(record: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    """(SPS NAL units, PPS NAL units, what follows them) of an AVCDecoderConfigurationRecord."""
    pos = 6
    lists: list[list[bytes]] = []
    count = record[5] & 0x1F
    for _ in range(2):
        nals = []
        for _ in range(count):
            size = int.from_bytes(record[pos : pos + 2], "big")
            nals.append(record[pos + 2 : pos + 2 + size])
            pos += 2 + size
        lists.append(nals)
        if len(lists) == 1:
            count = record[pos]
            pos += 1
    if pos > len(record):
        raise BadMedia("avcC: parameter sets overrun the record")
    return lists[0], lists[1], record[pos:]


def avc_parameter_set_ids(stsd: bytes) -> tuple[set[int], set[int]]:
    """The seq_parameter_set_ids and pic_parameter_set_ids an AVC sample entry's avcC holds."""
    start, end = _avc_config(stsd)
    sps, pps, _ = _parameter_sets(stsd[start + 8 : end])
    sps_ids = {parse_h264_sps(nal).sps_id for nal in sps}
    pps_ids = {BitReader(rbsp(nal[1:]), "PPS").ue() for nal in pps}
    return sps_ids, pps_ids


def merge_avc_configs(stsd: bytes, other: bytes) -> bytes:
    """`stsd` whose avcC also carries `other`'s parameter sets (their ids must differ).

    A re-encoded GOP gets new SPS/PPS. Players given a new init at a discontinuity use its own;
    but a decoder that keeps the first init's configuration (ffmpeg's HLS demuxer does) must
    find every set the clip's slices refer to, whichever init it kept.
    """
    start, end = _avc_config(stsd)
    o_start, o_end = _avc_config(other)
    record = stsd[start + 8 : end]
    sps, pps, tail = _parameter_sets(record)
    o_sps, o_pps, _ = _parameter_sets(other[o_start + 8 : o_end])
    all_sps, all_pps = [*sps, *o_sps], [*pps, *o_pps]
    if len(all_sps) > 31 or len(all_pps) > 255:
        raise BadMedia("avcC: too many parameter sets to merge")
    body = bytearray(record[:5])
    body.append(0xE0 | len(all_sps))
    for nal in all_sps:
        body += len(nal).to_bytes(2, "big") + nal
    body.append(len(all_pps))
    for nal in all_pps:
        body += len(nal).to_bytes(2, "big") + nal
    body += tail
    avcc = (8 + len(body)).to_bytes(4, "big") + b"avcC" + bytes(body)
    grow = len(avcc) - (end - start)
    entry_size = int.from_bytes(stsd[16:20], "big") + grow
    out = bytearray(stsd[:start] + avcc + stsd[end:])
    out[0:4] = (len(out)).to_bytes(4, "big")
    out[16:20] = entry_size.to_bytes(4, "big")
    return bytes(out)
