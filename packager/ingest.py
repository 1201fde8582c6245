"""What to do with each file an encoder pushes: init segment, media segment or playlist.

ffmpeg's HLS muxer (`-method PUT`) sends, per rendition, `init_<n>.mp4`, then each
`index<k>.m4s` followed by the re-sent playlist; for some renditions the playlist arrives
*before* the segment it lists. Both orders end with the same timeline here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import m3u8

from packager.errors import BadMedia, PackagerError
from packager.media import boxes
from packager.media.fragment import parse_segment
from packager.media.init import parse_init
from packager.media.model import InitSegment
from packager.store.dvr import PlaylistEntry, Rendition, Stream
from packager.store.segment import Segment, Timing
from packager.store.store import Store

MAX_PLAYLIST_BYTES = 1 << 20
# Boxes before the moov or moof that says what a file is (ftyp/styp, sidx, prft, emsg...).
MAX_LEADING_BOXES = 1000
# Encoders cut segments of seconds. A hostile one "lasting" millennia would put its start
# (arrival minus duration) before year 1, where no playlist date or MP4 time can say it.
MAX_SEGMENT_SECONDS = 600.0
# Program-date-times a playlist, an MP4 and `datetime` can all express: 1970 to 9999.
_PDT_RANGE = (0.0, 253402300799.0)
MAX_CLOCK_SKEW = 86400.0  # seconds between an encoder's program-date-time and our clock
TAIL_ENTRIES = 16  # playlist entries read: a segment is matched to its entry within seconds
# A start this far inside the previous segment means the encoder's clock jumped back.
_BACKWARDS_TOLERANCE = 0.5


class NoInitSegment(PackagerError):
    """A media segment arrived before any init segment of its rendition (409)."""

    code = "no_init_segment"


class Received(Enum):
    INIT = "init"
    SEGMENT = "segment"
    PLAYLIST = "playlist"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class IngestResult:
    kind: Received
    segment: Segment | None = None


class Ingest:
    def __init__(self, store: Store) -> None:
        self.store = store

    def receive(
        self, stream_id: str, rendition_name: str, filename: str, body: bytes
    ) -> IngestResult:
        """Take one pushed file. Raises BadMedia on anything malformed, before anything is
        stored: not even the stream a first push would create."""
        if filename.endswith(".m3u8"):
            entries = parse_playlist(body)
            self._apply_playlist(self._rendition(stream_id, rendition_name), entries)
            return IngestResult(Received.PLAYLIST)
        kind = _kind(body)
        if kind == b"moov":
            init = parse_init(body)
            self._set_init(self._rendition(stream_id, rendition_name), init)
            return IngestResult(Received.INIT)
        if kind == b"moof":
            stream = self.store.streams.get(stream_id)
            rendition = stream.renditions.get(rendition_name) if stream is not None else None
            if stream is None or rendition is None or rendition.init is None:
                raise NoInitSegment(
                    f"rendition {rendition_name!r} of stream {stream_id!r} has no init segment yet"
                )
            return self._add_segment(stream, rendition, filename, body)
        raise BadMedia("neither an init segment (moov) nor a media segment (moof)")

    def _rendition(self, stream_id: str, rendition_name: str) -> Rendition:
        stream = self.store.ensure_stream(stream_id)
        return stream.renditions.setdefault(rendition_name, Rendition(rendition_name))

    def _set_init(self, rendition: Rendition, init: InitSegment) -> None:
        if rendition.init is not None and rendition.init.data == init.data:
            return  # re-sent: keep the object, so segments keep sharing one init
        if rendition.init is not None:
            rendition.init_changed = True
        rendition.init = init

    def _add_segment(
        self, stream: Stream, rendition: Rendition, filename: str, body: bytes
    ) -> IngestResult:
        init = rendition.init
        assert init is not None
        media = parse_segment(body, init)
        main = media.track(init.main.track_id)
        if main is None or main.duration <= 0:
            raise BadMedia(f"segment has no samples of track {init.main.track_id}")
        duration = main.duration / init.main.timescale
        if duration > MAX_SEGMENT_SECONDS:
            raise BadMedia(f"segment lasts {duration:.0f} s, more than {MAX_SEGMENT_SECONDS:g}")
        prev = rendition.last
        if (
            prev is not None
            and prev.name == filename
            and prev.init is init
            and prev.main.base_decode_time == main.base_decode_time
        ):
            return IngestResult(Received.DUPLICATE, prev)  # a retried PUT
        contiguous = (
            prev is not None
            and prev.init is init
            and not rendition.init_changed
            and prev.main.end_decode_time == main.base_decode_time
        )
        entry = rendition.playlist.get(filename)
        now = self.store.clock()
        pdt = _trusted_pdt(entry, now)
        if pdt is not None:
            start, timing = pdt, Timing.PDT
        elif contiguous and prev is not None:
            start, timing = prev.end, Timing.CONTINUED
        else:
            start, timing = now - duration, Timing.ARRIVAL
        discontinuity = prev is not None and (
            not contiguous or (entry is not None and entry.discontinuity)
        )
        if prev is not None and start < prev.end - _BACKWARDS_TOLERANCE:
            # The ring is ordered by time; a clock that went back cannot be placed honestly.
            start, discontinuity = max(start, prev.end), True
        segment = Segment(
            seq=rendition.next_seq,
            name=filename,
            data=body,
            init=init,
            media=media,
            start=start,
            duration=duration,
            discontinuity=discontinuity,
            timing=timing,
        )
        self.store.add_segment(stream, rendition, segment)
        rendition.init_changed = False
        return IngestResult(Received.SEGMENT, segment)

    def _apply_playlist(self, rendition: Rendition, entries: dict[str, PlaylistEntry]) -> None:
        rendition.playlist = entries
        # The playlist came after its segment: give that segment the encoder's own clock.
        segs = rendition.segments
        for k in range(len(segs) - 1, max(-1, len(segs) - 8), -1):
            seg = segs[k]
            pdt = _trusted_pdt(entries.get(seg.name), self.store.clock())
            if pdt is None or seg.timing is Timing.PDT:
                continue
            before_ok = k == 0 or segs[k - 1].start <= pdt
            after_ok = k == len(segs) - 1 or pdt <= segs[k + 1].start
            if before_ok and after_ok:
                seg.start = pdt
                seg.timing = Timing.PDT


def _trusted_pdt(entry: PlaylistEntry | None, now: float) -> float | None:
    """The entry's program-date-time, unless it is further from now than any sane clock drift:
    a date days ahead would hold every later segment past the DVR's horizon and out of reach
    of clips; such a segment is timed by media continuity or arrival instead."""
    if entry is None or entry.program_date_time is None:
        return None
    if abs(entry.program_date_time - now) > MAX_CLOCK_SKEW:
        return None
    return entry.program_date_time


def _recent_part(text: str) -> str:
    """The playlist cut to its last TAIL_ENTRIES segments (plus what dates them).

    An EVENT playlist re-sent after every segment grows without bound: parsing all of it each
    time cost 68 ms per hour of entries, on the event loop. Only recent entries can still be
    matched to a segment, so only they are parsed; the cut goes back to the nearest
    EXT-X-PROGRAM-DATE-TIME so that dates carried forward by EXTINF stay right.
    """
    lines = text.splitlines()
    if sum(1 for line in lines if line and not line.startswith("#")) <= TAIL_ENTRIES:
        return text
    dated = "#EXT-X-PROGRAM-DATE-TIME" in text
    uris, block_dated, cut = 0, False, 0
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
            block_dated = True
        elif line and not line.startswith("#"):
            # lines[i + 1:] so far hold `uris` whole segment blocks
            if uris >= TAIL_ENTRIES and (block_dated or not dated):
                cut = i + 1
                break
            uris += 1
            block_dated = False
    return "#EXTM3U\n" + "\n".join(lines[cut:]) if cut else text


def _kind(body: bytes) -> bytes | None:
    """b"moov" for an init segment, b"moof" for a media segment: whichever comes first.

    Stops there: a body of millions of tiny boxes costs a thousand steps, not millions."""
    for k, box in enumerate(boxes.iter_boxes(body)):
        if box.type in (b"moov", b"moof"):
            return box.type
        if k >= MAX_LEADING_BOXES:
            raise BadMedia(f"no moov or moof box among the first {MAX_LEADING_BOXES} boxes")
    return None


def _seconds(pdt: datetime | None) -> float | None:
    """Unix seconds of a program-date-time; one without a zone is read as UTC (RFC 8216 wants
    a zone; local time would make the server's zone matter, and fails for year 1)."""
    if pdt is None:
        return None
    if pdt.tzinfo is None:
        pdt = pdt.replace(tzinfo=UTC)
    try:
        return pdt.timestamp()
    except (ValueError, OverflowError, OSError):
        raise BadMedia(f"EXT-X-PROGRAM-DATE-TIME {pdt.isoformat()} is not a usable date") from None


def parse_playlist(body: bytes) -> dict[str, PlaylistEntry]:
    """An encoder's media playlist: per segment file name, its EXTINF, PDT and discontinuity."""
    if len(body) > MAX_PLAYLIST_BYTES:
        raise BadMedia(f"playlist larger than {MAX_PLAYLIST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMedia("playlist is not UTF-8 text") from None
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise BadMedia("playlist does not start with #EXTM3U")
    try:
        playlist = m3u8.loads(_recent_part(text))
    except Exception as exc:  # noqa: BLE001 - the m3u8 parser raises assorted types on bad input
        raise BadMedia(f"unreadable playlist: {exc}") from None
    if playlist.is_variant:
        return {}
    entries: dict[str, PlaylistEntry] = {}
    for seg in playlist.segments:
        if not seg.uri:
            continue
        name = seg.uri.rsplit("/", 1)[-1].split("?", 1)[0]
        when = _seconds(seg.current_program_date_time)
        if when is not None and not _PDT_RANGE[0] <= when <= _PDT_RANGE[1]:
            raise BadMedia(f"EXT-X-PROGRAM-DATE-TIME of {name!r} is not between 1970 and 9999")
        entries[name] = PlaylistEntry(
            duration=float(seg.duration or 0.0),
            program_date_time=when,
            discontinuity=bool(seg.discontinuity),
        )
    return entries
