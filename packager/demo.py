"""`serve --demo`: replay the fixture ladder as a live stream, as if an encoder pushed it.

Each replayed segment goes through the same `Ingest.receive` an encoder's PUT reaches (its
playlist first, then the segment), re-muxed so that every track's timeline keeps growing
without a gap or an overlap, and with a program-date-time of the wall clock.

A 12 s loop holds 562.5 AAC frames' worth of time, so no whole-frame shift of the audio can
line up with the video's at every loop point: shifting both by 12 s overlapped the audio by
one frame per loop (Chromium's native HLS stalled there for good). Each track instead goes on
from its own end, and the audio drops (or repeats) its first frame of a segment whenever it
would drift from the video by more than half a frame, as an encoder resampling its clock does.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from packager.clock import Clock
from packager.media.boxwriter import TrackFragment, media_segment
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment, SegmentMedia, TrackSamples
from packager.service.ingest import Ingest

log = logging.getLogger(__name__)

DEFAULT_LADDER = Path(__file__).resolve().parent.parent / "fixtures" / "ladder"
DEMO_STREAM = "demo"


@dataclass(frozen=True)
class RecordedRendition:
    name: str
    init: bytes
    segments: tuple[bytes, ...]
    track_timescales: dict[int, int]

    @property
    def parsed_init(self) -> InitSegment:
        return parse_init(self.init)


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


class _Replay:
    """One rendition being replayed: its recorded segments parsed once, and where each track's
    timeline has got to."""

    def __init__(self, rendition: RecordedRendition) -> None:
        self.rendition = rendition
        self.init = rendition.parsed_init
        self.main_id = self.init.main.track_id
        self.segments = [(data, parse_segment(data, self.init)) for data in rendition.segments]
        first = self.segments[0][1]
        self.next_dts = {t.track_id: t.base_decode_time for t in first.tracks}

    def segment(self, i: int, sequence: int) -> bytes:
        data, media = self.segments[i]
        main = media.track(self.main_id)
        assert main is not None  # parse_segment found the main track's samples at load
        timescales = self.rendition.track_timescales
        # How far the main track's timeline has moved from the recording, in seconds.
        moved = (self.next_dts[self.main_id] - main.base_decode_time) / timescales[self.main_id]
        fragments = []
        for samples in media.tracks:
            tid = samples.track_id
            keep = list(range(samples.count))
            if tid != self.main_id and keep:
                ideal = samples.base_decode_time + round(moved * timescales[tid])
                drift = self.next_dts[tid] - ideal
                while len(keep) > 1 and drift > samples.durations[keep[0]] / 2:
                    drift -= samples.durations[keep[0]]  # ahead: drop the first frame
                    keep.pop(0)
                while drift < -samples.durations[keep[0]] / 2:
                    drift += samples.durations[keep[0]]  # behind: repeat it
                    keep.insert(0, keep[0])
            fragments.append(_fragment(data, samples, keep, self.next_dts[tid]))
            self.next_dts[tid] += sum(samples.durations[k] for k in keep)
        return media_segment(sequence, fragments)


def _fragment(data: bytes, samples: TrackSamples, keep: list[int], dts: int) -> TrackFragment:
    view = memoryview(data)
    return TrackFragment(
        track_id=samples.track_id,
        base_decode_time=dts,
        durations=[samples.durations[k] for k in keep],
        sizes=[samples.sizes[k] for k in keep],
        sync=[samples.sync[k] for k in keep],
        cts_offsets=[samples.cts_offsets[k] for k in keep],
        data=b"".join(
            view[samples.offsets[k] : samples.offsets[k] + samples.sizes[k]] for k in keep
        ),
    )


class DemoFeed:
    def __init__(
        self,
        ingest: Ingest | None,
        ladder: list[RecordedRendition],
        clock: Clock,
        stream_id: str = DEMO_STREAM,
    ) -> None:
        self.ingest = ingest
        self.ladder = ladder
        self.clock = clock
        self.stream_id = stream_id
        self.replays = [_Replay(r) for r in ladder]
        first = self.replays[0]
        self.durations = [
            _main(media, first.main_id).duration / first.init.main.timescale
            for _, media in first.segments
        ]
        self.loop_seconds = sum(self.durations)
        self.pushed = 0

    def segment_start(self, k: int, origin: float) -> float:
        loops, i = divmod(k, len(self.durations))
        return origin + loops * self.loop_seconds + sum(self.durations[:i])

    def files(self, k: int, start: float) -> list[tuple[str, str, bytes]]:
        """What an encoder PUTs for segment number `k` of the endless replay, per rendition:
        (rendition, file name, body), the init segment first time, then the playlist and the
        segment. `k` must be the next one: each track goes on from where the last left it."""
        i = k % len(self.durations)
        out: list[tuple[str, str, bytes]] = []
        for replay in self.replays:
            rendition = replay.rendition
            if self.pushed == 0:  # an encoder starts with its init segment
                out.append((rendition.name, "init.mp4", rendition.init))
            name = f"live{k}.m4s"
            playlist = (
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
                f'#EXT-X-MEDIA-SEQUENCE:{k}\n#EXT-X-MAP:URI="init.mp4"\n'
                f"#EXTINF:{self.durations[i]:.6f},\n"
                f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(start)}\n{name}\n"
            )
            out.append((rendition.name, "index.m3u8", playlist.encode()))
            out.append((rendition.name, name, replay.segment(i, k + 1)))
        self.pushed += 1
        return out

    async def push(self, k: int, start: float) -> None:
        """Push segment number `k` of the endless replay through the ingest."""
        assert self.ingest is not None, "a feed without an ingest only makes files"
        for rendition, name, body in self.files(k, start):
            await self.ingest.receive(self.stream_id, rendition, name, body)

    async def run(self, backfill_seconds: float = 30.0) -> None:
        """Fill the DVR with `backfill_seconds` of the past at once, then go on in real time."""
        backfill = max(1, round(backfill_seconds / (self.loop_seconds / len(self.durations))))
        origin = self.clock() - sum(
            self.durations[k % len(self.durations)] for k in range(backfill)
        )
        for k in range(backfill):
            await self.push(k, self.segment_start(k, origin))
        log.info("demo stream %r: %d s in the DVR, live from now", self.stream_id, backfill_seconds)
        k = backfill
        while True:
            start = self.segment_start(k, origin)
            duration = self.durations[k % len(self.durations)]
            # An encoder sends a segment once it has all of it: at its end.
            await asyncio.sleep(max(0.0, start + duration - self.clock()))
            try:
                await self.push(k, start)
            except Exception:
                log.exception("demo feed failed to push segment %d", k)
            k += 1


def _main(media: SegmentMedia, track_id: int) -> TrackSamples:
    samples = media.track(track_id)
    assert samples is not None  # parse_segment found the main track's samples at load
    return samples
