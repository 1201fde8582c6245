"""Helpers for the progressive-MP4 tests: fixture segments, a box reader, a real server thread."""

from __future__ import annotations

import asyncio
import hashlib
import re
import struct
import subprocess
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment
from packager.media.rewrite import shift_decode_times
from packager.store.base import Store
from packager.store.model import ClipRendition, Timing
from tests.stored_segment import Segment

T = TypeVar("T")

LADDER_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "ladder"
SEGMENTS_PER_RENDITION = 6
AAC_FRAME = Fraction(1024, 48000)
VIDEO_FRAME = Fraction(1, 30)


@cache
def fixture_init(rendition: int) -> InitSegment:
    return parse_init((LADDER_DIR / str(rendition) / f"init_{rendition}.mp4").read_bytes())


@cache
def _segment_bytes(rendition: int, index: int) -> bytes:
    return (LADDER_DIR / str(rendition) / f"index{index}.m4s").read_bytes()


def fixture_segments(
    rendition: int, indexes: Sequence[int], start: float = 1_800_000_000.0
) -> list[Segment]:
    """Stored segments of the ladder, as ingest makes them; index k >= 6 replays later loops
    (tfdt moved on, as the demo feed does); a jump back in `indexes` marks a discontinuity."""
    init = fixture_init(rendition)
    loop_ticks = {t.track_id: 12 * t.timescale for t in init.tracks}
    out: list[Segment] = []
    for seq, k in enumerate(indexes):
        loops, i = divmod(k, SEGMENTS_PER_RENDITION)
        data = _segment_bytes(rendition, i)
        if loops:
            data = shift_decode_times(data, {tid: loops * t for tid, t in loop_ticks.items()})
        media = parse_segment(data, init)
        main = media.track(init.main.track_id)
        assert main is not None
        prev = out[-1] if out else None
        out.append(
            Segment(
                seq=seq,
                name=f"index{k}.m4s",
                data=data,
                init=init,
                media=media,
                start=prev.end if prev else start,
                duration=main.duration / init.main.timescale,
                discontinuity=prev is not None
                and prev.main.end_decode_time != main.base_decode_time,
                timing=Timing.CONTINUED,
            )
        )
    return out


async def stored_segments(store: Store, cr: ClipRendition) -> list[Segment]:
    """A clip rendition's segments as the MP4 builder takes them, read back from a store."""
    out = []
    for seq, ref in enumerate(cr.segments):
        data = await store.segment_data(ref.key)
        init = await store.init(ref.init_id)
        out.append(
            Segment(
                seq=seq,
                name=ref.name,
                data=data,
                init=init,
                media=parse_segment(data, init),
                start=ref.start,
                duration=ref.duration,
                discontinuity=ref.discontinuity,
                timing=Timing.CONTINUED,
            )
        )
    return out


# ---- a small MP4 reader: the progressive file as the tests see it -----------------------


def top_boxes(data: bytes | memoryview) -> list[tuple[bytes, int, int, int]]:
    """(type, start, header size, end) of each top-level box, 64-bit sizes included."""
    out = []
    pos = 0
    while pos < len(data):
        size, typ = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = len(data) - pos
        out.append((bytes(typ), pos, header, pos + size))
        pos += size
    return out


def children(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    """Child boxes of a container's payload [start, end): type -> [(payload start, end)]."""
    out: dict[bytes, list[tuple[int, int]]] = {}
    pos = start
    while pos < end:
        size, typ = struct.unpack_from(">I4s", data, pos)
        out.setdefault(bytes(typ), []).append((pos + 8, pos + size))
        pos += size
    return out


@dataclass
class ReadTrack:
    """One trak of a progressive MP4, its tables expanded per sample."""

    handler: str
    timescale: int
    media_duration: int
    tkhd_duration: int
    width: float
    height: float
    edits: list[tuple[int, int]]  # (segment_duration, media_time)
    durations: list[int]
    cts: list[int]
    sync: list[int] | None  # 1-based sync sample numbers; None: all are sync
    sizes: list[int]
    offsets: list[int]  # per sample, absolute in the file
    chunk_offsets: list[int]
    stsc: list[tuple[int, int, int]]
    co64: bool
    stsd: bytes

    def sample_ranges(self) -> Iterator[tuple[int, int]]:
        for off, size in zip(self.offsets, self.sizes, strict=True):
            yield off, off + size


@dataclass
class ReadMovie:
    timescale: int
    duration: int
    tracks: list[ReadTrack]

    def track(self, handler: str) -> ReadTrack:
        return next(t for t in self.tracks if t.handler == handler)


def _full(data: bytes, pos: int) -> tuple[int, int]:
    word = struct.unpack_from(">I", data, pos)[0]
    return word >> 24, word & 0xFFFFFF


def read_moov(data: bytes) -> ReadMovie:
    """Parse our moov with struct, independently of the writer, and expand every table."""
    moov = next(b for b in top_boxes(data) if b[0] == b"moov")
    top = children(data, moov[1] + moov[2], moov[3])
    p = top[b"mvhd"][0][0]
    version, _ = _full(data, p)
    if version == 1:
        timescale, duration = struct.unpack_from(">IQ", data, p + 20)
    else:
        timescale, duration = struct.unpack_from(">II", data, p + 12)
    tracks = [_read_trak(data, s, e) for s, e in top[b"trak"]]
    return ReadMovie(timescale, duration, tracks)


def _read_trak(data: bytes, start: int, end: int) -> ReadTrack:
    trak = children(data, start, end)
    p = trak[b"tkhd"][0][0]
    version, _ = _full(data, p)
    tkhd_duration = struct.unpack_from(
        ">Q" if version else ">I", data, p + (28 if version else 20)
    )[0]
    w, h = struct.unpack_from(">II", data, trak[b"tkhd"][0][1] - 8)
    edits: list[tuple[int, int]] = []
    if b"edts" in trak:
        es, ee = trak[b"edts"][0]
        p = children(data, es, ee)[b"elst"][0][0]
        version, _ = _full(data, p)
        (count,) = struct.unpack_from(">I", data, p + 4)
        fmt = ">Qqhh" if version else ">Iihh"
        for k in range(count):
            d, t, _, _ = struct.unpack_from(fmt, data, p + 8 + k * struct.calcsize(fmt))
            edits.append((d, t))
    mdia = children(data, *trak[b"mdia"][0])
    p = mdia[b"mdhd"][0][0]
    version, _ = _full(data, p)
    if version:
        timescale, media_duration = struct.unpack_from(">IQ", data, p + 20)
    else:
        timescale, media_duration = struct.unpack_from(">II", data, p + 12)
    handler = data[mdia[b"hdlr"][0][0] + 8 : mdia[b"hdlr"][0][0] + 12].decode()
    minf = children(data, *mdia[b"minf"][0])
    stbl_s, stbl_e = minf[b"stbl"][0]
    stbl = children(data, stbl_s, stbl_e)

    def table(typ: bytes, fmt: str) -> list[tuple[int, ...]]:
        q = stbl[typ][0][0]
        (n,) = struct.unpack_from(">I", data, q + 4)
        size = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, data, q + 8 + k * size) for k in range(n)]

    durations = [d for n, d in table(b"stts", ">II") for _ in range(n)]
    cts: list[int] = [0] * len(durations)
    if b"ctts" in stbl:
        version, _ = _full(data, stbl[b"ctts"][0][0])
        cts = [c for n, c in table(b"ctts", ">Ii" if version else ">II") for _ in range(n)]
    sync = [n for (n,) in table(b"stss", ">I")] if b"stss" in stbl else None
    q = stbl[b"stsz"][0][0]
    shared, count = struct.unpack_from(">II", data, q + 4)
    sizes = [shared] * count if shared else list(struct.unpack_from(f">{count}I", data, q + 12))
    co64 = b"co64" in stbl
    chunk_offsets = [o for (o,) in table(b"co64" if co64 else b"stco", ">Q" if co64 else ">I")]
    stsc = [tuple(e) for e in table(b"stsc", ">III")]
    offsets: list[int] = []
    sample = 0
    for c, base in enumerate(chunk_offsets, start=1):
        per = next(n for first, n, _ in reversed(stsc) if first <= c)
        pos = base
        for _ in range(per):
            offsets.append(pos)
            pos += sizes[sample]
            sample += 1
    s_s, s_e = stbl[b"stsd"][0]
    return ReadTrack(
        handler=handler,
        timescale=timescale,
        media_duration=media_duration,
        tkhd_duration=tkhd_duration,
        width=w / 65536,
        height=h / 65536,
        edits=edits,
        durations=durations,
        cts=cts,
        sync=sync,
        sizes=sizes,
        offsets=offsets,
        chunk_offsets=chunk_offsets,
        stsc=stsc,  # type: ignore[arg-type]
        co64=co64,
        stsd=data[s_s - 8 : s_e],
    )


def source_sample_hashes(segments: Sequence[Segment], handler: str) -> list[str]:
    """sha256 of every sample of the track with that handler that the MP4 should carry, straight
    from the segments: all of them, but an audio frame that overlaps the one before it by more
    than half its duration (a repeated frame at a segment boundary) is left out; time going
    back by more than half a second is a restart, where nothing overlaps."""
    out = []
    end: int | None = None  # source decode time where the last kept sample ends
    for seg in segments:
        track = next(t for t in seg.init.tracks if t.handler == handler)
        samples = seg.media.track(track.track_id)
        assert samples is not None
        dts = samples.base_decode_time
        for off, size, duration in zip(
            samples.offsets, samples.sizes, samples.durations, strict=True
        ):
            overlap = end - dts if end is not None else 0
            if 2 * overlap > track.timescale:  # time went back: a restart, a new timeline
                overlap = 0
            if handler == "soun" and 2 * overlap > duration:
                dts += duration
                continue
            out.append(hashlib.sha256(seg.data[off : off + size]).hexdigest())
            dts += duration
            end = dts
    return out


# ---- ffmpeg as the judge -------------------------------------------------------------------

_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.e+-]+)")
_NB = re.compile(r"nb_samples:\s*(\d+)")
_DUR = re.compile(r"duration_time:\s*([\d.]+)")


@dataclass
class Decoded:
    """What ffmpeg saw decoding a file: stream starts and ends (seconds), and its stderr."""

    video_first: float
    video_end: float
    audio_first: float
    audio_end: float
    duration: float  # the container duration `ffmpeg -i` prints
    start: float
    errors: str


def decode_with_ffmpeg(ffmpeg: str, url: str) -> Decoded:
    """Decode every frame with -copyts, so showinfo prints the file's own timestamps."""
    errors = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", url, "-map", "0", "-f", "null", "-"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert errors.returncode == 0, errors.stderr.decode()

    # One stream per run: two filter threads writing to one stderr can splice their lines.
    def showinfo(stream: str, flt: str, tag: str) -> tuple[str, list[str]]:
        run = subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-hide_banner",
                "-copyts",
                "-i",
                url,
                "-map",
                stream,
                "-filter:" + stream[-3],
                flt,
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        text = run.stderr.decode()
        assert run.returncode == 0, text
        return text, [ln for ln in text.splitlines() if tag in ln and _SHOWINFO.search(ln)]

    text, video = showinfo("0:v:0", "showinfo", "Parsed_showinfo")
    _, audio = showinfo("0:a:0", "ashowinfo", "Parsed_ashowinfo")
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+), start: (-?[\d.]+)", text)
    assert m, text
    duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    assert video and audio, text

    def pts(line: str) -> float:
        m = _SHOWINFO.search(line)
        assert m
        return float(m[3])

    vdur = _DUR.search(video[-1])
    nb = _NB.search(audio[-1])
    assert vdur and nb
    return Decoded(
        video_first=min(pts(ln) for ln in video),
        video_end=max(pts(ln) for ln in video) + float(vdur[1]),
        audio_first=pts(audio[0]),
        audio_end=pts(audio[-1]) + int(nb[1]) / 48000,
        duration=duration,
        start=float(m[4]),
        errors=errors.stderr.decode(),
    )


# ---- a real server on a loopback port, in its own thread -----------------------------------


class ServerThread:
    """Serve an aiohttp app on 127.0.0.1:<free port> from a background thread.

    Lets synchronous code (hypothesis, subprocess ffmpeg) talk real HTTP to the app.
    """

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server thread did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's own loop (feeding, cutting) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)
