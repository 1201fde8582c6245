"""A frame-accurate clip rendition as HLS media segments ("pieces"), and their bytes (sans-IO).

Players do not apply edit lists inside fMP4 segments reliably, so an HLS cut is made of the
samples themselves. Each GOP the clip's window (packager.package.frames.Window) touches is:

- shown whole: its samples are copied;
- shown as a prefix of its decode order (the frames past the end are decoded after every shown
  one): the shown samples are copied, the rest dropped;
- otherwise (the first shown frame is not the keyframe; or, at the end, a B-frame shown before
  the end needs a reference shown after it): its shown frames are re-encoded, from the exact
  first frame, by an encoder outside this module (packager.service.encode), into a piece with
  its own init segment (same codec, profile, level, size and timescale; new parameter sets),
  which the playlist sets apart with EXT-X-DISCONTINUITY.

A stored segment whose every sample is kept is served as it is (`SOURCE`); one that loses some
becomes a new fragment of its kept samples (`KEPT`, no byte of media changed); a re-encoded GOP
is `ENCODED`. Video keeps the source's timestamps everywhere: a re-encoded frame is presented
exactly when the source's was, and its decode times continue those of its neighbours.

Audio is cut to whole AAC frames where the video is cut (at most half a frame, 10.7 ms, off,
and never more than one, 21.3 ms): at the clip's first frame, at its last when that is inside
a segment, and between a re-encoded piece and its neighbours. Between stored segments, and at
a clip's end on a segment's own end, the encoder's own split stays: a growing clip's last
segment so far is served as it is, and stays so when the next arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from itertools import accumulate, pairwise

from packager.media import boxes
from packager.media.boxwriter import TrackFragment, media_segment
from packager.media.model import InitSegment, TrackSamples
from packager.media.rewrite import merge_avc_configs
from packager.package.frames import SegmentTimes, Window
from packager.store.model import SegmentRef


class PieceKind(Enum):
    SOURCE = "source"  # a stored segment as it is
    KEPT = "kept"  # some of a stored segment's samples, in a new fragment
    ENCODED = "encoded"  # a partial GOP re-encoded, with the source's audio frames


@dataclass(frozen=True, slots=True)
class Part:
    """Samples of one stored segment that a piece takes: decode-order ranges [lo, hi)."""

    segment: int  # index into the rendition's segments
    video: tuple[int, int]
    audio: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Piece:
    """One media segment of a frame-accurate playlist."""

    kind: PieceKind
    parts: tuple[Part, ...]  # SOURCE and KEPT: one; ENCODED: the segments its GOP spans
    start: float  # wall clock of its first frame (EXT-X-PROGRAM-DATE-TIME)
    duration: float  # seconds it shows (EXTINF)
    # ENCODED: the decoded frames to keep (display order over the parts' video samples), their
    # composition times in the source (ticks, display order), and where the last stops showing.
    # Re-encoded without B-frames, they are decoded when shown (no composition offset): at a
    # discontinuity hls.js places the earliest decode time of any track where the one before
    # ends, so a delay there would be a hole in the picture for the player to stall in.
    frames: tuple[int, int] = (0, 0)
    pts: tuple[int, ...] = ()
    end: int = 0
    # ...but their decode times end by where the next piece's begin (its B-frame delay before
    # its first frame), so that decode times never go back, which ffmpeg's HLS reader needs.
    decode_end: int | None = None

    @property
    def segment(self) -> int:
        return self.parts[0].segment


@dataclass(frozen=True, slots=True)
class _Frame:
    segment: int
    index: int  # decode order in its segment
    composition: int
    sync: bool
    shown: bool
    until: int  # composition ticks where it stops showing (the next frame's, or the end)


def _frames(seg: int, times: SegmentTimes, found: Window) -> list[_Frame]:
    main = times.main
    order = sorted(main.composition)
    following = dict(zip(order, [*order[1:], times.end], strict=True))
    out = []
    for i, c in enumerate(main.composition):
        shown = (seg > found.head_segment or (seg == found.head_segment and c >= found.head)) and (
            seg < found.tail_segment or (seg == found.tail_segment and c < found.tail)
        )
        out.append(_Frame(seg, i, c, main.sync[i], shown, following[c]))
    return out


def regions(refs: Sequence[SegmentRef], found: Window, key_segment: int) -> list[tuple[int, int]]:
    """The runs of segments [a, b] whose pieces need their frames looked at: from the first
    shown frame's keyframe to the end of its GOP, and the last shown frame's GOP; the segments
    between them are served as they are. GOPs run on into segments that do not start with a
    keyframe."""
    head_end = found.head_segment
    while head_end < found.tail_segment and not refs[head_end + 1].keyframe:
        head_end += 1
    tail_start = found.tail_segment
    while tail_start > key_segment and not refs[tail_start].keyframe:
        tail_start -= 1
    if tail_start <= head_end + 1:
        return [(key_segment, found.tail_segment)]
    return [(key_segment, head_end), (tail_start, found.tail_segment)]


def plan(
    refs: Sequence[SegmentRef],
    times: Mapping[int, SegmentTimes],
    found: Window,
    key_segment: int,
) -> list[Piece]:
    """The pieces of one rendition, in playback order. `times` holds the segments of
    `regions()`; every other segment from the first region to the last is shown whole."""
    runs = regions(refs, found, key_segment)
    pieces: list[Piece] = []
    for k, (a, b) in enumerate(runs):
        if k > 0:
            pieces += [_source(refs[i], i) for i in range(runs[k - 1][1] + 1, a)]
        pieces += _region(refs, times, found, a, b, clip_start=k == 0)
    return pieces


def _source(ref: SegmentRef, index: int) -> Piece:
    """A stored segment served as it is (its parts' ranges are not read)."""
    return Piece(PieceKind.SOURCE, (Part(index, (0, 0), (0, 0)),), ref.start, ref.duration)


def _region(
    refs: Sequence[SegmentRef],
    times: Mapping[int, SegmentTimes],
    found: Window,
    a: int,
    b: int,
    clip_start: bool,
) -> list[Piece]:
    frames = [f for i in range(a, b + 1) for f in _frames(i, times[i], found)]
    # GOPs in decode order; a segment that does not start with a keyframe continues the last.
    gops: list[list[_Frame]] = []
    for f in frames:
        if f.sync or not gops:
            gops.append([])
        gops[-1].append(f)
    # Each kept frame goes to a copy run of its segment, or to its GOP's re-encode.
    units: list[tuple[str, list[_Frame]]] = []
    for gop in gops:
        shown = [f for f in gop if f.shown]
        if not shown:
            continue
        prefix = gop[: len(shown)]
        if all(f.shown for f in prefix):
            for f in prefix:
                if units and units[-1][0] == "copy" and units[-1][1][-1].segment == f.segment:
                    units[-1][1].append(f)
                else:
                    units.append(("copy", [f]))
        else:
            units.append(("encode", gop))
    # Audio goes where its frame starts, at most half a frame early, at cuts (see above).
    last_seg = times[b]
    cut_end = b == found.tail_segment and found.tail != last_seg.end
    starts = [_unit_start(kind, fs, times) for kind, fs in units]
    audio = _audio(times, a, b)
    # Where each unit's audio ends: where the next begins, by time, inside a segment; at a
    # segment's end, with that segment's own audio (the encoder's split). So audio never moves
    # between stored segments, and a piece, once listed, does not change when later segments
    # arrive (a growing clip's playlist is only appended to).
    bounds: list[tuple[int | None, float | None]] = []
    for n in range(len(units) - 1):
        last, following = units[n][1][-1], units[n + 1][1][0]
        if last.segment != following.segment:
            bounds.append((following.segment, None))
        else:
            bounds.append((None, starts[n + 1]))
    end = _wall_end(units[-1][1], times) if cut_end else None
    bounds.append((None, end))
    pieces = []
    taken = 0
    for n, (kind, fs) in enumerate(units):
        lo = starts[0] if n == 0 and clip_start else None
        until_segment, until = bounds[n]
        picked = []
        while taken < len(audio):
            seg, _, start, duration = audio[taken]
            if lo is not None and start < lo - duration / 2:
                taken += 1  # before the clip's first frame
                continue
            if until_segment is not None and seg >= until_segment:
                break
            if until is not None and start >= until - duration / 2:
                break
            picked.append(audio[taken])
            taken += 1
        if n + 1 < len(units):
            after = units[n + 1][1][0]
            decode_next = times[after.segment].main.decode[after.index]
        else:  # where the next segment's decode times begin, whether or not it is there yet
            main = times[b].main
            decode_next = main.decode[-1] + main.durations[-1]
        pieces.append(_piece(kind, fs, picked, times, refs, decode_next))
    return pieces


def _unit_start(kind: str, fs: list[_Frame], times: Mapping[int, SegmentTimes]) -> float:
    first = min((f for f in fs if f.shown), key=lambda f: _wall(f, times))
    return _wall(first, times)


def _wall(f: _Frame, times: Mapping[int, SegmentTimes]) -> float:
    return times[f.segment].wall(f.composition)


def _wall_end(fs: list[_Frame], times: Mapping[int, SegmentTimes]) -> float:
    last = max((f for f in fs if f.shown), key=lambda f: _wall(f, times))
    return times[last.segment].wall(last.until)


def _audio(
    times: Mapping[int, SegmentTimes], a: int, b: int
) -> list[tuple[int, int, float, float]]:
    """(segment, index, wall start, duration) of every audio frame of segments a..b."""
    out = []
    for i in range(a, b + 1):
        sound = times[i].audio
        if sound is None:
            continue
        for k, (d, n) in enumerate(zip(sound.decode, sound.durations, strict=True)):
            out.append((i, k, times[i].start + float(sound.at(d)), n / sound.timescale))
    return out


def _ranges(picked: Sequence[tuple[int, int]]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for seg, k in picked:
        lo, hi = out.get(seg, (k, k))
        out[seg] = (min(lo, k), max(hi, k + 1))
    return out


def _piece(
    kind: str,
    fs: list[_Frame],
    audio: list[tuple[int, int, float, float]],
    times: Mapping[int, SegmentTimes],
    refs: Sequence[SegmentRef],
    decode_next: int,
) -> Piece:
    shown = sorted((f for f in fs if f.shown), key=lambda f: _wall(f, times))
    start = _wall(shown[0], times)
    duration = sum(
        float(Fraction(f.until - f.composition, times[f.segment].main.timescale)) for f in shown
    )
    sound = _ranges([(seg, k) for seg, k, _, _ in audio])
    video: dict[int, tuple[int, int]] = {}
    for f in fs:
        lo, hi = video.get(f.segment, (f.index, f.index))
        video[f.segment] = (min(lo, f.index), max(hi, f.index + 1))
    segs = sorted(set(video) | set(sound))
    parts = tuple(Part(s, video.get(s, (0, 0)), sound.get(s, (0, 0))) for s in segs)
    if kind == "copy":
        seg = times[parts[0].segment]
        whole_audio = seg.audio is None or parts[0].audio == (0, seg.audio.count)
        if len(parts) == 1 and parts[0].video == (0, seg.main.count) and whole_audio:
            return _source(refs[parts[0].segment], parts[0].segment)
        return Piece(PieceKind.KEPT, parts, start, duration)
    # Re-encoded: the decoder is fed the GOP's samples up to the last one a shown frame needs.
    needed = max(fs.index(f) for f in shown) + 1
    fed = sorted(fs[:needed], key=lambda f: (f.segment, f.composition))
    first = fed.index(shown[0])
    video_parts: dict[int, tuple[int, int]] = {}
    for f in fs[:needed]:
        lo, hi = video_parts.get(f.segment, (f.index, f.index))
        video_parts[f.segment] = (min(lo, f.index), max(hi, f.index + 1))
    segs = sorted(set(video_parts) | set(sound))
    parts = tuple(Part(s, video_parts.get(s, (0, 0)), sound.get(s, (0, 0))) for s in segs)
    return Piece(
        PieceKind.ENCODED,
        parts,
        start,
        duration,
        frames=(first, first + len(shown)),
        pts=tuple(f.composition for f in shown),
        end=shown[-1].until,
        decode_end=decode_next,
    )


# ---- bytes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One stored segment as a piece reads it: its bytes and its samples per track."""

    data: bytes
    init: InitSegment
    video: TrackSamples
    audio: TrackSamples | None


def _fragment(source: Source, samples: TrackSamples, lo: int, hi: int) -> TrackFragment:
    view = memoryview(source.data)
    return TrackFragment(
        track_id=samples.track_id,
        base_decode_time=samples.base_decode_time + sum(samples.durations[:lo]),
        durations=samples.durations[lo:hi],
        sizes=samples.sizes[lo:hi],
        sync=samples.sync[lo:hi],
        cts_offsets=samples.cts_offsets[lo:hi],
        data=b"".join(
            view[samples.offsets[k] : samples.offsets[k] + samples.sizes[k]] for k in range(lo, hi)
        ),
    )


def kept_segment(piece: Piece, sources: Sequence[Source], sequence: int) -> bytes:
    """A KEPT piece: a new fragment of the stored segments' kept samples, bytes unchanged
    (`sources` are its parts' segments)."""
    tracks = [_joined(sources, piece.parts, video=True), _joined(sources, piece.parts, video=False)]
    return media_segment(sequence, [t for t in tracks if t is not None])


def _joined(sources: Sequence[Source], parts: Sequence[Part], video: bool) -> TrackFragment | None:
    pieces = []
    for source, part in zip(sources, parts, strict=True):
        samples = source.video if video else source.audio
        lo, hi = part.video if video else part.audio
        if samples is not None and hi > lo:
            pieces.append(_fragment(source, samples, lo, hi))
    if not pieces:
        return None
    return TrackFragment(
        track_id=pieces[0].track_id,
        base_decode_time=pieces[0].base_decode_time,
        durations=[d for p in pieces for d in p.durations],
        sizes=[s for p in pieces for s in p.sizes],
        sync=[s for p in pieces for s in p.sync],
        cts_offsets=[c for p in pieces for c in p.cts_offsets],
        data=b"".join(bytes(p.data) for p in pieces),
    )


def encoder_input(piece: Piece, sources: Sequence[Source]) -> bytes:
    """What the encoder decodes for an ENCODED piece: the source's init and one fragment of the
    GOP's video samples, from its keyframe to the last one a shown frame needs."""
    fragment = _joined(sources, piece.parts, video=True)
    if fragment is None:
        raise ValueError("a re-encoded piece has no video samples")
    return sources[0].init.data + media_segment(1, [fragment])


def encoded_segment(
    piece: Piece,
    sources: Sequence[Source],
    encoded_init: InitSegment,
    encoded: TrackSamples,
    encoded_data: bytes,
    sequence: int,
) -> tuple[bytes, bytes]:
    """(init segment, media segment) of an ENCODED piece: the source's init with the encoder's
    sample description, and a fragment of the encoded frames at the source's presentation
    times, with the source's audio frames of the piece."""
    count = piece.frames[1] - piece.frames[0]
    if encoded.count != count:
        raise ValueError(f"the encoder made {encoded.count} frames of the {count} asked for")
    video_track = sources[0].init.main
    stsd = merge_avc_configs(encoded_init.main.stsd, video_track.stsd)
    init = replace_sample_description(sources[0].init.data, video_track.track_id, stsd)
    durations = decode_durations(piece)
    view = memoryview(encoded_data)
    tracks = [
        TrackFragment(
            track_id=video_track.track_id,
            base_decode_time=piece.pts[0],
            durations=durations,
            sizes=encoded.sizes,
            sync=encoded.sync,
            cts_offsets=[
                pts - dts
                for pts, dts in zip(
                    piece.pts, accumulate(durations, initial=piece.pts[0]), strict=False
                )
            ],
            data=b"".join(
                view[o : o + s] for o, s in zip(encoded.offsets, encoded.sizes, strict=True)
            ),
        )
    ]
    audio = _joined(sources, piece.parts, video=False)
    if audio is not None:
        tracks.append(audio)
    return init, media_segment(sequence, tracks)


_PATH = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")


def decode_durations(piece: Piece) -> list[int]:
    """An ENCODED piece's sample durations: its frames are decoded from when the first is shown,
    at the pace they are shown, but faster if the next piece's decode times begin before this
    piece is over (each frame keeps at least one tick, and is never decoded after it is shown)."""
    shown = [b - a for a, b in pairwise([*piece.pts, piece.end])]
    if piece.decode_end is None:
        return shown
    excess = piece.pts[0] + sum(shown) - piece.decode_end
    durations = list(shown)
    for k in range(len(durations) - 1, -1, -1):  # the last first: earlier frames stay in step
        if excess <= 0:
            break
        cut = min(excess, durations[k] - 1)
        durations[k] -= cut
        excess -= cut
    return durations


def replace_sample_description(init: bytes, track_id: int, stsd: bytes) -> bytes:
    """The init segment with track `track_id`'s stsd box replaced, every box around it resized:
    the same tracks, timescales, edit lists and fragment defaults, a new decoder configuration."""

    def walk(data: bytes, start: int, end: int, depth: int) -> bytes | None:
        out = []
        changed = False
        for box in boxes.iter_boxes(data, start, end):
            whole = data[box.start : box.end]
            if box.type == _PATH[depth]:
                if depth == len(_PATH) - 1:
                    whole, changed = stsd, True
                elif box.type != b"trak" or _track_id(data, box) == track_id:
                    inner = walk(data, box.payload_start, box.end, depth + 1)
                    if inner is not None:
                        head = data[box.start : box.payload_start]
                        size = len(head) + len(inner)
                        whole = size.to_bytes(4, "big") + head[4:8] + inner
                        if box.header_size != 8:
                            raise ValueError("64-bit box sizes in an init segment")
                        changed = True
            out.append(whole)
        return b"".join(out) if changed else None

    replaced = walk(init, 0, len(init), 0)
    if replaced is None:
        raise ValueError(f"no sample description of track {track_id} in the init segment")
    return replaced


def _track_id(data: bytes, trak: boxes.Box) -> int:
    tkhd = boxes.require(data, trak, b"tkhd")
    version = data[tkhd.payload_start]
    at = tkhd.payload_start + (20 if version == 1 else 12)
    return int.from_bytes(data[at : at + 4], "big")
