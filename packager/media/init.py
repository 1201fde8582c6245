"""Parse an fMP4 init segment (ftyp + moov + mvex) into an `InitSegment`."""

from __future__ import annotations

import re
import struct
from typing import Any

from pymp4.parser import Box as Mp4Box

from packager.errors import BadMedia
from packager.media import boxes
from packager.media.boxes import Box
from packager.media.codecs import avc_codec, hevc_codec, mp4a_codec
from packager.media.model import AUDIO, VIDEO, Edit, InitSegment, Track

MAX_INIT_SIZE = 1 << 20  # real init segments are a few kB
MAX_TRACKS = 8
MAX_EDITS = 64  # encoders write one or two; bounds what a hostile elst makes us allocate

# What an RFC 6381 codecs string is made of (avc1.64001f, mp4a.40.2, hvc1.1.6.L93.B0, opus).
_CODEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_VISUAL_ENTRY = 78  # VisualSampleEntry fields after the box header (ISO/IEC 14496-12 §12.1.3)
_AUDIO_ENTRY = 28  # AudioSampleEntry fields after the box header (§12.2.3), version 0


def parse_leaf(buf: bytes | memoryview, box: Box) -> Any:
    """Parse one small leaf box with pymp4; any construct failure is the media's fault."""
    try:
        return Mp4Box.parse(boxes.box32(buf, box))
    except BadMedia:
        raise
    except Exception as exc:  # noqa: BLE001 - construct raises many types on malformed bytes
        raise BadMedia(f"malformed {box.type.decode('latin-1')} box: {exc}") from None


def parse_init(data: bytes) -> InitSegment:
    """Learn tracks, timescales, codecs and sizes from an init segment. Raises BadMedia."""
    if len(data) > MAX_INIT_SIZE:
        raise BadMedia(f"init segment of {len(data)} bytes exceeds {MAX_INIT_SIZE}")
    top = list(boxes.iter_boxes(data))
    moov = next((b for b in top if b.type == b"moov"), None)
    if moov is None:
        raise BadMedia("init segment has no moov box")
    mvhd = parse_leaf(data, boxes.require(data, moov, b"mvhd"))
    trex = _trex_by_track(data, moov)
    tracks: list[Track] = []
    for trak in boxes.children(data, moov):
        if trak.type != b"trak":
            continue
        if len(tracks) >= MAX_TRACKS:
            raise BadMedia(f"more than {MAX_TRACKS} tracks")
        tracks.append(_parse_trak(data, trak, trex))
    if not tracks:
        raise BadMedia("init segment has no tracks")
    if len({t.track_id for t in tracks}) != len(tracks):
        raise BadMedia("duplicate track_ID in init segment")
    if int(mvhd.timescale) <= 0:
        raise BadMedia("mvhd timescale is 0")
    return InitSegment(data=data, tracks=tuple(tracks), movie_timescale=int(mvhd.timescale))


def _trex_by_track(data: bytes, moov: Box) -> dict[int, tuple[int, int, int]]:
    mvex = boxes.find(data, moov, b"mvex")
    if mvex is None:
        raise BadMedia("init segment has no mvex box: not a fragmented MP4")
    out: dict[int, tuple[int, int, int]] = {}
    for box in boxes.children(data, mvex):
        if box.type == b"trex":
            if box.end - box.payload_start < 24:
                raise BadMedia("truncated trex box")
            # Read raw: pymp4 turns default_sample_flags into a Container we would re-pack.
            tid, _, dur, size, flags = struct.unpack_from(">IIIII", data, box.payload_start + 4)
            out[tid] = (dur, size, flags)
    return out


def _parse_trak(data: bytes, trak: Box, trex: dict[int, tuple[int, int, int]]) -> Track:
    tkhd = parse_leaf(data, boxes.require(data, trak, b"tkhd"))
    mdia = boxes.require(data, trak, b"mdia")
    mdhd_box = boxes.require(data, mdia, b"mdhd")
    mdhd = parse_leaf(data, mdhd_box)
    hdlr = parse_leaf(data, boxes.require(data, mdia, b"hdlr"))
    stsd = boxes.find_path(data, mdia, b"minf", b"stbl", b"stsd")
    if stsd is None:
        raise BadMedia("track has no stsd box")
    track_id = int(tkhd.track_ID)
    timescale = int(mdhd.timescale)
    if track_id == 0 or timescale == 0:
        raise BadMedia("track_ID or timescale is 0")
    handler = bytes(hdlr.handler_type).decode("latin-1")
    language = _mdhd_language(data, mdhd_box)
    dur, size, flags = trex.get(track_id, (0, 0, 0))
    fields: dict[str, Any] = {}
    if handler in (VIDEO, AUDIO):
        fields = _sample_entry(data, stsd, handler)
    else:
        fields = {"codec": _first_entry_type(data, stsd)}
    codec = str(fields.get("codec", ""))
    if not _CODEC.fullmatch(codec):
        # It lands in a master playlist's CODECS="..." attribute: a quote or a newline there
        # would let a pushed init write lines (a URI) into every player's playlist.
        raise BadMedia(f"track {track_id}: sample entry {codec[:16]!r} is not a codec name")
    if handler == VIDEO and not fields.get("width"):
        fields["width"] = int(tkhd.width) >> 16
        fields["height"] = int(tkhd.height) >> 16
    return Track(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        stsd=bytes(data[stsd.start : stsd.end]),
        language=language,
        default_sample_duration=dur,
        default_sample_size=size,
        default_sample_flags=flags,
        edits=_edits(data, trak),
        **fields,
    )


def _edits(data: bytes, trak: Box) -> tuple[Edit, ...]:
    """The trak's edit list, read raw: pymp4 has no edts/elst (§8.6.6; v1 widens both times)."""
    elst = boxes.find_path(data, trak, b"edts", b"elst")
    if elst is None:
        return ()
    p = elst.payload_start
    if elst.end - p < 8:
        raise BadMedia("truncated elst box")
    version = data[p]
    (count,) = struct.unpack_from(">I", data, p + 4)
    entry = struct.Struct(">Qqhh" if version == 1 else ">Iihh")
    if count > MAX_EDITS or 8 + count * entry.size > elst.end - p:
        raise BadMedia(f"elst declares {count} entries, its box holds fewer or too many")
    table = data[p + 8 : p + 8 + count * entry.size]
    return tuple(
        Edit(dur, media_time, rate) for dur, media_time, rate, _ in entry.iter_unpack(table)
    )


def _mdhd_language(data: bytes, mdhd: Box) -> bytes:
    version = data[mdhd.payload_start]
    pos = mdhd.payload_start + (32 if version == 1 else 20)
    if pos + 2 > mdhd.end:
        raise BadMedia("truncated mdhd box")
    return bytes(data[pos : pos + 2])


def _first_entry_type(data: bytes, stsd: Box) -> str:
    entry = next(boxes.children(data, stsd, skip=8), None)
    if entry is None:
        raise BadMedia("stsd has no sample entry")
    return entry.type.decode("latin-1")


def _sample_entry(data: bytes, stsd: Box, handler: str) -> dict[str, Any]:
    entry = next(boxes.children(data, stsd, skip=8), None)  # skip version/flags + entry_count
    if entry is None:
        raise BadMedia("stsd has no sample entry")
    fourcc = entry.type.decode("latin-1")
    p = entry.payload_start
    if handler == VIDEO:
        if entry.end - p < _VISUAL_ENTRY:
            raise BadMedia(f"truncated {fourcc} sample entry")
        width, height = struct.unpack_from(">HH", data, p + 24)
        codec = fourcc
        length_size = 4
        for child in boxes.iter_boxes(data, p + _VISUAL_ENTRY, entry.end):
            payload = memoryview(data)[child.payload_start : child.end]
            if child.type == b"avcC":
                codec = avc_codec(fourcc, payload)
                length_size = (payload[4] & 3) + 1 if len(payload) > 4 else 4
            elif child.type == b"hvcC":
                codec = hevc_codec(fourcc, payload)
                length_size = (payload[21] & 3) + 1 if len(payload) > 21 else 4
        return {
            "codec": codec,
            "width": width,
            "height": height,
            "nal_length_size": length_size,
        }
    if entry.end - p < _AUDIO_ENTRY:
        raise BadMedia(f"truncated {fourcc} sample entry")
    version = struct.unpack_from(">H", data, p + 8)[0]
    channels, _bits = struct.unpack_from(">HH", data, p + 16)
    sample_rate = struct.unpack_from(">I", data, p + 24)[0] >> 16
    skip = {0: 0, 1: 16, 2: 36}.get(version)  # QuickTime sound description v1/v2 extensions
    if skip is None:
        raise BadMedia(f"unknown {fourcc} sample entry version {version}")
    codec = fourcc
    for child in boxes.iter_boxes(data, p + _AUDIO_ENTRY + skip, entry.end):
        if child.type == b"esds":
            codec = mp4a_codec(memoryview(data)[child.payload_start : child.end])
    if fourcc == "Opus":
        codec = "opus"
    return {"codec": codec, "channels": channels, "sample_rate": sample_rate}
