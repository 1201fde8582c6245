"""A segment's share of a progressive MP4's sample tables, as values (sans-IO).

`PreparedSegment` is what ingest keeps of each segment for MP4 layouts instead of its
per-sample arrays (packager.package.tables prepares and joins them): plain ints and bytes, so
a shared store (Redis) holds it as well as the heap, through `to_bytes`/`from_bytes`. Table
entries are big-endian, as the file carries them; chunk rows and piece lists are little-endian
int64, the builder's own arithmetic. It lives here, beside the parsed media it comes from, so
that the store, which keeps it, need not reach up into the packaging layer.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat

from packager.media.model import TrackSamples

_LITTLE = sys.byteorder == "little"
RUN = struct.Struct(">II")  # stts entry: sample_count, sample_delta
CTS_RUN = struct.Struct(">Ii")  # ctts entry: sample_count, sample_offset (signed, §8.6.1.3)
ROW = struct.Struct("<4q")  # chunk: samples, source start, source end, place in the payload
_FORMAT = 1  # of to_bytes; from_bytes refuses others


def from_big_endian(typecode: str, data: bytes | memoryview) -> array[int]:
    values = array(typecode)
    values.frombytes(data)
    if _LITTLE:
        values.byteswap()
    return values


def little_endian(values: Sequence[int]) -> bytes:
    """int64 values as the piece lists store them."""
    out = array("q", values)
    if not _LITTLE:
        out.byteswap()
    return out.tobytes()


@dataclass(frozen=True, slots=True)
class PreparedTrack:
    """One track's samples of one segment, as the tables of a progressive MP4 take them."""

    track_id: int
    base_decode_time: int  # tfdt, in the track's timescale
    count: int
    duration: int  # sum of the sample durations
    last_duration: int
    composition_start: int  # earliest composition time, from base_decode_time
    sample_size: int  # the size of every sample when they are all alike, else -1
    cts_min: int
    cts_max: int
    cts_first: int
    cts_last: int
    place: int  # where the first chunk lies in the segment's payload (see PreparedSegment)
    sizes: bytes  # stsz entries: u32 per sample
    stts: bytes  # stts entries (sample_count, sample_delta), maximal runs
    ctts: bytes  # ctts entries (sample_count, sample_offset as i32), maximal runs
    sync: bytes | None  # 0-based numbers of the sync samples, u32; None: every sample is one
    chunks: bytes  # ROW per run of contiguous sample bytes, in decode order

    def chunk_rows(self) -> Iterator[tuple[int, int, int, int]]:
        """(samples, source start, source end, place in the segment's payload) per chunk."""
        return ROW.iter_unpack(self.chunks)

    def durations(self) -> Iterator[int]:
        for count, delta in RUN.iter_unpack(self.stts):
            yield from repeat(delta, count)

    def samples(self) -> TrackSamples:
        """The per-sample arrays back, sample offsets included: for the rare joins that need
        them (a new clock to rescale to, a trim that is not within the first runs)."""
        durations = array("I", self.durations())
        cts = array("i")
        for count, value in CTS_RUN.iter_unpack(self.ctts):
            cts.extend(repeat(value, count))
        sizes = from_big_endian("I", self.sizes)
        sync = array("B", [1]) * self.count
        if self.sync is not None:
            sync = array("B", [0]) * self.count
            for number in from_big_endian("I", self.sync):
                sync[number] = 1
        offsets = array("Q")
        lo = 0
        for samples, start, _, _ in self.chunk_rows():
            offsets.extend(accumulate(sizes[lo : lo + samples - 1], initial=start))
            lo += samples
        return TrackSamples(
            self.track_id, self.base_decode_time, durations, sizes, offsets, cts, sync
        )


@dataclass(frozen=True, slots=True)
class PreparedSegment:
    """A media segment's share of every sample table, and of the mdat: its chunks in the
    segment's byte order, neighbours joined into pieces, `payload` bytes in all."""

    tracks: tuple[PreparedTrack, ...]  # the tracks with samples, in the init's order
    piece_starts: bytes  # little-endian int64 per piece: where it starts in the segment
    piece_lengths: bytes  # little-endian int64 per piece
    payload: int
    track_ids: tuple[int, ...] = field(init=False)  # of `tracks`: a join's lookup key

    def __post_init__(self) -> None:
        object.__setattr__(self, "track_ids", tuple(t.track_id for t in self.tracks))

    @property
    def nbytes(self) -> int:
        """Memory it takes, for the budget: its byte strings and the objects around them."""
        blobs = len(self.piece_starts) + len(self.piece_lengths)
        for t in self.tracks:
            blobs += len(t.sizes) + len(t.stts) + len(t.ctts) + len(t.chunks)
            blobs += len(t.sync) if t.sync is not None else 0
        return blobs + 200 + 600 * len(self.tracks)

    def to_bytes(self) -> bytes:
        """A self-contained byte string: a shared store keeps this, `from_bytes` reads it."""
        parts = [_HEAD.pack(_FORMAT, len(self.tracks), self.payload)]
        parts += [_blob(self.piece_starts), _blob(self.piece_lengths)]
        for t in self.tracks:
            parts.append(_NUMBERS.pack(*(getattr(t, name) for name in _NUMBER_FIELDS)))
            parts += [_blob(t.sizes), _blob(t.stts), _blob(t.ctts), _blob(t.sync), _blob(t.chunks)]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> PreparedSegment:
        if len(data) < _HEAD.size:
            raise ValueError("truncated prepared tables")
        fmt, count, payload = _HEAD.unpack_from(data)
        if fmt != _FORMAT:
            raise ValueError(f"prepared tables of format {fmt}, not {_FORMAT}")
        reader = _Reader(data, _HEAD.size)
        piece_starts, piece_lengths = reader.blob(), reader.blob()
        tracks = []
        for _ in range(count):
            numbers = dict(zip(_NUMBER_FIELDS, reader.numbers(), strict=True))
            sizes, stts, ctts = reader.blob(), reader.blob(), reader.blob()
            sync, chunks = reader.blob_or_none(), reader.blob()
            tracks.append(
                PreparedTrack(
                    **numbers, sizes=sizes, stts=stts, ctts=ctts, sync=sync, chunks=chunks
                )
            )
        if reader.at != len(data):
            raise ValueError("trailing bytes after the prepared tables")
        return cls(tuple(tracks), piece_starts, piece_lengths, payload)


_HEAD = struct.Struct("<BIq")  # format, tracks, payload
_NUMBER_FIELDS = (
    "track_id",
    "base_decode_time",
    "count",
    "duration",
    "last_duration",
    "composition_start",
    "sample_size",
    "cts_min",
    "cts_max",
    "cts_first",
    "cts_last",
    "place",
)
_NUMBERS = struct.Struct(f"<{len(_NUMBER_FIELDS)}q")
_NONE = 2**32 - 1  # the length that stands for None


def _blob(data: bytes | None) -> bytes:
    if data is None:
        return struct.pack("<I", _NONE)
    return struct.pack("<I", len(data)) + data


class _Reader:
    def __init__(self, data: bytes, at: int) -> None:
        self.data = data
        self.at = at

    def numbers(self) -> tuple[int, ...]:
        if self.at + _NUMBERS.size > len(self.data):
            raise ValueError("truncated prepared tables")
        values = _NUMBERS.unpack_from(self.data, self.at)
        self.at += _NUMBERS.size
        return values

    def blob_or_none(self) -> bytes | None:
        if self.at + 4 > len(self.data):
            raise ValueError("truncated prepared tables")
        (n,) = struct.unpack_from("<I", self.data, self.at)
        self.at += 4
        if n == _NONE:
            return None
        if self.at + n > len(self.data):
            raise ValueError("truncated prepared tables")
        self.at += n
        return self.data[self.at - n : self.at]

    def blob(self) -> bytes:
        blob = self.blob_or_none()
        if blob is None:
            raise ValueError("a table of the prepared tables is missing")
        return blob
