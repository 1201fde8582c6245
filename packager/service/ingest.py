"""What to do with each file an encoder pushes: init segment, media segment or playlist.

ffmpeg's HLS muxer (`-method PUT`) sends, per rendition, `init_<n>.mp4`, then each
`index<k>.m4s` followed by the re-sent playlist; for some renditions the playlist arrives
*before* the segment it lists. Both orders end with the same timeline here. Every change goes
through the store's interface, so it is the same with every backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from fractions import Fraction

import m3u8

from packager.errors import BadMedia, PackagerError, StreamExists, StreamNotFound, Unauthorized
from packager.media import boxes, hevc
from packager.media.fragment import parse_segment
from packager.media.gop import decodable_from_start
from packager.media.init import parse_init
from packager.media.model import InitSegment, SegmentMedia
from packager.media.rewrite import shift_decode_times
from packager.media.ts import TsState, demux_segment, is_transport_stream
from packager.package.tables import prepare_segment
from packager.store.base import PlaylistEntry, RenditionState, Store
from packager.store.model import Clip, SegmentKey, SegmentRef, StreamInfo, Timing

MAX_PLAYLIST_BYTES = 1 << 20
# Boxes before the moov or moof that says what a file is (ftyp/styp, sidx, prft, emsg...).
MAX_LEADING_BOXES = 1000
# Encoders cut segments of seconds. A hostile one "lasting" millennia would put its start
# (arrival minus duration) before year 1, where no playlist date or MP4 time can say it.
MAX_SEGMENT_SECONDS = 600.0
# Program-date-times a playlist, an MP4 and `datetime` can all express: 1970 to 9999.
_PDT_RANGE = (0.0, 253402300799.0)
# A program-date-time (a segment's start) is trusted up to one segment plus this far ahead of
# the segment's arrival (when it is all there), and no further back than the DVR reaches.
PDT_LEAD = 5.0
TAIL_ENTRIES = 16  # playlist entries read: a segment is matched to its entry within seconds
# Bytes of a playlist's end read for them: ffmpeg writes ~100 bytes an entry.
TAIL_BYTES = 32 * 1024
RETRY_WINDOW = 2.0  # seconds past a segment's duration within which a re-sent copy is a retry
REF_COST = 600  # bytes a stored segment's record takes beside its bytes and tables
# A start this far inside the previous segment means the encoder's clock jumped back.
_BACKWARDS_TOLERANCE = 0.5


SINGLE_FILE = (
    "one file holding the init and media segments: ffmpeg's -hls_flags single_file (byte "
    "ranges into one growing file) is not supported; push each segment as its own file"
)


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
    segment: SegmentRef | None = None
    completed: tuple[Clip, ...] = ()  # clips this segment completed


def init_id(data: bytes) -> str:
    """An init segment's identity is its content: a re-sent one is the same init."""
    return hashlib.sha256(data).hexdigest()[:32]


def key_hash(key: str) -> str:
    """What the store keeps of a stream's push key: never the key itself."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


@dataclass
class Ingest:
    store: Store
    default_dvr_duration: float
    ingest_key: str | None = None  # the operator's key: may push to (and create) any stream
    anonymous: bool = False  # pushes without a key, to streams without one, create streams
    # Called with each clip a segment completed (MP4 prebuild, VOD save).
    on_complete: list[Callable[[Clip], None]] = field(default_factory=list)

    async def authorize(self, stream_id: str, key: str | None) -> bool:
        """Whether a push with this key may go to this stream; raises Unauthorized if not.
        True when the push may also create the stream (the ingest key, anonymous ingest)."""
        if key is not None and self.ingest_key is not None and _same(key, self.ingest_key):
            return True
        try:
            stream = await self.store.stream(stream_id)
        except StreamNotFound:
            if self.anonymous and key is None:
                return True
            raise Unauthorized(
                f"no stream {stream_id!r}: create it with POST /streams and push with its "
                "push_key as 'Authorization: Bearer <key>'"
            ) from None
        if stream.push_key_hash is None:
            if self.anonymous and key is None:
                return False
        elif key is not None and _same(key_hash(key), stream.push_key_hash):
            return False
        raise Unauthorized(
            f"pushing to stream {stream_id!r} needs its push_key (or the ingest key) as "
            "'Authorization: Bearer <key>'"
        )

    async def receive(
        self,
        stream_id: str,
        rendition_name: str,
        filename: str,
        body: bytes,
        may_create: bool = True,
    ) -> IngestResult:
        """Take one pushed file. Raises BadMedia on anything malformed, before anything is
        stored: not even the stream a first push would create. `may_create`: a stream first
        seen here is created (what `authorize` allowed)."""
        if not may_create:
            await self.store.stream(stream_id)  # it must exist
        if filename.endswith(".m3u8"):
            entries = parse_playlist(body)
            await self._ensure_stream(stream_id)
            await self.store.set_playlist(stream_id, rendition_name, entries)
            await self._late_dates(stream_id, rendition_name, entries)
            return IngestResult(Received.PLAYLIST)
        if is_transport_stream(body):
            return await self._transport_stream(stream_id, rendition_name, filename, body)
        kind = _kind(body)
        if kind == b"moov":
            if _holds(body, b"moof"):
                raise BadMedia(SINGLE_FILE)
            init = parse_init(body)
            await self._ensure_stream(stream_id)
            await self.store.put_init(stream_id, rendition_name, init, init_id(body))
            return IngestResult(Received.INIT)
        if kind == b"moof":
            state = await self._state(stream_id, rendition_name)
            if state is None or state.init_id is None:
                raise NoInitSegment(
                    f"rendition {rendition_name!r} of stream {stream_id!r} has no init segment yet"
                )
            init = await self.store.init(state.init_id)
            result = await self._add_segment(state, stream_id, init, filename, body)
            for clip in result.completed:
                for hook in self.on_complete:
                    hook(clip)
            return result
        raise BadMedia("neither an init segment (moov) nor a media segment (moof)")

    async def _transport_stream(
        self, stream_id: str, rendition: str, filename: str, body: bytes
    ) -> IngestResult:
        """An MPEG-TS segment (ffmpeg's default, most hardware encoders'): demuxed into an fMP4
        init and fragment, so playlists and MP4s work unchanged (clips of it are fMP4 HLS).
        The demuxer's state (33-bit timestamps unwrapped across segments) is the rendition's."""
        await self._ensure_stream(stream_id)
        state = await self._state(stream_id, rendition)
        previous = TsState.from_json(state.demux) if state is not None and state.demux else None
        demuxed, after = demux_segment(body, previous)
        init = parse_init(demuxed.init)
        new_id = init_id(demuxed.init)
        if state is None or state.init_id != new_id:
            await self.store.put_init(stream_id, rendition, init, new_id)
        state = await self._state(stream_id, rendition)
        assert state is not None and state.init_id == new_id
        result = await self._add_segment(state, stream_id, init, filename, demuxed.fragment)
        await self.store.set_demux_state(stream_id, rendition, after.to_json())
        for clip in result.completed:
            for hook in self.on_complete:
                hook(clip)
        return result

    async def _state(self, stream_id: str, rendition: str) -> RenditionState | None:
        try:
            return await self.store.rendition(stream_id, rendition)
        except StreamNotFound:
            return None

    async def _ensure_stream(self, stream_id: str) -> None:
        """A stream first seen on ingest is created with the default dvr_duration. Another
        rendition's first push (or another process) may create it between the two steps: on
        a shared store that is an encoder starting its ladder, not a conflict."""
        try:
            await self.store.stream(stream_id)
        except StreamNotFound:
            info = StreamInfo(stream_id, stream_id, self.default_dvr_duration, self.store.clock())
            with contextlib.suppress(StreamExists):
                await self.store.create_stream(info)

    async def _add_segment(
        self,
        state: RenditionState,
        stream_id: str,
        init: InitSegment,
        filename: str,
        body: bytes,
    ) -> IngestResult:
        media = parse_segment(body, init)
        main = media.track(init.main.track_id)
        if main is None or main.duration <= 0:
            raise BadMedia(f"segment has no samples of track {init.main.track_id}")
        duration = main.duration / init.main.timescale
        if duration > MAX_SEGMENT_SECONDS:
            raise BadMedia(f"segment lasts {duration:.0f} s, more than {MAX_SEGMENT_SECONDS:g}")
        digest = fingerprint(body)  # of what the encoder sent: retries match
        prev = state.last
        if (
            prev is not None
            and prev.name == filename
            and prev.init_id == state.init_id
            and state.last_digest == digest
            and not state.init_resent
            and state.last_arrival is not None
            and self.store.clock() - state.last_arrival < duration + RETRY_WINDOW
        ):
            # A retried PUT: the very same bytes, soon, and no init since. A restarted encoder
            # sends its init again first (an MPEG-TS one comes back after being away), then
            # index0 from tfdt 0: maybe byte-identical to the last run's (a test pattern is),
            # and never a duplicate.
            return IngestResult(Received.DUPLICATE, prev)
        state, init = await self._hevc_entry(state, stream_id, init, media, body)
        shift, restarted = await self._restamp(state, init, main.base_decode_time)
        if any(shift.values()):
            try:
                body = shift_decode_times(body, shift)
            except BadMedia:  # a tfdt version 0 cannot hold it: keep the encoder's times
                shift = {}
            else:
                media = parse_segment(body, init)
                main = media.track(init.main.track_id)
                assert main is not None
        # What every MP4 layout needs of it, prepared once: a new clip's moov is then a join
        # of per-segment pieces, O(segments). The per-sample arrays are not kept.
        tables = prepare_segment(init, media)
        contiguous = (
            prev is not None
            and not restarted
            and prev.init_id == state.init_id
            and not state.init_changed
            and state.last_end_dts == main.base_decode_time
        )
        entry = state.playlist.get(filename)
        now = self.store.clock()
        dvr = (await self.store.stream(stream_id)).dvr_duration
        pdt = _trusted_pdt(entry, now, duration, dvr)
        if pdt is not None and prev is not None and pdt < prev.end - _BACKWARDS_TOLERANCE:
            # An entry of this name dated before the last segment's end: the playlist of a
            # run before a restart (index0 again). Its date is stale, not this segment's; the
            # new run's playlist dates it when it comes.
            pdt = None
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
        video = init.video
        video_samples = media.track(video.track_id) if video is not None else None
        keyframe = video is None or (
            video_samples is not None and decodable_from_start(video, video_samples, body)
        )
        sizes = {t.track_id: t.total_size for t in media.tracks}
        assert state.init_id is not None
        ref = SegmentRef(
            key=SegmentKey(stream_id, state.name, state.next_seq),
            name=filename,
            init_id=state.init_id,
            start=start,
            duration=duration,
            size=len(body),
            discontinuity=discontinuity,
            keyframe=keyframe,
            frames=video_samples.count if video_samples is not None else 0,
            track_sizes=tuple(sizes.get(t.track_id, 0) for t in init.tracks),
            timing=timing,
            cost=len(body) + tables.nbytes + REF_COST,
        )
        completed = await self.store.add_segment(
            ref, body, tables, main.end_decode_time, digest, tuple(sorted(shift.items()))
        )
        return IngestResult(Received.SEGMENT, ref, tuple(completed))

    async def _hevc_entry(
        self,
        state: RenditionState,
        stream_id: str,
        init: InitSegment,
        media: SegmentMedia,
        body: bytes,
    ) -> tuple[RenditionState, InitSegment]:
        """The init this segment is served with, `hev1` made `hvc1` where that is true.

        Apple's HLS plays HEVC in fMP4 only from an `hvc1` entry. The init arrives before any
        segment, and a `hev1` one may hold no parameter set: the first segment of it is where
        they are found, so the rendition's init is rewritten then (hevc.as_hvc1) and served
        as `hvc1` from that segment on. Each later segment must carry no other set, or the
        rendition turns back to `hev1` there (a new init: a discontinuity). Where it stays
        `hev1`, the stream's JSON says why (`note`)."""
        video = init.video
        current = state.init_id
        if video is None or current is None or state.init_note is not None:
            return state, init
        revision: _Revision | None
        if hevc.is_hev1(video):
            revision = _hvc1_revision(init, current, body, media)
        elif state.init_source is not None:  # an init this ingest converted
            revision = _hev1_revision(init, state.init_source, body, media)
        else:
            return state, init
        if revision is None:
            return state, init
        if not await self.store.revise_init(
            stream_id,
            state.name,
            current,
            revision.init,
            revision.init_id,
            source_id=revision.source_id,
            note=revision.note,
            changed=revision.changed,
        ):
            return state, init  # a new init came meanwhile: this segment was sent under this one
        state = dataclasses.replace(
            state,
            init_id=revision.init_id,
            init_source=revision.source_id,
            init_note=revision.note,
            init_changed=state.init_changed or revision.changed,
        )
        return state, revision.init

    async def _restamp(
        self, state: RenditionState, init: InitSegment, base: int
    ) -> tuple[dict[int, int], bool]:
        """The decode-time shift this segment's tracks get, and whether it starts a new run.

        An encoder that restarts starts its timestamps again (tfdt 0, or a TS clock anew).
        Served as they are, the rendition's timeline goes back at the DISCONTINUITY: players
        reset there, but ffmpeg's HLS demuxer dropped a whole segment's frames. So a run whose
        time went back is moved on to continue where the last run ended (every track by the
        same seconds, so A/V stays as the encoder made it), and the DISCONTINUITY still marks
        the restart. Only the tfdt changes: no sample byte does."""
        shift = dict(state.shift) if not state.init_changed else {}
        prev = state.last
        if prev is None or state.last_end_dts is None:
            return shift, False
        prev_init = init if prev.init_id == state.init_id else await self.store.init(prev.init_id)
        last_end = Fraction(state.last_end_dts, prev_init.main.timescale)
        main_id = init.main.track_id
        shifted = Fraction(base + shift.get(main_id, 0), init.main.timescale)
        if shifted >= last_end - Fraction(_BACKWARDS_TOLERANCE):
            return shift, False
        delta = last_end - Fraction(base, init.main.timescale)
        return {t.track_id: round(delta * t.timescale) for t in init.tracks}, True

    async def _late_dates(
        self, stream_id: str, rendition: str, entries: Mapping[str, PlaylistEntry]
    ) -> None:
        """The playlist came after its segment: give that segment the encoder's own clock."""
        state = await self._state(stream_id, rendition)
        if state is None:
            return
        segs = list(state.recent)
        now = self.store.clock()
        dvr = (await self.store.stream(stream_id)).dvr_duration
        for k in range(len(segs) - 1, -1, -1):
            seg = segs[k]
            pdt = _trusted_pdt(entries.get(seg.name), now, seg.duration, dvr)
            if pdt is None or seg.timing is Timing.PDT:
                continue
            before_ok = k == 0 or segs[k - 1].start <= pdt
            after_ok = k == len(segs) - 1 or pdt <= segs[k + 1].start
            if before_ok and after_ok:
                await self.store.retime(seg.key, pdt)
                segs[k] = dataclasses.replace(seg, start=pdt, timing=Timing.PDT)


@dataclass(frozen=True, slots=True)
class _Revision:
    """What a segment taught of its rendition's init (see `Store.revise_init`)."""

    init: InitSegment
    init_id: str
    source_id: str | None
    note: str | None
    changed: bool = False


def _hvc1_revision(init: InitSegment, current: str, body: bytes, media: SegmentMedia) -> _Revision:
    """The first segment of a `hev1` init: its parameter sets into hvcC, or a note why not."""
    try:
        data = hevc.as_hvc1(init, body, media)
        return _Revision(parse_init(data), init_id(data), source_id=current, note=None)
    except hevc.Unconvertible as exc:
        reason = str(exc)
    except BadMedia as exc:  # the segment parsed: what failed is rewriting the init
        reason = f"its init could not be rewritten ({exc.detail})"
    return _Revision(init, current, source_id=None, note=hev1_note(reason))


def _hev1_revision(
    init: InitSegment, source_id: str, body: bytes, media: SegmentMedia
) -> _Revision | None:
    """A later segment of a converted init: None while it carries no other parameter set,
    else the init back as `hev1` from this segment on (its sets changed: a discontinuity)."""
    why = hevc.foreign_sets(init, body, media)
    if why is None:
        return None
    data = hevc.as_hev1(init)
    return _Revision(parse_init(data), init_id(data), source_id, hev1_note(why), changed=True)


def hev1_note(reason: str) -> str:
    """What a rendition kept as `hev1` says in the stream's JSON."""
    return f"hev1: {reason}; Apple devices will not play this rendition"


def _trusted_pdt(
    entry: PlaylistEntry | None, now: float, duration: float, dvr: float
) -> float | None:
    """The entry's program-date-time, if it is near the segment's arrival: at most one
    segment plus PDT_LEAD ahead of it, and not so far back that the segment would already
    have left the DVR. A date
    23 h ahead moved a stream's whole timeline out of reach of "the last 10 s" clips; such a
    segment is timed by media continuity or arrival instead."""
    if entry is None or entry.program_date_time is None:
        return None
    pdt = entry.program_date_time
    if pdt > now + duration + PDT_LEAD or pdt + duration < now - dvr - PDT_LEAD:
        return None
    return pdt


def _recent_part(text: str) -> str:
    """The playlist cut to its last TAIL_ENTRIES segments (plus what dates them).

    An EVENT playlist re-sent after every segment grows without bound: parsing all of it each
    time cost 68 ms per hour of entries, on the event loop. Only recent entries can still be
    matched to a segment, so only they are parsed, out of the last TAIL_BYTES at most (a
    hostile 1 MiB of 350,000 comment lines cost 1.2 s a PUT); the cut goes back to the
    nearest EXT-X-PROGRAM-DATE-TIME so that dates carried forward by EXTINF stay right.
    """
    if len(text) > TAIL_BYTES:
        text = "#EXTM3U\n" + text[-TAIL_BYTES:].split("\n", 1)[-1]  # from a whole line
    # Comments (# not followed by EXT) say nothing to us and cost the parser a step each.
    lines = [ln for ln in text.splitlines() if not ln.startswith("#") or ln.startswith("#EXT")]
    text = "\n".join(lines)
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


def _holds(body: bytes, typ: bytes) -> bool:
    """Whether a top-level box of that type is among the first MAX_LEADING_BOXES."""
    for k, box in enumerate(boxes.iter_boxes(body)):
        if box.type == typ:
            return True
        if k >= MAX_LEADING_BOXES:
            break
    return False


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


def fingerprint(body: bytes) -> str:
    """What tells a retried PUT from a new segment of the same name: length and CRC-32 of the
    bytes sent. sha256 was a fifth of a segment's whole ingest cost (171 us for 300 kB against
    44 us); a retry is also same-named, from the same key, within the segment's duration and
    with no init between, so only a checksum collision in that window could drop a segment."""
    return f"{len(body)}:{zlib.crc32(body):08x}"


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
    if any(seg.byterange for seg in playlist.segments):
        raise BadMedia(SINGLE_FILE.replace("one file holding", "a playlist of byte ranges into"))
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
