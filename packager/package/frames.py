"""Frame-accurate cuts: which frames of a clip's segments are shown, on the wall clock (sans-IO).

The mapping between wall clock and media time, defined here once:

- A sample's place on its source's *presentation timeline* is `presentation()`: its composition
  time (tfdt + durations before it + its composition offset) with the init's edit list applied
  (empty edits before the media, the media edit's media_time subtracted), in seconds. That is
  exactly where the MP4 builder (packager.package.mp4) places it.
- A segment's `start` (SegmentRef.start, from EXT-X-PROGRAM-DATE-TIME or the timeline before it)
  is the wall-clock time of its main track's first shown frame, the sample with the smallest
  composition time. Any sample of the segment, of any track, is shown at
  `start + presentation(sample) - presentation(first shown frame)`.

So frames of constant-rate video tile `[start, start + duration)` of each segment, and audio is
placed against them as the encoder made it. A frame-accurate clip of `[t0, t1)` shows the first
frame at or after t0 and the last before t1. Times given to the millisecond (program-date-times,
Livepeer's startTime) name the frame they round to: FRAME_EPSILON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

from packager.media.model import InitSegment, Track
from packager.media.prepared import PreparedSegment, PreparedTrack

# Half a millisecond: a time to the millisecond (33.3 ms frames: frame 47 at 1566.67 ms is
# asked for as 1567 ms) still names its frame, and float noise on unix seconds (0.24 us) never
# moves a cut.
FRAME_EPSILON = 0.0005


def edit_offset(track: Track, movie_timescale: int) -> tuple[Fraction, int]:
    """(seconds of empty edits before the media, media time shown then) from the init's elst."""
    empty = 0
    for edit in track.edits:
        if edit.media_time == -1:
            empty += edit.duration
        else:
            return Fraction(empty, movie_timescale), edit.media_time
    return Fraction(empty, movie_timescale), 0


def presentation(track: Track, init: InitSegment, ticks: int) -> Fraction:
    """Where composition time `ticks` of `track` is shown on the source's presentation
    timeline, in seconds: the init's edit list applied."""
    empty, media_time = edit_offset(track, init.movie_timescale)
    return empty + Fraction(ticks - media_time, track.timescale)


@dataclass(frozen=True, slots=True)
class TrackTimes:
    """One track's samples of one segment, in decode order, with their times in ticks."""

    track_id: int
    timescale: int
    decode: tuple[int, ...]
    composition: tuple[int, ...]
    durations: tuple[int, ...]
    sync: tuple[bool, ...]
    # Seconds from the segment's first shown main frame to this track's tick 0: a sample of
    # composition time c is shown at `segment start + offset + c / timescale`.
    offset: Fraction

    @property
    def count(self) -> int:
        return len(self.decode)

    def at(self, ticks: int) -> Fraction:
        """Seconds after the segment's start at which composition time `ticks` is shown."""
        return self.offset + Fraction(ticks, self.timescale)


def track_times(
    track: Track, init: InitSegment, samples: PreparedTrack, anchor: Fraction
) -> TrackTimes:
    """`anchor`: the presentation time (seconds) of the segment's first shown main frame."""
    durations = tuple(samples.durations())
    decode = tuple(accumulate(durations[:-1], initial=samples.base_decode_time))
    cts = samples.samples().cts_offsets
    composition = tuple(d + c for d, c in zip(decode, cts, strict=True))
    sync: tuple[bool, ...] = (True,) * samples.count
    if samples.sync is not None:
        flags = [False] * samples.count
        for k in range(0, len(samples.sync), 4):
            flags[int.from_bytes(samples.sync[k : k + 4], "big")] = True
        sync = tuple(flags)
    return TrackTimes(
        samples.track_id,
        track.timescale,
        decode,
        composition,
        durations,
        sync,
        presentation(track, init, 0) - anchor,
    )


@dataclass(frozen=True, slots=True)
class SegmentTimes:
    """A segment's main track (and its first audio track) on the wall clock."""

    start: float  # SegmentRef.start: the wall clock of its first shown main frame
    main: TrackTimes
    audio: TrackTimes | None
    earliest: int  # composition ticks of its first shown main frame
    end: int  # composition ticks where its last main frame stops showing

    def shown(self, t0: float, t1: float) -> list[int]:
        """Decode indexes of the main frames shown in the wall-clock window [t0, t1)."""
        lo, hi = t0 - self.start - FRAME_EPSILON, t1 - self.start - FRAME_EPSILON
        main = self.main
        return [i for i, c in enumerate(main.composition) if lo <= main.at(c) < hi]

    def wall(self, ticks: int) -> float:
        """Wall-clock time of main composition time `ticks`."""
        return self.start + float(self.main.at(ticks))


def segment_times(start: float, init: InitSegment, prepared: PreparedSegment) -> SegmentTimes:
    """`start` is the segment's SegmentRef.start; `prepared` its tables as ingest made them."""
    by_id = {t.track_id: t for t in prepared.tracks}
    main_track = init.main
    main_samples = by_id.get(main_track.track_id)
    if main_samples is None:
        raise ValueError("the segment holds no sample of its main track")
    earliest = main_samples.base_decode_time + main_samples.composition_start
    anchor = presentation(main_track, init, earliest)
    main = track_times(main_track, init, main_samples, anchor)
    audio = None
    audio_track = init.audio
    if audio_track is not None and audio_track is not main_track:
        audio_samples = by_id.get(audio_track.track_id)
        if audio_samples is not None:
            audio = track_times(audio_track, init, audio_samples, anchor)
    return SegmentTimes(start, main, audio, earliest, earliest + main_samples.duration)


@dataclass(frozen=True, slots=True)
class Window:
    """What a frame-accurate clip rendition shows: from main composition time `head` of segment
    `head_segment` to `tail` of segment `tail_segment` (indexes into its segments)."""

    head_segment: int
    head: int  # composition ticks of the first shown frame
    tail_segment: int
    tail: int  # composition ticks where showing stops: the next frame's, or the segment's end
    start: float  # wall clock of the first shown frame
    duration: float  # seconds shown (media time, as the MP4 and the playlist's EXTINFs add up)


def boundary_segments(
    starts: Sequence[float], ends: Sequence[float], t0: float, t1: float
) -> list[int]:
    """The segments (indexes) whose frames can hold a window's first or last frame: the first
    two that end after t0 and the last two that start before t1; the rest are wholly shown."""
    n = len(starts)
    firsts = [i for i in range(n) if ends[i] > t0 - FRAME_EPSILON][:2]
    lasts = [i for i in range(n) if starts[i] < t1 + FRAME_EPSILON][-2:]
    return sorted(set(firsts) | set(lasts))


def window(
    durations: Sequence[float], times: Mapping[int, SegmentTimes], t0: float, t1: float
) -> Window | None:
    """The window of frames shown for [t0, t1), found in `times` (the boundary segments');
    `durations` are every segment's (SegmentRef.duration). None if no frame falls in it."""
    head: tuple[int, int] | None = None
    tail: tuple[int, int] | None = None
    for i in sorted(times):
        seg = times[i]
        shown = seg.shown(t0, t1)
        if not shown:
            continue
        if head is None:
            head = i, min(seg.main.composition[k] for k in shown)
        last_shown = max(seg.main.composition[k] for k in shown)
        after = [c for c in seg.main.composition if c > last_shown]
        tail = i, min(after) if after else seg.end
    if head is None or tail is None:
        return None
    first, last = times[head[0]], times[tail[0]]
    scale = first.main.timescale
    seconds = sum(durations[head[0] : tail[0] + 1])
    seconds -= (head[1] - first.earliest) / scale
    seconds -= (last.end - tail[1]) / last.main.timescale
    return Window(head[0], head[1], tail[0], tail[1], first.wall(head[1]), seconds)
