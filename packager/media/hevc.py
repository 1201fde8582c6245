"""HEVC sample entries: `hev1` served as `hvc1` where the parameter sets allow it, sans-IO.

ISO/IEC 14496-15 §8.4.1.1.1 gives HEVC two sample entries. `hev1` lets the parameter sets
(VPS, SPS, PPS) live in the samples, the hvcC arrays empty or incomplete; `hvc1` puts every
one in hvcC (array_completeness 1). Apple's HLS takes only `hvc1` in fMP4 (Safari and iOS
refuse `hev1`), so a `hev1` rendition is rewritten: its init gets an hvcC holding every set the
first segment carries in-band (and any the source hvcC already had), and the fourcc `hvc1`.
Segments are served unchanged: in-band copies identical to the sample entry's are allowed.

What the rewrite keeps: the hvcC header the encoder wrote (profile, tier, level, chroma, bit
depths, NAL length size; built from the SPS only when the entry has no hvcC), every other
child box of the sample entry (pasp, colr, btrt...), the rest of the init byte for byte; the
sizes of the boxes around the entry (stsd, stbl, minf, mdia, trak, moov) grow by the change.

When a rewrite would be a lie it is refused with `Unconvertible`, whose message says why, and
the rendition stays `hev1`: no set to move (none in the entry nor in the first segment), sets
that change (one id with two contents), an SPS we cannot read, NAL units we cannot walk.
A converted init is only right while the segments carry no other set: `foreign_sets` checks
each later segment, and `as_hev1` turns the init back when one does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packager.errors import BadMedia
from packager.media import boxes, nal
from packager.media.boxes import Box
from packager.media.boxwriter import box
from packager.media.fragment import parse_segment
from packager.media.model import InitSegment, SegmentMedia, Track

PARAMETER_SETS = (nal.HEVC_VPS, nal.HEVC_SPS, nal.HEVC_PPS)
_VISUAL_ENTRY = 78  # VisualSampleEntry fields after the box header (14496-12 §12.1.3)
_HEADER = 22  # HEVCDecoderConfigurationRecord up to numOfArrays (14496-15 §8.3.3.1.2)
_COMPLETE = 0x80  # array_completeness, the top bit of an array's first byte
# NAL units walked per segment. A 6 s 1080p60 segment of 8 slices a picture holds ~3,000;
# a hostile one of 7-byte units would hold millions, each a step of Python on the event loop.
MAX_NAL_UNITS = 50_000


class Unconvertible(Exception):
    """Why a `hev1` entry cannot honestly become `hvc1`: the rendition keeps `hev1`."""


def is_hev1(track: Track | None) -> bool:
    return track is not None and track.codec.split(".", 1)[0] == "hev1"


@dataclass(frozen=True, slots=True)
class _Record:
    """An hvcC's fields: its 22-byte header and its arrays as (first byte, NAL units)."""

    header: bytes
    arrays: tuple[tuple[int, tuple[bytes, ...]], ...]

    def units(self, kind: int) -> list[bytes]:
        return [u for first, units in self.arrays if first & 0x3F == kind for u in units]


def record_header(sps: nal.HevcSps, length_size: int = 4) -> bytes:
    """The hvcC fields before the arrays, from an SPS (what an entry without hvcC lacks, and
    what the TS demuxer writes)."""
    return struct.pack(
        ">BBI6sBHBBBBHB",
        1,
        sps.profile_space << 6 | sps.tier << 5 | sps.profile_idc,
        sps.compatibility_flags,
        sps.constraint_flags.to_bytes(6, "big"),
        sps.level_idc,
        0xF000,  # min_spatial_segmentation_idc 0: no guarantee claimed
        0xFC,  # parallelismType 0: unknown
        0xFC | sps.chroma_format_idc,
        0xF8 | (sps.bit_depth_luma - 8),
        0xF8 | (sps.bit_depth_chroma - 8),
        0,  # avgFrameRate: unspecified
        sps.max_sub_layers << 3 | sps.temporal_id_nesting << 2 | (length_size - 1),
    )


def hvcc_box(header: bytes, arrays: Sequence[tuple[int, Sequence[bytes]]]) -> bytes:
    """An hvcC box; each array as (its first byte: completeness and NAL type, its units)."""
    body = [header, bytes([len(arrays)])]
    for first, units in arrays:
        body.append(struct.pack(">BH", first, len(units)))
        body += [struct.pack(">H", len(u)) + u for u in units]
    return box(b"hvcC", *body)


def as_hvc1(init: InitSegment, segment: bytes, media: SegmentMedia | None = None) -> bytes:
    """`init` (its video entry `hev1`) with that entry renamed `hvc1` and an hvcC holding every
    VPS, SPS and PPS of its own arrays and of `segment`'s samples, each array complete.

    `segment` is a media segment of `init` (its parse may be passed as `media`). Raises
    Unconvertible (keep hev1, and say why) or BadMedia (the segment itself is unreadable)."""
    video = init.video
    if not is_hev1(video):
        raise ValueError("not an init whose video sample entry is hev1")
    assert video is not None
    chain = _entry_chain(init.data)
    entry = chain[-1]
    hvcc = _hvcc_child(init.data, entry)
    record = _read_record(init.data, hvcc) if hvcc is not None else None
    if media is None:
        media = parse_segment(segment, init)
    declared = [u for kind in PARAMETER_SETS for u in record.units(kind)] if record else []
    sets = _keyed(declared)
    for key, unit in _keyed(_in_band(segment, media, video)).items():
        if sets.setdefault(key, unit) != unit:
            raise Unconvertible("parameter sets in the samples differ from the sample entry's")
    arrays: list[tuple[int, Sequence[bytes]]] = []
    for kind in PARAMETER_SETS:
        units = [unit for (k, _), unit in sorted(sets.items()) if k == kind]
        if not units:
            raise Unconvertible("no parameter sets in the sample entry or the first segment")
        arrays.append((_COMPLETE | kind, units))
    if record is not None:
        header = record.header
        # Other arrays (SEI) stay as declarative as they were; 14496-15 wants them incomplete.
        arrays += [(f & 0x3F, u) for f, u in record.arrays if f & 0x3F not in PARAMETER_SETS]
    else:
        sps = _sps(arrays[1][1][0])
        header = record_header(sps, video.nal_length_size)
    return _with_entry(init.data, chain, b"hvc1", hvcc_box(header, arrays))


def as_hev1(init: InitSegment) -> bytes:
    """A converted init turned back: `hev1` with the same arrays, none claimed complete, so
    parameter sets in the samples may differ from them again (§8.4.1.1.1)."""
    chain = _entry_chain(init.data)
    hvcc = _hvcc_child(init.data, chain[-1])
    if hvcc is None:
        raise BadMedia("hvc1 sample entry without hvcC")
    record = _read_record(init.data, hvcc)
    arrays = [(first & 0x3F, units) for first, units in record.arrays]
    return _with_entry(init.data, chain, b"hev1", hvcc_box(record.header, arrays))


def foreign_sets(init: InitSegment, segment: bytes, media: SegmentMedia) -> str | None:
    """Why `segment` does not fit an init converted by `as_hvc1` (a parameter set in its
    samples that the hvcC does not hold byte for byte), or None when it fits."""
    video = init.video
    if video is None:
        return None
    try:
        hvcc = _hvcc_child(init.data, _entry_chain(init.data)[-1])
        if hvcc is None:
            return "the sample entry has no hvcC"
        record = _read_record(init.data, hvcc)
        found = _in_band(segment, media, video)
    except Unconvertible as exc:
        return str(exc)
    held = {u for kind in PARAMETER_SETS for u in record.units(kind)}
    if any(unit not in held for unit in found):
        return "parameter sets only in-band and changing"
    return None


# ---- reading --------------------------------------------------------------------------------


def _in_band(data: bytes, media: SegmentMedia, video: Track) -> list[bytes]:
    """The VPS, SPS and PPS NAL units of the video track's samples, in decode order.

    Walks every NAL unit: a PPS may be sent before any picture, not only at keyframes."""
    samples = media.track(video.track_id)
    if samples is None:
        return []
    width = video.nal_length_size
    if width not in (1, 2, 4):
        raise Unconvertible(f"NAL length size {width} is not 1, 2 or 4")
    out: list[bytes] = []
    left = MAX_NAL_UNITS
    for offset, size in zip(samples.offsets, samples.sizes, strict=True):
        pos, end = offset, offset + size
        while pos < end:
            left -= 1
            if left < 0:
                raise Unconvertible(f"more than {MAX_NAL_UNITS} NAL units in a segment to check")
            if end - pos < width + 2:
                raise Unconvertible("the samples' NAL units are unreadable")
            length = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if length < 2 or length > end - pos:
                raise Unconvertible("the samples' NAL units are unreadable")
            kind = (data[pos] >> 1) & 0x3F
            if kind in PARAMETER_SETS:
                if (data[pos] & 1) or data[pos + 1] >> 3:
                    raise Unconvertible("parameter sets of layers above the base (nuh_layer_id)")
                out.append(data[pos : pos + length])
            pos += length
    return out


def _keyed(units: Iterable[bytes]) -> dict[tuple[int, int], bytes]:
    """Parameter sets by (NAL type, id); one id with two contents is a set that changes."""
    out: dict[tuple[int, int], bytes] = {}
    ids: dict[bytes, int] = {}
    for unit in units:
        if len(unit) > 0xFFFF:
            raise Unconvertible("a parameter set longer than hvcC can hold (65535 bytes)")
        kind = nal.hevc_type(unit)
        if unit not in ids:
            ids[unit] = _set_id(unit, kind)
        if out.setdefault((kind, ids[unit]), unit) != unit:
            raise Unconvertible("parameter sets only in-band and changing")
    return out


def _set_id(unit: bytes, kind: int) -> int:
    try:
        if kind == nal.HEVC_VPS:
            return nal.vps_id(unit)
        if kind == nal.HEVC_SPS:
            return _sps(unit).sps_id
        return nal.pps_id(unit, hevc=True)
    except BadMedia as exc:
        raise Unconvertible(f"unreadable parameter set ({exc.detail})") from None


def _sps(unit: bytes) -> nal.HevcSps:
    try:
        return nal.parse_hevc_sps(unit)
    except BadMedia as exc:
        raise Unconvertible(f"unreadable SPS ({exc.detail})") from None


def _read_record(data: bytes, hvcc: Box) -> _Record:
    """An hvcC's header and arrays, every length checked against the box."""
    p, end = hvcc.payload_start, hvcc.end
    if end - p < _HEADER + 1 or data[p] != 1:
        raise Unconvertible("the hvcC is not an HEVCDecoderConfigurationRecord version 1")
    header = data[p : p + _HEADER]
    count = data[p + _HEADER]
    pos = p + _HEADER + 1
    arrays: list[tuple[int, tuple[bytes, ...]]] = []
    for _ in range(count):
        if end - pos < 3:
            raise Unconvertible("the hvcC's arrays overrun it")
        first, n = data[pos], int.from_bytes(data[pos + 1 : pos + 3], "big")
        pos += 3
        units: list[bytes] = []
        for _ in range(n):
            if end - pos < 2:
                raise Unconvertible("the hvcC's arrays overrun it")
            length = int.from_bytes(data[pos : pos + 2], "big")
            if length < 2 or end - pos - 2 < length:
                raise Unconvertible("the hvcC's arrays overrun it")
            units.append(data[pos + 2 : pos + 2 + length])
            pos += 2 + length
        arrays.append((first, tuple(units)))
    return _Record(header, tuple(arrays))


def _entry_chain(data: bytes) -> list[Box]:
    """moov, trak, mdia, minf, stbl, stsd and the sample entry of the first video track: the
    one `parse_init` calls `video`, with a single entry (which one a sample uses is then
    not in doubt)."""
    moov = next((b for b in boxes.iter_boxes(data) if b.type == b"moov"), None)
    if moov is None:
        raise BadMedia("init segment has no moov box")
    for trak in boxes.children(data, moov):
        if trak.type != b"trak":
            continue
        mdia = boxes.require(data, trak, b"mdia")
        hdlr = boxes.require(data, mdia, b"hdlr")
        if hdlr.end - hdlr.payload_start < 12:
            raise BadMedia("truncated hdlr box")
        if data[hdlr.payload_start + 8 : hdlr.payload_start + 12] != b"vide":
            continue
        minf = boxes.require(data, mdia, b"minf")
        stbl = boxes.require(data, minf, b"stbl")
        stsd = boxes.require(data, stbl, b"stsd")
        entries = list(boxes.children(data, stsd, skip=8))
        if len(entries) != 1:
            raise Unconvertible(f"{len(entries)} sample entries in the video track's stsd")
        if entries[0].end - entries[0].payload_start < _VISUAL_ENTRY:
            raise BadMedia("truncated visual sample entry")
        return [moov, trak, mdia, minf, stbl, stsd, entries[0]]
    raise BadMedia("init segment has no video track")


def _hvcc_child(data: bytes, entry: Box) -> Box | None:
    start = entry.payload_start + _VISUAL_ENTRY
    return next((b for b in boxes.iter_boxes(data, start, entry.end) if b.type == b"hvcC"), None)


# ---- writing --------------------------------------------------------------------------------


def _with_entry(data: bytes, chain: list[Box], fourcc: bytes, hvcc: bytes) -> bytes:
    """The init with the entry renamed and its hvcC replaced (put first if it had none); every
    box around it keeps its header form and grows by the difference."""
    entry = chain[-1]
    fields_end = entry.payload_start + _VISUAL_ENTRY
    children: list[bytes] = []
    placed = False
    for child in boxes.iter_boxes(data, fields_end, entry.end):
        if child.type == b"hvcC":
            if not placed:
                children.append(hvcc)
                placed = True
            continue
        children.append(data[child.start : child.end])
    if not placed:
        children.insert(0, hvcc)
    new_entry = box(fourcc, data[entry.payload_start : fields_end], *children)
    delta = len(new_entry) - entry.size
    out = bytearray(data[: entry.start] + new_entry + data[entry.end :])
    for parent in chain[:-1]:
        _grow(out, parent, delta)
    return bytes(out)


def _grow(out: bytearray, parent: Box, delta: int) -> None:
    """Add `delta` to a box's declared size, in whichever form its header has. A size of 0
    (to the end of the file) still says the truth."""
    if parent.header_size == 16:
        struct.pack_into(">Q", out, parent.start + 8, parent.size + delta)
    elif struct.unpack_from(">I", out, parent.start)[0] != 0:
        if parent.size + delta > 0xFFFFFFFF:
            raise BadMedia(f"{parent.type!r} would outgrow a 32-bit size")
        struct.pack_into(">I", out, parent.start, parent.size + delta)
