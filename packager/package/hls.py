"""HLS playlists of a clip, and of a stream's live DVR window (RFC 8216), as text. Sans-IO:
clip manifests and DVR segment refs in, str out.

A small writer of our own rather than m3u8's model (see NOTES.md: EXT-X-MAP is per-segment
there and constructors are dict-typed); tests parse every playlist back with m3u8.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from packager.media.model import InitSegment
from packager.package import names
from packager.package.cuts import Piece, PieceKind
from packager.store.model import Clip, ClipRendition, RenditionInfo, SegmentRef

VERSION = 7  # EXT-X-MAP in a media playlist without I-FRAMES-ONLY needs >= 6


@functools.lru_cache(maxsize=1 << 14)
def _pdt(ts: float) -> str:
    """Formatting dates was a third of a media playlist's cost; the same ones recur."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _q(query: str) -> str:
    return f"?{query}" if query else ""


def _independent(clip: Clip) -> bool:
    """EXT-X-INDEPENDENT-SEGMENTS, only when true: a growing clip's later segments are not
    known yet, and a tag once served in an EVENT playlist cannot be taken back."""
    if clip.event:
        return False
    return all(s.keyframe for r in clip.renditions for s in r.segments)


def master_playlist(clip: Clip, inits: Mapping[str, InitSegment], query: str = "") -> str:
    """`inits` by id: each rendition's first (its codecs, its size). `query` (a signed link's
    `expires=..&token=..`) rides on every URI: players resolve relative URIs against the
    playlist's path and drop its query."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    if _independent(clip):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for cr in clip.renditions:
        lines.append(_stream_inf(cr, inits[cr.first_init]))
        lines.append(names.playlist(clip.id, cr.name) + _q(query))
    return "\n".join(lines) + "\n"


def _stream_inf(cr: ClipRendition, init: InitSegment) -> str:
    attrs = [
        f"BANDWIDTH={cr.peak_bitrate()}",
        f"AVERAGE-BANDWIDTH={cr.average_bitrate()}",
    ]
    video = init.video
    if video is not None and video.width and video.height:
        attrs.append(f"RESOLUTION={video.width}x{video.height}")
    attrs.append(f'CODECS="{init.codecs}"')
    rate = cr.frame_rate()
    if rate is not None:
        attrs.append(f"FRAME-RATE={rate:.3f}")
    return "#EXT-X-STREAM-INF:" + ",".join(attrs)


def media_playlist(
    clip: Clip, cr: ClipRendition, query: str = "", pieces: Sequence[Piece] | None = None
) -> str:
    """A clip complete when cut is VOD; one cut while growing is EVENT for its whole life, so
    every later version of it begins with every line of the earlier ones, and gets ENDLIST
    once complete. Players start at its first frame (EXT-X-START), not near its live edge.
    A frame-accurate clip lists its `pieces` (packager.package.cuts) instead of its segments."""
    if pieces is not None:
        return _pieces_playlist(clip, cr, pieces, query)
    segs = cr.segments
    if clip.event:
        target = cr.target_duration
    else:
        target = max((math.ceil(s.duration - 1e-3) for s in segs), default=2)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'EVENT' if clip.event else 'VOD'}",
        # hls.js and Shaka took a growing clip for a live stream and started 2 s in.
        "#EXT-X-START:TIME-OFFSET=0,PRECISE=YES",
    ]
    if _independent(clip) and all(s.keyframe for s in segs):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    init_index = -1
    current_init = None
    for i, seg in enumerate(segs):
        if i > 0 and (seg.discontinuity or seg.key.seq != segs[i - 1].key.seq + 1):
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_id != current_init:
            init_index += 1
            current_init = seg.init_id
            uri = names.init(clip.id, cr.name, init_index) + _q(query)
            lines.append(f'#EXT-X-MAP:URI="{uri}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(seg.start)}")
        lines.append(f"#EXTINF:{seg.duration:.6f},")
        lines.append(names.segment(clip.id, cr.name, i) + _q(query))
    if clip.complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# ---- a stream's live DVR window ----------------------------------------------------------


def live_master_playlist(
    ladder: Sequence[RenditionInfo], inits: Mapping[str, InitSegment], query: str = ""
) -> str:
    """Every rendition of the ladder (lowest first, as `Store.ladder` gives it), each named
    `media_{n}_{height}` as the stream view lists it. `inits` by id: each rendition's current
    one (its size and codecs)."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    for number, r in enumerate(ladder, start=1):
        attrs = [f"BANDWIDTH={r.peak_bitrate}", f"AVERAGE-BANDWIDTH={math.ceil(r.bitrate)}"]
        init = inits[r.init_id]
        video = init.video
        if video is not None and video.width and video.height:
            attrs.append(f"RESOLUTION={video.width}x{video.height}")
        attrs.append(f'CODECS="{init.codecs}"')
        if r.frame_rate is not None:
            attrs.append(f"FRAME-RATE={r.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(names.live_playlist(names.live_rendition(number, r.height)) + _q(query))
    return "\n".join(lines) + "\n"


def live_discontinuities(segments: Sequence[SegmentRef]) -> list[int]:
    """The seqs of the segments a live playlist puts EXT-X-DISCONTINUITY before: those the
    ingest marked, and any that does not follow its predecessor's number (a gap). The first
    segment of a window never carries the tag: nothing before it to break from."""
    return [
        seg.key.seq
        for prev, seg in itertools.pairwise(segments)
        if seg.discontinuity or seg.key.seq != prev.key.seq + 1
    ]


def live_media_playlist(
    rendition: str,
    segments: Sequence[SegmentRef],
    target_duration: int,
    discontinuity_sequence: int = 0,
    query: str = "",
) -> str:
    """A sliding window over the DVR (RFC 8216 §6.2.2): no PLAYLIST-TYPE and no ENDLIST, so
    players treat it as live and may seek back through all of it. EXT-X-MEDIA-SEQUENCE is the
    first segment's own number, which advances as the DVR rolls; `discontinuity_sequence`
    counts the DISCONTINUITY tags that have rolled out of it (§4.3.3.3). Every segment carries
    its wall-clock time, which is what a console maps its player's position through."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{max(1, target_duration)}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].key.seq if segments else 0}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    breaks = set(live_discontinuities(segments))
    current_init = None
    for seg in segments:
        if seg.key.seq in breaks:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_id != current_init:
            current_init = seg.init_id
            uri = names.live_init(rendition, seg.init_id) + _q(query)
            lines.append(f'#EXT-X-MAP:URI="{uri}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(seg.start)}")
        lines.append(f"#EXTINF:{seg.duration:.6f},")
        lines.append(names.live_segment(rendition, seg.key.seq) + _q(query))
    return "\n".join(lines) + "\n"


def _header(clip: Clip, target: int) -> list[str]:
    return [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{max(1, target)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'EVENT' if clip.event else 'VOD'}",
        "#EXT-X-START:TIME-OFFSET=0,PRECISE=YES",
    ]


def _pieces_playlist(clip: Clip, cr: ClipRendition, pieces: Sequence[Piece], query: str) -> str:
    """A frame-accurate rendition: a re-encoded piece has its own init (EXT-X-MAP) and new
    parameter sets, so EXT-X-DISCONTINUITY sets it apart (RFC 8216 §4.3.2.3); between stored
    segments, the source's own discontinuities stay."""
    segs = cr.segments
    if clip.event:
        target = cr.target_duration
    else:
        target = max((math.ceil(p.duration - 1e-3) for p in pieces), default=2)
    lines = _header(clip, target)
    if _independent(clip):  # every piece starts with a keyframe, as its source segment did
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    inits: list[str] = []
    current = None
    for i, piece in enumerate(pieces):
        encoded = piece.kind is PieceKind.ENCODED
        init_id = f"encoded-{i}" if encoded else segs[piece.segment].init_id
        if i > 0:
            before = pieces[i - 1]
            seg, prev = segs[piece.segment], segs[before.segment]
            restart = piece.segment != before.segment and (
                seg.discontinuity or seg.key.seq != prev.key.seq + 1
            )
            if encoded or before.kind is PieceKind.ENCODED or restart:
                lines.append("#EXT-X-DISCONTINUITY")
        if init_id != current:
            if init_id not in inits:
                inits.append(init_id)
            current = init_id
            uri = names.init(clip.id, cr.name, inits.index(init_id)) + _q(query)
            lines.append(f'#EXT-X-MAP:URI="{uri}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(piece.start)}")
        lines.append(f"#EXTINF:{piece.duration:.6f},")
        lines.append(names.segment(clip.id, cr.name, i) + _q(query))
    if clip.complete:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
