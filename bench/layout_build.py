"""A new clip's moov: how long it takes to build, before and after per-segment tables, and what
preparing those tables costs at ingest. `python bench/layout_build.py [--repeat N]`.

Clips of 10 s, 10 min and 1 h of the fixture ladder's 1080p rendition (fixtures/ladder/2),
its six segments replayed with their tfdt moved on 12 s per loop, as tests/mp4_support's
fixture_segments and the demo feed do (so every 12 s an AAC frame overlaps and is dropped:
300 such boundaries an hour). Times are the best of --repeat runs (the machine is shared).

- old: the per-sample builder this replaced (tests/package/reference_mp4.py)
- new: build_layout over LayoutSegments whose tables were prepared at ingest
- compat: build_layout over stored Segments (prepared on the fly: today's callers)
- numpy: the join's C-speed passes (chunk offsets, stsc, stss, min/max) redone with numpy, to
  show what it would earn; not used by the packager
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from packager.media.fragment import parse_segment  # noqa: E402
from packager.package import tables  # noqa: E402
from packager.package.mp4 import LayoutSegment, _Clip, build_layout  # noqa: E402
from packager.package.tables import prepare_segment  # noqa: E402
from tests.mp4_support import fixture_segments  # noqa: E402
from tests.package import reference_mp4  # noqa: E402
from tests.stored_segment import Segment  # noqa: E402

RENDITION = 2  # 1080p
CLIPS = {"10 s": 5, "10 min": 300, "1 h": 1800}


def best(run: Callable[[], object], repeat: int) -> float:
    """Best of `repeat` runs, in ms, with the collector off during each (it would add noise
    proportional to whatever else the process holds)."""
    times = []
    for _ in range(repeat):
        gc.disable()
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
        gc.enable()
    return min(times) * 1000


def builds(segments: list[Segment], repeat: int) -> None:
    prepared = [
        LayoutSegment(k, s.init, prepare_segment(s.init, s.media)) for k, s in enumerate(segments)
    ]
    rows = []
    for name, count in CLIPS.items():
        old = best(lambda n=count: reference_mp4.build_layout(segments[:n]), max(3, repeat // 5))
        new = best(lambda n=count: build_layout(prepared[:n]), repeat)
        compat = best(lambda n=count: build_layout(segments[:n]), max(3, repeat // 5))
        rows.append((name, count, old, new, compat))
    print("## Building a new clip's moov (ms, best of runs)\n")
    print(
        "| clip | segments | old (per sample) | new (prepared) | new / old | compat (prepare on the fly) |"
    )
    print("|---|---|---|---|---|---|")
    for name, count, old, new, compat in rows:
        print(f"| {name} | {count} | {old:.2f} | {new:.3f} | {new / old:.3f} | {compat:.2f} |")
    first, last = rows[0], rows[-1]
    print(
        f"\n1 h / 10 s: old {last[2] / first[2]:.0f}x, new {last[3] / first[3]:.0f}x "
        f"(target <= 2x)\n"
    )
    phases(prepared, repeat)


def phases(prepared: list[LayoutSegment], repeat: int) -> None:
    """Where the hour's build goes: the walk (timeline, one step per segment), the join of
    each table, and writing the header (one copy of the tables' bytes)."""
    from fractions import Fraction

    from packager.package.mp4 import progressive_header

    def walk() -> _Clip:
        clip = _Clip(prepared[0].init)
        for seg in prepared:
            clip.add(seg)
        return clip

    walk_ms = best(walk, repeat)
    clips = [walk() for _ in range(repeat)]
    finished = []

    def finish() -> None:
        clip = clips.pop()
        main = clip.main
        assert main.first_shown is not None
        end = main.first_shown + Fraction(main.tables.duration, main.track.timescale)
        finished.append(
            (clip, [b.table(main.first_shown, end, main.track.timescale) for b in clip.tracks])
        )

    finish_ms = best(finish, repeat)
    clip, track_tables = finished[-1]
    ready = [t for t in track_tables if t is not None]
    header_ms = best(
        lambda: progressive_header(ready, clip.main.track.timescale, clip.payload), repeat
    )
    header = progressive_header(ready, clip.main.track.timescale, clip.payload)
    loops = (len(prepared) - 1) // 6  # the ladder's 6 segments, replayed
    print(f"1 h, by phase: walk {walk_ms:.2f} ms ({len(prepared)} segments, {loops} loop")
    print(f"points with a dropped AAC frame), join {finish_ms:.2f} ms, header {header_ms:.2f} ms")
    print(f"(the moov is {len(header) / 1e6:.2f} MB: copying it once is the floor)\n")


def ingest(segments: list[Segment], repeat: int) -> None:
    ladder = segments[:6]
    parse = statistics.mean(
        best(lambda s=s: parse_segment(s.data, s.init), repeat * 20) for s in ladder
    )
    prepare = statistics.mean(
        best(lambda s=s: prepare_segment(s.init, s.media), repeat * 20) for s in ladder
    )
    print("## At ingest, per 2 s segment (us, mean over the ladder's 6 of their best)\n")
    print("| parse_segment | prepare_segment | prepare / parse |")
    print("|---|---|---|")
    print(f"| {parse * 1000:.1f} | {prepare * 1000:.1f} | {prepare / parse:.2f} |\n")


def memory(segments: list[Segment]) -> None:
    """Bytes retained (tracemalloc) by an hour of one rendition: the parsed sample arrays each
    segment keeps today (SegmentMedia), and the prepared tables added by this change."""
    hour = segments[:1800]
    gc.collect()
    tracemalloc.start()
    media = [parse_segment(s.data, s.init) for s in hour]
    parsed = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    tracemalloc.start()
    prepared = [prepare_segment(s.init, m) for s, m in zip(hour, media, strict=True)]
    ready = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    raw = sum(len(p.to_bytes()) for p in prepared)
    print("## Memory per rendition-hour (1080p: 108,000 video + 168,750 audio samples)\n")
    print(
        "| today's TrackSamples arrays | prepared tables (objects) | prepared tables (to_bytes) |"
    )
    print("|---|---|---|")
    print(f"| {parsed / 1e6:.2f} MB | {ready / 1e6:.2f} MB | {raw / 1e6:.2f} MB |\n")


def numpy_join(segments: list[Segment], repeat: int) -> None:
    """The join's C-speed passes (chunk offsets and stsc, stss, the min/max/count aggregates,
    the sizes list) in numpy, checked equal to the packager's, then timed against them."""
    try:
        import numpy
    except ImportError:
        print("## numpy\n\nnot installed: skipped\n")
        return
    prepared = [
        LayoutSegment(k, s.init, prepare_segment(s.init, s.media)) for k, s in enumerate(segments)
    ]
    clip = _Clip(prepared[0].init)
    for seg in prepared:
        clip.add(seg)
    print("## numpy for the join's vectorisable passes (1 h, ms, best of runs)\n")
    print("| track | pure (array/bytes) | numpy | same result |")
    print("|---|---|---|---|")
    for b in clip.tracks:
        pure, vectorised = _passes(numpy, b.tables)
        want, got = pure(), vectorised()
        print(
            f"| {b.track.handler} | {best(pure, repeat):.3f} | {best(vectorised, repeat):.3f} "
            f"| {want == got} |"
        )
    print(
        "\nThe walk (one Python step per segment) and the run joins (a Python step per piece "
        "where runs may merge) stay as they are either way.\n"
    )


def _passes(
    np: Any, join: tables.TableJoin
) -> tuple[Callable[[], tuple[object, ...]], Callable[[], tuple[object, ...]]]:
    added = join._added  # the join's own record of what it was given
    places = join._places
    pieces = [p for p, _, _ in added]
    entries = [e for _, e, _ in added]
    bases = [x for _, _, x in added]

    def pure() -> tuple[object, ...]:
        stsc, offsets = tables._join_chunks(pieces, entries, bases, places)
        return (
            stsc,
            list(offsets),
            tables._join_sync(pieces),
            min(map(attrgetter("cts_min"), pieces)),
            max(map(attrgetter("cts_max"), pieces)),
            sum(map(attrgetter("count"), pieces)),
            [p.sizes for p in pieces],
        )

    def vectorised() -> tuple[object, ...]:
        n = len(pieces)
        counts = np.fromiter(map(attrgetter("count"), pieces), np.int64, n)
        place = np.fromiter(map(attrgetter("place"), pieces), np.int64, n)
        for k, explicit in places.items():
            place[k] = explicit[0]
        offsets = np.asarray(bases, np.int64) + place
        desc = np.asarray(entries, np.int64)
        change = np.flatnonzero(np.r_[True, (counts[1:] != counts[:-1]) | (desc[1:] != desc[:-1])])
        stsc = np.stack([change + 1, counts[change], desc[change]], 1).astype(">u4").tobytes()
        syncs = [p.sync for p in pieces]
        stss = None
        if any(s is not None for s in syncs):
            numbers = np.frombuffer(b"".join(s for s in syncs if s is not None), ">u4")
            stss = (numbers + np.r_[1, np.cumsum(counts)[:-1] + 1]).astype(">u4").tobytes()
        return (
            stsc,
            offsets.tolist(),
            stss,
            int(np.fromiter(map(attrgetter("cts_min"), pieces), np.int64, n).min()),
            int(np.fromiter(map(attrgetter("cts_max"), pieces), np.int64, n).max()),
            int(counts.sum()),
            [p.sizes for p in pieces],
        )

    return pure, vectorised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    segments = fixture_segments(RENDITION, range(max(CLIPS.values())))
    print(f"# bench/layout_build.py (Python {sys.version.split()[0]})\n")
    builds(segments, args.repeat)
    ingest(segments, args.repeat)
    memory(segments)
    numpy_join(segments, args.repeat)


if __name__ == "__main__":
    main()
