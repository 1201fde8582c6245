"""MPEG-TS media segments in, fragmented MP4 out: the demuxer behind TS ingest, sans-IO.

ISO/IEC 13818-1 (transport stream, PSI, PES), ISO/IEC 14496-15 (AVC and HEVC in MP4:
length-prefixed NAL units, avcC, hvcC), ISO/IEC 14496-3 §1.A.2 (ADTS), ISO/IEC 14496-12
(the boxes). One TS segment becomes an init segment plus a media segment (styp + moof + mdat)
that `init.parse_init` and `fragment.parse_segment` accept, so nothing after ingest changes.

Design, and why:
- One pass over the packets files each payload under its PID as a slice (no copy); PAT and
  PMT name the elementary streams; each PES packet is joined once. Every declared length
  (adaptation field, pointer field, section, PES, PES header, ADTS frame) is checked against
  the real bytes first, and everything is built from the segment's own bytes, so memory and
  work are bounded by its size, and samples by `MAX_SAMPLES_PER_SEGMENT`.
- Video: one access unit per PES packet that carries a PTS, as ffmpeg and hardware encoders
  write it (13818-1 §2.4.3.7 lets the PTS name the first access unit starting in the PES); a
  PES without a PTS continues the access unit before it. Parameter sets move out of band into
  avcC/hvcC (sample entries `avc1`/`hvc1`: Apple's HLS wants `hvc1` for fMP4), AUDs go.
- The init depends only on the PMT order and codec parameters, never on timing or sizes, so
  an unchanged stream keeps one byte-identical init across segments.
- Timing: the 33-bit PTS/DTS are unwrapped against `TsState`, each PID's clock carried from one
  segment to the next, so decode times keep growing across segments and the 26.5 h wrap. The
  last video sample has no successor to measure its duration against: it gets the one before
  it (alone in its segment, the previous segment's last duration).
- Not handled (each is refused or noted where it matters): AAC frames that straddle a segment
  boundary (state holds no bytes: segmenters cut at PES boundaries), ADTS frames of several
  raw data blocks, channel configuration 0 (an in-band PCE), TS continuity counters (a
  duplicated packet would be taken twice), section CRCs (not checked).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from packager.errors import BadMedia
from packager.media import hevc, nal
from packager.media.boxwriter import (
    box,
    box_header,
    chunk_offsets,
    dinf,
    ftyp,
    full_box,
    hdlr,
    mdhd,
    media_header,
    mvhd,
    stsc,
    stsd,
    stsz,
    stts,
    tkhd,
)
from packager.media.fragment import MAX_SAMPLES_PER_SEGMENT
from packager.media.init import MAX_TRACKS

PACKET = 188
_SYNC = 0x47
_NULL_PID = 0x1FFF
STREAM_H264 = 0x1B
STREAM_HEVC = 0x24
STREAM_AAC = 0x0F  # ISO/IEC 13818-7 / 14496-3 audio with ADTS transport syntax
SUPPORTED_STREAM_TYPES = (STREAM_H264, STREAM_HEVC, STREAM_AAC)
VIDEO_TIMESCALE = 90_000  # the PES clock: no rounding at all
_WRAP = 1 << 33  # PTS/DTS are 33-bit (13818-1 §2.4.3.7)
_HALF_WRAP = 1 << 32
AAC_FRAME_SAMPLES = 1024
# A lone video frame with no previous segment to learn from: 1/30 s, the commonest rate.
LONE_FRAME_DURATION = 3000
# 90 kHz PTS carry audio times rounded to 1/90000 s: two samples either way is that rounding
# (at most ~1.07 samples at 96 kHz), not a gap, so the next segment continues exactly.
_AUDIO_SNAP = 2
# Stream ids whose PES packets have no optional PES header (13818-1 Table 2-21).
_NO_PES_HEADER = frozenset((0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF))
# ADTS sampling_frequency_index (14496-3 Table 1.18) and channel_configuration (Table 1.19).
_ADTS_RATES: tuple[int, ...] = (
    *(96000, 88200, 64000, 48000, 44100, 32000, 24000),
    *(22050, 16000, 12000, 11025, 8000, 7350),
)
_ADTS_CHANNELS = (0, 1, 2, 3, 4, 5, 6, 8)
# Sample flags (14496-12 §8.8.3.1): sample_depends_on 2 = an I picture / an audio frame;
# 1 + sample_is_non_sync_sample for the rest.
_SYNC_FLAGS = 0x02000000
_NON_SYNC_FLAGS = 0x01010000
_DEFAULT_BASE_IS_MOOF = 0x020000
# trun: data-offset, then per sample duration, size, flags, composition offset.
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
_UND = b"\x55\xc4"  # ISO-639-2 "und", packed as mdhd stores it
_U32 = struct.Struct(">I")
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_MAX_TIME = 2**62  # a state's times stay far below tfdt's 64 bits (2**62 ticks: 1.6M years)


@dataclass(frozen=True, slots=True)
class PidClock:
    """Where one elementary stream's clock stood at the end of a segment."""

    pid: int
    last_dts: int  # unwrapped 90 kHz DTS of the last sample (audio: PTS of the last PES)
    last_duration: int  # of the last sample, in the track's timescale
    next_decode_time: int  # where a continuous next segment starts, in the track's timescale


@dataclass(frozen=True, slots=True)
class TsState:
    """What one rendition carries from one TS segment to the next: ints only, so it is JSON."""

    sequence: int = 0  # mfhd sequence_number of the last fragment
    clocks: tuple[PidClock, ...] = ()

    def clock(self, pid: int) -> PidClock | None:
        return next((c for c in self.clocks if c.pid == pid), None)

    def to_json(self) -> str:
        clocks = [[c.pid, c.last_dts, c.last_duration, c.next_decode_time] for c in self.clocks]
        return json.dumps({"sequence": self.sequence, "clocks": clocks}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> TsState:
        """Raises ValueError for anything `to_json` did not write."""
        try:
            obj: Any = json.loads(text)
            (sequence,) = _ints([obj["sequence"]], 1)
            clocks = tuple(PidClock(*_ints(row, 4)) for row in obj["clocks"])
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a TsState: {exc}") from None
        if len(clocks) > MAX_TRACKS:
            raise ValueError("not a TsState: too many clocks")
        return cls(sequence, clocks)


def _ints(row: Any, n: int) -> list[int]:
    if not isinstance(row, list) or len(row) != n:
        raise ValueError(f"expected {n} integers")
    if not all(type(v) is int and 0 <= v < _MAX_TIME for v in row):
        raise ValueError("expected integers in [0, 2**62)")
    return row


@dataclass(frozen=True, slots=True)
class TsSegment:
    """One TS segment as fMP4: `init` (ftyp + moov) and `fragment` (styp + moof + mdat)."""

    init: bytes
    fragment: bytes


def is_transport_stream(data: bytes | memoryview) -> bool:
    """Sync bytes at a 188-byte stride over the first packets. An ISO-BMFF file cannot pass:
    its first byte starts a box size, and 0x47 there would mean a box over 1 GiB."""
    n = len(data)
    if n < PACKET:
        return False
    return all(data[pos] == _SYNC for pos in range(0, min(n, 8 * PACKET), PACKET))


def demux_segment(data: bytes, state: TsState | None) -> tuple[TsSegment, TsState]:
    """Turn one TS media segment into fMP4, continuing `state` (None for a stream's first)."""
    units = _payloads_by_pid(data)
    streams = _program_streams(units)
    wanted = list({pid: kind for pid, kind in streams if kind in SUPPORTED_STREAM_TYPES}.items())
    if not wanted:
        found = ", ".join(f"0x{kind:02x}" for _, kind in streams) or "none"
        raise BadMedia(f"no H.264, HEVC or AAC stream in the PMT (stream types: {found})")
    pes = [(pid, kind, _pes_packets(pid, units.get(pid, []))) for pid, kind in wanted]
    pes = [p for p in pes if any(pkt.pts is not None for pkt in p[2])]
    if not pes:
        raise BadMedia("the segment holds no timestamped PES packet of a supported stream")
    if len(pes) > MAX_TRACKS:
        raise BadMedia(f"more than {MAX_TRACKS} elementary streams")
    timeline = _Timeline(state, pes)
    budget = _Budget()
    tracks = [
        _audio_track(pid, packets, timeline, budget, state)
        if kind == STREAM_AAC
        else _video_track(pid, kind == STREAM_HEVC, packets, timeline, budget, state)
        for pid, kind, packets in pes
    ]
    tracks = [t for t in tracks if t.sizes]
    if not tracks:
        raise BadMedia("the segment holds no samples")
    sequence = (state.sequence if state else 0) % 0xFFFFFFFF + 1  # mfhd holds 32 bits
    segment = TsSegment(_init_segment(tracks), _fragment(sequence, tracks))
    return segment, TsState(sequence, tuple(t.clock for t in tracks))


# ---- transport packets and PSI (13818-1 §2.4.3, §2.4.4) ------------------------------------

_Units = dict[int, list[tuple[bool, memoryview]]]


def _payloads_by_pid(data: bytes) -> _Units:
    """Each packet's payload, under its PID, as (payload_unit_start_indicator, slice)."""
    n = len(data)
    if not n or data[0] != _SYNC:
        raise BadMedia("not an MPEG transport stream: no sync byte 0x47 at byte 0")
    if n % PACKET:
        raise BadMedia(f"truncated transport stream: {n} bytes is not a whole number of packets")
    syncs = data[::PACKET]
    if syncs.count(_SYNC) != len(syncs):
        k = len(syncs) - len(syncs.lstrip(b"\x47"))
        raise BadMedia(f"TS packet {k} (byte {k * PACKET}) has no sync byte 0x47")
    view = memoryview(data)
    units: _Units = {}
    for pos in range(0, n, PACKET):
        b1, b3 = data[pos + 1], data[pos + 3]
        pid = ((b1 & 0x1F) << 8) | data[pos + 2]
        if pid == _NULL_PID or not b3 & 0x10:  # stuffing, or no payload
            continue
        start = pos + 4
        if b3 & 0x20:  # adaptation_field_length, then the field
            start += 1 + data[start]
        end = pos + PACKET
        if start >= end:
            if start > end:
                raise BadMedia(f"TS packet at byte {pos}: adaptation field overruns the packet")
            continue
        got = units.get(pid)
        if got is None:
            got = units[pid] = []
        got.append((bool(b1 & 0x40), view[start:end]))
    return units


def _section(units: list[tuple[bool, memoryview]], what: str) -> bytes:
    """The first complete PSI section on a PID; it may span packets (§2.4.4.1-2)."""
    buf: bytearray | None = None
    for start, payload in units:
        if start:
            pointer = payload[0]
            if 1 + pointer > len(payload):
                raise BadMedia(f"{what}: pointer_field points past its packet")
            if buf is not None:  # the end of a section begun in an earlier packet
                buf += payload[1 : 1 + pointer]
                if (done := _whole_section(buf)) is not None:
                    return done
            buf = bytearray(payload[1 + pointer :])
        elif buf is None:
            continue
        else:
            buf += payload
        if (done := _whole_section(buf)) is not None:
            return done
    raise BadMedia(f"no complete {what} in the segment")


def _whole_section(buf: bytearray) -> bytes | None:
    if len(buf) < 3:
        return None
    length = ((buf[1] & 0x0F) << 8) | buf[2]
    return bytes(buf[: 3 + length]) if len(buf) >= 3 + length else None


def _program_streams(units: _Units) -> list[tuple[int, int]]:
    """(PID, stream_type) of the first program's elementary streams, in PMT order."""
    pat = _section(units.get(0, []), "PAT")
    if pat[0] != 0x00 or len(pat) < 12:
        raise BadMedia("PAT: not a program_association_section")
    pmt_pid = None
    entries = pat[8:-4]
    for k in range(0, len(entries) - 3, 4):
        if entries[k] or entries[k + 1]:  # program_number 0 is the network PID
            pmt_pid = ((entries[k + 2] & 0x1F) << 8) | entries[k + 3]
            break
    if pmt_pid is None:
        raise BadMedia("PAT lists no program")
    pmt = _section(units.get(pmt_pid, []), "PMT")
    if pmt[0] != 0x02 or len(pmt) < 16:
        raise BadMedia("PMT: not a TS_program_map_section")
    pos = 12 + (((pmt[10] & 0x0F) << 8) | pmt[11])  # past program_info
    end = len(pmt) - 4  # CRC_32
    if pos > end:
        raise BadMedia("PMT: program_info_length overruns the section")
    streams: list[tuple[int, int]] = []
    while pos + 5 <= end:
        kind, pid = pmt[pos], ((pmt[pos + 1] & 0x1F) << 8) | pmt[pos + 2]
        pos += 5 + (((pmt[pos + 3] & 0x0F) << 8) | pmt[pos + 4])
        if pos > end:
            raise BadMedia("PMT: ES_info_length overruns the section")
        streams.append((pid, kind))
    return streams


# ---- PES packets (§2.4.3.6-7) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pes:
    pts: int | None  # raw 33-bit values
    dts: int | None
    payload: memoryview


def _pes_packets(pid: int, units: list[tuple[bool, memoryview]]) -> list[_Pes]:
    """Reassemble a PID's PES packets. Bytes before its first unit start continue a packet of
    the previous segment and are dropped."""
    out: list[_Pes] = []
    parts: list[memoryview] | None = None
    for start, payload in units:
        if start:
            if parts:
                out.append(_parse_pes(pid, b"".join(parts)))
            parts = [payload]
        elif parts is not None:
            parts.append(payload)
    if parts:
        out.append(_parse_pes(pid, b"".join(parts)))
    return out


def _parse_pes(pid: int, buf: bytes) -> _Pes:
    if len(buf) < 6 or buf[:3] != b"\x00\x00\x01":
        raise BadMedia(f"PID {pid}: PES packet without the start code 0x000001")
    length = (buf[4] << 8) | buf[5]
    end = 6 + length if length else len(buf)  # 0: unbounded, allowed for video (§2.4.3.7)
    if end > len(buf):
        raise BadMedia(f"PID {pid}: PES packet declares {length} bytes, {len(buf) - 6} present")
    view = memoryview(buf)
    if buf[3] in _NO_PES_HEADER:
        return _Pes(None, None, view[6:end])
    if end < 9 or buf[6] & 0xC0 != 0x80:
        raise BadMedia(f"PID {pid}: malformed PES header")
    flags, header = buf[7] >> 6, buf[8]
    if 9 + header > end:
        raise BadMedia(f"PID {pid}: PES header of {header} bytes overruns its packet")
    if flags == 1 or header < (0, 0, 5, 10)[flags]:
        raise BadMedia(f"PID {pid}: PES PTS_DTS_flags {flags} with a {header}-byte header")
    pts = _timestamp(buf, 9) if flags & 2 else None
    dts = _timestamp(buf, 14) if flags == 3 else None
    return _Pes(pts, dts, view[9 + header : end])


def _timestamp(buf: bytes, p: int) -> int:
    """33 bits spread over 5 bytes between marker bits (§2.4.3.7)."""
    return (
        ((buf[p] >> 1) & 0x07) << 30
        | buf[p + 1] << 22
        | (buf[p + 2] >> 1) << 15
        | buf[p + 3] << 7
        | buf[p + 4] >> 1
    )


# ---- clocks ------------------------------------------------------------------------------


def _unwrap(raw: int, near: int) -> int:
    """The value congruent to `raw` modulo 2**33 nearest to `near` (an unwrapped time)."""
    return near + (raw - near + _HALF_WRAP) % _WRAP - _HALF_WRAP


class _Timeline:
    """Unwraps every PES timestamp of a segment onto one 90 kHz line shared by its streams.

    Each PID continues from its own clock in the state; a new PID, or a first segment, from an
    anchor near the others (the state's latest clock, else the segment's first timestamp), so
    audio and video land in the same wrap epoch. If that puts a time below zero (a first
    segment that opens just before the wrap in one stream and after it in another, or a jump
    back across the epoch), the whole segment moves up by whole wraps: tfdt is unsigned.
    """

    def __init__(self, state: TsState | None, streams: Sequence[tuple[int, int, list[_Pes]]]):
        anchor = max((c.last_dts for c in state.clocks), default=None) if state else None
        if anchor is None:
            anchor = next(
                _pes_dts(p) for _, _, packets in streams for p in packets if p.pts is not None
            )
        self.times: dict[int, list[tuple[int, int]]] = {}  # PID -> (dts, pts) of PES with a PTS
        low = 0
        for pid, _, packets in streams:
            clock = state.clock(pid) if state else None
            near = clock.last_dts if clock else anchor
            times: list[tuple[int, int]] = []
            for p in packets:
                if p.pts is not None:
                    near = _unwrap(_pes_dts(p), near)
                    pts = _unwrap(p.pts, near)
                    times.append((near, pts))
                    low = min(low, near, pts)
            self.times[pid] = times
        if low < 0:
            shift = -(low // _WRAP) * _WRAP
            for pid, times in self.times.items():
                self.times[pid] = [(d + shift, p + shift) for d, p in times]


def _pes_dts(p: _Pes) -> int:
    assert p.pts is not None
    return p.dts if p.dts is not None else p.pts


class _Budget:
    """Samples left for the whole segment (fragment.MAX_SAMPLES_PER_SEGMENT)."""

    def __init__(self) -> None:
        self.left = MAX_SAMPLES_PER_SEGMENT

    def take(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise BadMedia(f"more than {MAX_SAMPLES_PER_SEGMENT} samples in a segment")


# ---- tracks ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    """One track of the output: its sample entry and its samples, in decode order."""

    handler: bytes
    timescale: int
    entry: bytes  # the sample entry box (avc1, hvc1, mp4a)
    width: int
    height: int
    base_decode_time: int
    clock: PidClock
    durations: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    cts: list[int] = field(default_factory=list)
    data: list[bytes | memoryview] = field(default_factory=list)

    def trun_table(self) -> bytes:
        table = array("I", [0]) * (4 * len(self.sizes))
        table[0::4] = array("I", self.durations)
        table[1::4] = array("I", self.sizes)
        table[2::4] = array("I", self.flags)
        table[3::4] = array("I", array("i", self.cts).tobytes())  # signed, as trun v1 reads them
        if sys.byteorder == "little":
            table.byteswap()
        return table.tobytes()


@dataclass(frozen=True, slots=True)
class _AccessUnit:
    dts: int
    pts: int
    data: bytes


def _access_units(packets: list[_Pes], times: list[tuple[int, int]]) -> list[_AccessUnit]:
    """A PES packet with a PTS opens an access unit; one without continues it."""
    out: list[_AccessUnit] = []
    parts: list[memoryview] = []
    k = 0
    for p in packets:
        if p.pts is not None:
            if parts:
                out.append(_AccessUnit(*times[k - 1], b"".join(parts)))
            parts = [p.payload]
            k += 1
        elif parts:  # continues the access unit; before the first PTS it continues an old one
            parts.append(p.payload)
    if parts:
        out.append(_AccessUnit(*times[k - 1], b"".join(parts)))
    return out


def _video_track(
    pid: int,
    hevc: bool,
    packets: list[_Pes],
    timeline: _Timeline,
    budget: _Budget,
    state: TsState | None,
) -> _Track:
    params: dict[tuple[int, int], bytes] = {}  # (nal type, parameter set id) -> NAL unit
    ids: dict[bytes, int] = {}
    dts: list[int] = []
    pts: list[int] = []
    flags: list[int] = []
    data: list[bytes | memoryview] = []
    param_types = _HEVC_PARAMS if hevc else _H264_PARAMS
    drop = nal.HEVC_AUD if hevc else nal.H264_AUD
    for au in _access_units(packets, timeline.times[pid]):
        out: list[bytes] = []
        sync = False
        for unit in nal.split_annexb(au.data):
            kind = nal.hevc_type(unit) if hevc else nal.h264_type(unit)
            if kind in param_types:
                if unit not in ids:
                    ids[unit] = _parameter_set_id(unit, kind, hevc)
                key = (kind, ids[unit])
                if params.setdefault(key, unit) != unit:
                    raise BadMedia(f"PID {pid}: a parameter set changes inside the segment")
            elif kind != drop:
                sync = sync or (kind in nal.HEVC_IRAP if hevc else kind == nal.H264_IDR)
                out.append(_U32.pack(len(unit)))
                out.append(unit)
        if not out:
            continue  # parameter sets or delimiters only: no picture
        budget.take()
        dts.append(au.dts)
        pts.append(au.pts)
        flags.append(_SYNC_FLAGS if sync else _NON_SYNC_FLAGS)
        data.append(b"".join(out))
    if not data:
        return _empty_track(pid)
    entry, width, height = (_hvc1 if hevc else _avc1)(pid, params)
    durations = [b - a for a, b in pairwise(dts)]
    if any(d <= 0 for d in durations):
        raise BadMedia(f"PID {pid}: decode times do not increase")
    if durations:
        last = durations[-1]
    else:
        clock = state.clock(pid) if state else None
        last = clock.last_duration if clock and clock.last_duration else LONE_FRAME_DURATION
    durations.append(last)
    cts = [p - d for p, d in zip(pts, dts, strict=True)]
    if max(durations) > 0xFFFFFFFF or not _I32_MIN <= min(cts) <= max(cts) <= _I32_MAX:
        raise BadMedia(f"PID {pid}: a frame duration or composition offset out of range")
    return _Track(
        handler=b"vide",
        timescale=VIDEO_TIMESCALE,
        entry=entry,
        width=width,
        height=height,
        base_decode_time=dts[0],
        clock=PidClock(pid, dts[-1], last, dts[-1] + last),
        durations=durations,
        sizes=[len(d) for d in data],
        flags=flags,
        cts=cts,
        data=data,
    )


_H264_PARAMS = frozenset((nal.H264_SPS, nal.H264_PPS))
_HEVC_PARAMS = frozenset((nal.HEVC_VPS, nal.HEVC_SPS, nal.HEVC_PPS))


def _empty_track(pid: int) -> _Track:
    return _Track(b"", 1, b"", 0, 0, 0, PidClock(pid, 0, 0, 0))  # left out of the output


def _parameter_set_id(unit: bytes, kind: int, hevc: bool) -> int:
    if hevc:
        if kind == nal.HEVC_VPS:
            return nal.vps_id(unit)
        if kind == nal.HEVC_SPS:
            return nal.parse_hevc_sps(unit).sps_id
        return nal.pps_id(unit, hevc=True)
    if kind == nal.H264_SPS:
        return nal.parse_h264_sps(unit).sps_id
    return nal.pps_id(unit, hevc=False)


def _sets(params: dict[tuple[int, int], bytes], kind: int) -> list[bytes]:
    return [unit for (k, _), unit in sorted(params.items()) if k == kind]


def _visual_entry(fourcc: bytes, width: int, height: int, config: bytes) -> bytes:
    """VisualSampleEntry (14496-12 §12.1.3): 78 bytes of fields, then the decoder config."""
    fields = struct.pack(
        ">6xH16xHHIIIH32xHh", 1, width, height, 0x00480000, 0x00480000, 0, 1, 0x0018, -1
    )
    return box(fourcc, fields, config)


def _avc1(pid: int, params: dict[tuple[int, int], bytes]) -> tuple[bytes, int, int]:
    """avc1 + AVCDecoderConfigurationRecord (14496-15 §5.3.3.1), 4-byte NAL lengths."""
    sps_units, pps_units = _sets(params, nal.H264_SPS), _sets(params, nal.H264_PPS)
    if not sps_units or not pps_units:
        raise BadMedia(f"PID {pid}: no H.264 SPS and PPS in the segment")
    sps = nal.parse_h264_sps(sps_units[0])
    record = [bytes([1, sps.profile_idc, sps.constraint_flags, sps.level_idc, 0xFF])]
    record.append(bytes([0xE0 | len(sps_units)]))
    record += [struct.pack(">H", len(u)) + u for u in sps_units]
    record.append(bytes([len(pps_units)]))
    record += [struct.pack(">H", len(u)) + u for u in pps_units]
    if sps.profile_idc in (100, 110, 122, 144):  # the High profiles' extension fields
        record.append(
            bytes(
                [
                    0xFC | sps.chroma_format_idc,
                    0xF8 | (sps.bit_depth_luma - 8),
                    0xF8 | (sps.bit_depth_chroma - 8),
                    0,
                ]
            )
        )
    avcc = box(b"avcC", *record)
    return _visual_entry(b"avc1", sps.width, sps.height, avcc), sps.width, sps.height


def _hvc1(pid: int, params: dict[tuple[int, int], bytes]) -> tuple[bytes, int, int]:
    """hvc1 + HEVCDecoderConfigurationRecord (14496-15 §8.3.3.1): every parameter set in the
    sample entry (array_completeness 1), none in the samples."""
    arrays = [(t, _sets(params, t)) for t in (nal.HEVC_VPS, nal.HEVC_SPS, nal.HEVC_PPS)]
    if not all(units for _, units in arrays):
        raise BadMedia(f"PID {pid}: no HEVC VPS, SPS and PPS in the segment")
    sps = nal.parse_hevc_sps(arrays[1][1][0])
    hvcc = hevc.hvcc_box(hevc.record_header(sps), [(0x80 | t, units) for t, units in arrays])
    return _visual_entry(b"hvc1", sps.width, sps.height, hvcc), sps.width, sps.height


def _audio_track(
    pid: int,
    packets: list[_Pes],
    timeline: _Timeline,
    budget: _Budget,
    state: TsState | None,
) -> _Track:
    """AAC from ADTS: frames may span PES packets, but the segment's first PES must open with
    one (its PTS is that frame's) and its last must close one."""
    if packets[0].pts is None:
        raise BadMedia(f"PID {pid}: the first AAC PES packet has no PTS")
    es = b"".join(p.payload for p in packets)
    view = memoryview(es)
    data: list[bytes | memoryview] = []
    config: tuple[int, int, int] | None = None
    pos, end = 0, len(es)
    while pos < end:
        if end - pos < 7:
            raise BadMedia(f"PID {pid}: truncated ADTS header at byte {pos} of the stream")
        b1, b2, b3, b4, b5, b6 = es[pos + 1 : pos + 7]
        if es[pos] != 0xFF or b1 & 0xF6 != 0xF0:  # syncword 0xFFF, layer 0
            raise BadMedia(f"PID {pid}: no ADTS sync word at byte {pos} of the stream")
        header = 7 if b1 & 1 else 9  # protection_absent 0: a CRC follows the header
        length = (b3 & 0x03) << 11 | b4 << 3 | b5 >> 5
        if length <= header or length > end - pos:
            raise BadMedia(
                f"PID {pid}: ADTS frame at byte {pos} declares {length} bytes, "
                f"{end - pos} left and a {header}-byte header"
            )
        if b6 & 0x03:
            raise BadMedia(f"PID {pid}: ADTS frames of several raw data blocks are not supported")
        frame_config = (b2 >> 6, (b2 >> 2) & 0x0F, (b2 & 0x01) << 2 | b3 >> 6)
        if config is None:
            config = frame_config
        elif frame_config != config:
            raise BadMedia(f"PID {pid}: the AAC configuration changes inside the segment")
        budget.take()
        data.append(view[pos + header : pos + length])
        pos += length
    if config is None:
        return _empty_track(pid)
    profile, rate_index, channel_config = config
    if rate_index >= len(_ADTS_RATES):
        raise BadMedia(f"PID {pid}: ADTS sampling_frequency_index {rate_index} is reserved")
    if channel_config == 0:
        raise BadMedia(f"PID {pid}: ADTS channel configuration 0 (in-band PCE) not supported")
    rate = _ADTS_RATES[rate_index]
    times = timeline.times[pid]
    first_pts = times[0][1]
    base = (first_pts * rate + VIDEO_TIMESCALE // 2) // VIDEO_TIMESCALE
    clock = state.clock(pid) if state else None
    if clock and abs(base - clock.next_decode_time) <= _AUDIO_SNAP:
        base = clock.next_decode_time
    n = len(data)
    # AudioSpecificConfig (14496-3 §1.6.2.1): object type = ADTS profile + 1, then the
    # rate index and channel configuration; GASpecificConfig's three flags are 0.
    asc = ((profile + 1) << 11 | rate_index << 7 | channel_config << 3).to_bytes(2, "big")
    return _Track(
        handler=b"soun",
        timescale=rate,
        entry=_mp4a(_ADTS_CHANNELS[channel_config], rate, asc),
        width=0,
        height=0,
        base_decode_time=base,
        clock=PidClock(pid, times[-1][1], AAC_FRAME_SAMPLES, base + n * AAC_FRAME_SAMPLES),
        durations=[AAC_FRAME_SAMPLES] * n,
        sizes=[len(d) for d in data],
        flags=[_SYNC_FLAGS] * n,
        cts=[0] * n,
        data=data,
    )


def _descriptor(tag: int, *payload: bytes) -> bytes:
    size = sum(len(p) for p in payload)
    assert size < 128  # one size byte (14496-1 §8.3.3): ours are a few dozen bytes
    return bytes([tag, size]) + b"".join(payload)


def _mp4a(channels: int, rate: int, asc: bytes) -> bytes:
    """mp4a AudioSampleEntry (14496-12 §12.2.3) + esds (14496-14 §5.6). Bitrates are written 0
    (unknown): they would vary per segment and the init must not."""
    decoder_config = _descriptor(
        0x04,
        bytes([0x40, 0x15]),  # objectTypeIndication MPEG-4 Audio; streamType 5 (audio) << 2 | 1
        bytes(11),  # bufferSizeDB, maxBitrate, avgBitrate
        _descriptor(0x05, asc),
    )
    es = _descriptor(0x03, b"\x00\x00\x00", decoder_config, _descriptor(0x06, b"\x02"))
    esds = full_box(b"esds", 0, 0, es)
    # 16.16 samplerate: rates above 65535 Hz do not fit; 0 there, as ffmpeg writes it.
    fixed_rate = rate << 16 if rate <= 0xFFFF else 0
    fields = struct.pack(">6xH8xHHHHI", 1, channels, 16, 0, 0, fixed_rate)
    return box(b"mp4a", fields, esds)


# ---- boxes -------------------------------------------------------------------------------


def _init_segment(tracks: list[_Track]) -> bytes:
    traks = []
    for track_id, t in enumerate(tracks, start=1):
        video = t.handler == b"vide"
        stbl = box(
            b"stbl",
            stsd(t.entry, 1),
            stts([]),
            stsc([], []),
            stsz(array("I")),
            chunk_offsets([], wide=False),
        )
        minf = box(b"minf", media_header(t.handler), dinf(), stbl)
        name = "VideoHandler" if video else "SoundHandler"
        mdia = box(b"mdia", mdhd(t.timescale, 0, _UND), hdlr(t.handler, name), minf)
        header = tkhd(track_id, 0, t.width, t.height, volume=0 if video else 0x0100)
        traks.append(box(b"trak", header, mdia))
    trex = [
        full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
        for track_id in range(1, len(tracks) + 1)
    ]
    moov = box(b"moov", mvhd(1000, 0, len(tracks) + 1), *traks, box(b"mvex", *trex))
    return ftyp(b"iso6", 0, (b"iso6", b"mp41")) + moov


_STYP = box(b"styp", b"msdh", bytes(4), b"msdh", b"msix")


def _fragment(sequence: int, tracks: list[_Track]) -> bytes:
    """styp + moof (a traf per track) + one mdat holding each track's samples in turn."""
    tables = [t.trun_table() for t in tracks]
    # traf header 8, tfhd 16, tfdt v1 20, trun 20 + its table; moof header 8, mfhd 16
    moof_size = 8 + 16 + sum(8 + 16 + 20 + 20 + len(table) for table in tables)
    offset = moof_size + 8  # data_offset counts from the moof (default-base-is-moof)
    trafs = []
    for track_id, (t, table) in enumerate(zip(tracks, tables, strict=True), start=1):
        trafs.append(
            box(
                b"traf",
                full_box(b"tfhd", 0, _DEFAULT_BASE_IS_MOOF, _U32.pack(track_id)),
                full_box(b"tfdt", 1, 0, struct.pack(">Q", t.base_decode_time)),
                full_box(b"trun", 1, _TRUN_FLAGS, struct.pack(">Ii", len(t.sizes), offset), table),
            )
        )
        offset += sum(t.sizes)
    moof = box(b"moof", full_box(b"mfhd", 0, 0, _U32.pack(sequence)), *trafs)
    assert len(moof) == moof_size
    payload = [d for t in tracks for d in t.data]
    mdat = box_header(b"mdat", sum(sum(t.sizes) for t in tracks))
    return b"".join([_STYP, moof, mdat, *payload])
