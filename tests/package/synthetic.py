"""Segments made to order: of sample tables only (the builders never read sample data, only
its offsets, so an hour, or a file past 4 GiB, costs tables and nothing else), or fixture
segments as an encoder with gaps, jumps or another clock would have sent them."""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from packager.media.fragment import parse_segment
from packager.media.model import InitSegment, SegmentMedia, Track, TrackSamples
from packager.media.rewrite import shift_decode_times
from tests.mp4_support import fixture_init
from tests.stored_segment import Segment


class FakeSegment:
    """What both builders read of a stored segment; `data` only names it (identity). Not a
    dataclass: hypothesis would print its init's bytes in every failing example."""

    __slots__ = ("data", "init", "media")

    def __init__(self, data: object, init: InitSegment, media: SegmentMedia) -> None:
        self.data = data
        self.init = init
        self.media = media

    def __repr__(self) -> str:  # hypothesis prints failing examples: the tables, not the init
        kinds = ",".join(f"{t.track_id}:{t.handler}@{t.timescale}" for t in self.init.tracks)
        tracks = ", ".join(
            f"{t.track_id}: tfdt={t.base_decode_time} d={list(t.durations)} s={list(t.sizes)} "
            f"cts={list(t.cts_offsets)} sync={list(t.sync)} at={list(t.offsets)}"
            for t in self.media.tracks
        )
        return f"<init {id(self.init):x} [{kinds}] {tracks}>"


@dataclass(frozen=True)
class TrackPlan:
    """One track's samples in one synthetic segment."""

    base_decode_time: int
    durations: Sequence[int]
    sizes: Sequence[int]
    cts: Sequence[int] = ()
    sync: Sequence[int] = ()  # 1/0 per sample; empty: all sync
    gaps: Sequence[int] = ()  # bytes left before each sample (0: contiguous)


def samples(track_id: int, plan: TrackPlan, at: int) -> tuple[TrackSamples, int]:
    """The track's samples laid out from byte `at`; returns them and where they end."""
    offsets = array("Q")
    for k, size in enumerate(plan.sizes):
        at += plan.gaps[k] if plan.gaps else 0
        offsets.append(at)
        at += size
    n = len(plan.sizes)
    return (
        TrackSamples(
            track_id,
            plan.base_decode_time,
            array("I", plan.durations),
            array("I", plan.sizes),
            offsets,
            array("i", plan.cts or [0] * n),
            array("B", plan.sync or [1] * n),
        ),
        at,
    )


def segment(
    init: InitSegment, plans: Sequence[tuple[int, TrackPlan]], header: int = 100
) -> FakeSegment:
    """A segment whose tracks (id, plan) lie one after another in that order, from `header`."""
    tracks = []
    at = header
    for track_id, plan in plans:
        track, at = samples(track_id, plan, at)
        tracks.append(track)
    order = {t.track_id: k for k, t in enumerate(init.tracks)}
    tracks.sort(key=lambda t: order[t.track_id])  # parse_segment lists tracks in init order
    return FakeSegment(object(), init, SegmentMedia(tuple(tracks)))


def ladder_init() -> InitSegment:
    """The fixture ladder's init: video 1 at 15360 Hz (B-frames, edit list), audio 2 at 48 kHz."""
    return fixture_init(0)


def with_clock(init: InitSegment, handler: str, factor: int) -> InitSegment:
    """The same init with one track's clock `factor` times faster (a re-configured encoder)."""
    tracks = tuple(
        dataclasses.replace(
            t,
            timescale=factor * t.timescale,
            edits=tuple(
                dataclasses.replace(e, media_time=factor * e.media_time if e.media_time > 0 else -1)
                for e in t.edits
            ),
        )
        if t.handler == handler
        else t
        for t in init.tracks
    )
    return dataclasses.replace(init, tracks=tracks)


def with_stsd(init: InitSegment, handler: str, tail: bytes) -> InitSegment:
    """The same init with another sample description for one track (a new codec config)."""
    tracks: list[Track] = [
        dataclasses.replace(t, stsd=t.stsd[: -len(tail)] + tail) if t.handler == handler else t
        for t in init.tracks
    ]
    return dataclasses.replace(init, tracks=tuple(tracks))


def shifted(segments: Sequence[Segment], shifts: Sequence[dict[int, int]]) -> list[Segment]:
    """The segments with each one's tracks moved by its own tfdt shift (ticks per track id),
    re-parsed as ingest would: an encoder's gaps, overlaps and jumps, made to order."""
    out = []
    for seg, shift in zip(segments, shifts, strict=True):
        data = shift_decode_times(seg.data, shift) if shift else seg.data
        out.append(dataclasses.replace(seg, data=data, media=parse_segment(data, seg.init)))
    return out


def reclocked(seg: Segment, handler: str, factor: int) -> Segment:
    """The segment as an encoder whose `handler` track's clock is `factor` times faster would
    have sent it: a new init, tfdt, durations and composition offsets to match."""
    init = with_clock(seg.init, handler, factor)
    track_id = next(t.track_id for t in seg.init.tracks if t.handler == handler)
    tracks = tuple(
        dataclasses.replace(
            t,
            base_decode_time=factor * t.base_decode_time,
            durations=array("I", (factor * d for d in t.durations)),
            cts_offsets=array("i", (factor * c for c in t.cts_offsets)),
        )
        if t.track_id == track_id
        else t
        for t in seg.media.tracks
    )
    return dataclasses.replace(seg, init=init, media=SegmentMedia(tracks))
