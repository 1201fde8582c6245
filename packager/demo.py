"""`serve --demo`: replay the fixture ladder as a live stream, as if an encoder pushed it.

Each replayed segment goes through the same `Ingest.receive` an encoder's PUT reaches (its
playlist first, then the segment), with tfdt moved forward by whole loops so the media
timeline keeps growing, and a program-date-time of the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from packager.clock import Clock
from packager.ingest import Ingest
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.rewrite import shift_decode_times

log = logging.getLogger(__name__)

DEFAULT_LADDER = Path(__file__).resolve().parent.parent / "fixtures" / "ladder"
DEMO_STREAM = "demo"


@dataclass(frozen=True)
class RecordedRendition:
    name: str
    init: bytes
    segments: tuple[bytes, ...]
    track_timescales: dict[int, int]


def load_ladder(directory: Path) -> list[RecordedRendition]:
    """Every `<dir>/<rendition>/` with an init and `.m4s` segments, in playlist order."""
    out: list[RecordedRendition] = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        inits = sorted(sub.glob("*.mp4"))
        segs = sorted(sub.glob("*.m4s"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
        if not inits or not segs:
            continue
        init_bytes = inits[0].read_bytes()
        init = parse_init(init_bytes)
        out.append(
            RecordedRendition(
                name=sub.name,
                init=init_bytes,
                segments=tuple(p.read_bytes() for p in segs),
                track_timescales={t.track_id: t.timescale for t in init.tracks},
            )
        )
    if not out:
        raise FileNotFoundError(f"no recorded ladder under {directory}")
    return out


def _pdt(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


class DemoFeed:
    def __init__(
        self,
        ingest: Ingest,
        ladder: list[RecordedRendition],
        clock: Clock,
        stream_id: str = DEMO_STREAM,
    ) -> None:
        self.ingest = ingest
        self.ladder = ladder
        self.clock = clock
        self.stream_id = stream_id
        first = ladder[0]
        init = parse_init(first.init)
        self.durations = [
            parse_segment(s, init).track(init.main.track_id).duration / init.main.timescale  # type: ignore[union-attr]
            for s in first.segments
        ]
        self.loop_seconds = sum(self.durations)
        self.pushed = 0

    def segment_start(self, k: int, origin: float) -> float:
        loops, i = divmod(k, len(self.durations))
        return origin + loops * self.loop_seconds + sum(self.durations[:i])

    def push(self, k: int, start: float) -> None:
        """Push segment number `k` of the endless replay, for every rendition."""
        loops, i = divmod(k, len(self.durations))
        for rendition in self.ladder:
            if self.pushed == 0:  # an encoder starts with its init segment
                self.ingest.receive(self.stream_id, rendition.name, "init.mp4", rendition.init)
            shift = {
                tid: loops * round(self.loop_seconds * ts)
                for tid, ts in rendition.track_timescales.items()
            }
            data = shift_decode_times(rendition.segments[i], shift)
            name = f"live{k}.m4s"
            playlist = (
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
                f'#EXT-X-MEDIA-SEQUENCE:{k}\n#EXT-X-MAP:URI="init.mp4"\n'
                f"#EXTINF:{self.durations[i]:.6f},\n"
                f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(start)}\n{name}\n"
            )
            self.ingest.receive(self.stream_id, rendition.name, "index.m3u8", playlist.encode())
            self.ingest.receive(self.stream_id, rendition.name, name, data)
        self.pushed += 1

    async def run(self, backfill_seconds: float = 30.0) -> None:
        """Fill the DVR with `backfill_seconds` of the past at once, then go on in real time."""
        backfill = max(1, round(backfill_seconds / (self.loop_seconds / len(self.durations))))
        origin = self.clock() - sum(
            self.durations[k % len(self.durations)] for k in range(backfill)
        )
        for k in range(backfill):
            self.push(k, self.segment_start(k, origin))
        log.info("demo stream %r: %d s in the DVR, live from now", self.stream_id, backfill_seconds)
        k = backfill
        while True:
            start = self.segment_start(k, origin)
            duration = self.durations[k % len(self.durations)]
            # An encoder sends a segment once it has all of it: at its end.
            await asyncio.sleep(max(0.0, start + duration - self.clock()))
            try:
                self.push(k, start)
            except Exception:
                log.exception("demo feed failed to push segment %d", k)
            k += 1
