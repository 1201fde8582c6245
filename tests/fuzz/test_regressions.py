"""The fuzzers' finds in packager/media and packager/service/ingest.py, kept as plain examples.

Each test is the smallest form of a failing input the fuzzers produced, with what the code did
before its fix: an exception other than BadMedia (a 500), seconds of CPU on the event loop, or
a refused push that still changed the store.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections.abc import Callable

import pytest

from packager.clock import ManualClock
from packager.errors import BadMedia, PackagerError
from packager.media.fragment import MAX_SAMPLES_PER_SEGMENT, parse_segment
from packager.media.init import parse_init
from packager.media.rewrite import shift_decode_times
from packager.package import hls
from packager.package.mp4 import build_layout
from packager.service.clips import ClipService
from packager.service.ingest import Ingest
from packager.store.memory import MemoryStore
from packager.store.model import Clip
from tests.conftest import T0
from tests.fuzz.strategies import init_bytes, segment_bytes
from tests.mp4_support import stored_segments

# Where boxes lie in rendition 0's fixtures (the ladder's files share one layout).
FIRST_TRUN = 208  # the first trun of a segment (after styp, 2 sidx, moof, mfhd, traf, tfhd, tfdt)
VIDEO_TFHD = 160
VIDEO_MDHD = 300  # in the init segment


def box(typ: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def refused_quickly(parse: Callable[[], object], seconds: float = 1.0, mb: int = 50) -> BadMedia:
    """BadMedia within `seconds`, then (run again under tracemalloc) within `mb` of allocation."""
    started = time.perf_counter()
    with pytest.raises(BadMedia) as caught:
        parse()
    took = time.perf_counter() - started
    assert took < seconds, f"took {took:.1f} s"
    tracemalloc.start()
    try:
        with pytest.raises(BadMedia):
            parse()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mb << 20, f"allocated {peak / 1e6:.0f} MB"
    return caught.value


def fragment(*trafs: bytes, mdat: bytes = b"\0" * 16) -> bytes:
    return box(b"moof", b"".join(trafs)) + box(b"mdat", mdat)


def tfhd(flags: int = 0x020000, *fields: int) -> bytes:
    return box(b"tfhd", struct.pack(f">II{len(fields)}I", flags, 1, *fields))


TFDT = box(b"tfdt", struct.pack(">IQ", 0x01000000, 0))


def test_a_trun_whose_data_lies_before_the_segment_is_bad_media() -> None:
    """Was OverflowError (a negative offset into array('Q')): a 500 on PUT."""
    data = bytearray(segment_bytes("0", 0))
    struct.pack_into(">i", data, FIRST_TRUN + 16, -10_000)  # data_offset, relative to the moof
    with pytest.raises(BadMedia, match="outside every mdat"):
        parse_segment(bytes(data), parse_init(init_bytes("0")))


def test_a_trun_claiming_200000_samples_in_a_few_bytes_is_refused_quickly() -> None:
    """Was 15 s and 78 MB: pymp4 built an object per declared sample before any check."""
    data = bytearray(segment_bytes("0", 0))
    struct.pack_into(">II", data, FIRST_TRUN + 8, 0x000001, MAX_SAMPLES_PER_SEGMENT)
    refused_quickly(lambda: parse_segment(bytes(data), parse_init(init_bytes("0"))))


def test_the_sample_limit_counts_every_trun_of_a_traf() -> None:
    """Was checked once per traf, after pymp4 had read each 150,000-sample run (~20 s)."""
    init = parse_init(init_bytes("0"))
    head = tfhd(0x020018, 1, 0)  # default duration 1, default size 0: no bytes per sample
    trun = box(b"trun", struct.pack(">IIi", 0x1, 150_000, 0))
    moof_size = 8 + 8 + len(head) + len(TFDT) + 2 * len(trun)
    trun = box(b"trun", struct.pack(">IIi", 0x1, 150_000, moof_size + 8))  # at the mdat
    data = fragment(box(b"traf", head + TFDT + trun + trun))
    error = refused_quickly(lambda: parse_segment(data, init))
    # Either bound stops it first: the sample limit, or samples no byte backs (#12).
    assert "samples" in str(error) or "zero bytes" in str(error)


@pytest.mark.parametrize("with_tfdt", [True, False])
def test_a_segment_of_20000_empty_trafs_is_refused_quickly(with_tfdt: bool) -> None:
    """Was 4.5 s for 1 MB (pymp4 read each tfhd and tfdt), minutes for a 64 MB push."""
    init = parse_init(init_bytes("0"))
    first = box(b"traf", tfhd() + TFDT)
    rest = first if with_tfdt else box(b"traf", tfhd())
    data = fragment(first, *[rest] * ((1 << 20) // len(rest)))
    refused_quickly(lambda: parse_segment(data, init))


def test_a_segment_of_65000_empty_truns_is_refused_quickly() -> None:
    """Was 0.6 s per MB of 16-byte truns: the box budget bounds the walk."""
    init = parse_init(init_bytes("0"))
    trun = box(b"trun", struct.pack(">II", 0, 0))
    data = fragment(box(b"traf", tfhd() + TFDT + trun * ((1 << 20) // len(trun))))
    refused_quickly(lambda: parse_segment(data, init))


def test_a_tfdt_of_unknown_version_is_bad_media() -> None:
    """Not a find: pymp4 refused it too; the struct reader must keep doing so."""
    init = parse_init(init_bytes("0"))
    data = bytearray(segment_bytes("0", 0))
    data[data.find(b"tfdt") + 4] = 2
    with pytest.raises(BadMedia, match="tfdt"):
        parse_segment(bytes(data), init)


def test_shifting_a_64_bit_tfdt_past_its_range_is_bad_media() -> None:
    """Was struct.error from pack_into('>Q')."""
    data = bytearray(segment_bytes("0", 0))
    struct.pack_into(">Q", data, data.find(b"tfdt") + 8, 2**64 - 1)
    with pytest.raises(BadMedia, match="cannot hold"):
        shift_decode_times(bytes(data), {1: 1})


def test_shifting_a_truncated_tfdt_is_bad_media() -> None:
    """Was struct.error, or a silent write into the next box when one followed."""
    data = fragment(box(b"traf", tfhd() + box(b"tfdt", b"\x01\x00\x00\x00")))
    with pytest.raises(BadMedia, match="tfdt"):
        shift_decode_times(data, {1: 1})


@pytest.fixture
def ingest() -> Ingest:
    return Ingest(MemoryStore(ManualClock(T0), 1 << 30), 3600.0)


@pytest.mark.parametrize(
    "name, body",
    [
        ("init_0.mp4", init_bytes("0")[:-1]),
        ("index0.m4s", b"garbage"),
        ("index0.m4s", segment_bytes("0", 0)),  # a segment before any init: 409
        ("index.m3u8", b"not a playlist"),
    ],
    ids=["truncated-init", "garbage", "segment-before-init", "bad-playlist"],
)
async def test_a_refused_push_to_a_new_stream_creates_no_stream(
    ingest: Ingest, name: str, body: bytes
) -> None:
    """Was: the stream was created before the body was read, so garbage made streams."""
    with pytest.raises(PackagerError):
        await ingest.receive("fresh", "0", name, body)
    assert await ingest.store.streams() == []


async def test_a_push_of_a_million_tiny_boxes_is_refused_quickly(ingest: Ingest) -> None:
    """Was a walk over every box to find moov or moof: ~0.3 s per MB, 20 s for 64 MB."""
    body = box(b"free", b"") * (1 << 20)  # 8 MB
    started = time.perf_counter()
    with pytest.raises(BadMedia):
        await ingest.receive("s", "0", "index0.m4s", body)
    assert time.perf_counter() - started < 0.1


async def _playable(ingest: Ingest, clip: Clip) -> None:
    store = ingest.store
    clip = await store.clip(clip.stream_id, clip.id)
    hls.master_playlist(
        clip, {cr.first_init: await store.init(cr.first_init) for cr in clip.renditions}
    )
    for cr in clip.renditions:
        hls.media_playlist(clip, cr)
        build_layout(await stored_segments(store, cr), clip.start)


async def test_a_segment_lasting_millennia_is_bad_media(ingest: Ingest) -> None:
    """Was accepted with its start (arrival minus duration) in year -6140: the clip's playlist
    raised ValueError and its MP4 struct.error, a 500 on every playback link."""
    init = bytearray(init_bytes("0"))
    struct.pack_into(">I", init, VIDEO_MDHD + 20, 1)  # video timescale: 1 tick a second
    await ingest.receive("s", "0", "init_0.mp4", bytes(init))
    segment = bytearray(segment_bytes("0", 0))
    struct.pack_into(">I", segment, VIDEO_TFHD + 16, 2**32 - 1)  # default sample duration
    with pytest.raises(BadMedia, match="lasts"):
        await ingest.receive("s", "0", "live3.m4s", bytes(segment))
    assert await ingest.store.dvr_segments("s", "0") == []


async def test_a_program_date_time_before_1970_is_bad_media(ingest: Ingest) -> None:
    """Was accepted, and a late playlist moved a segment a clip held to year 0: the clip's
    playlist raised ValueError (500)."""
    await ingest.receive("s", "0", "init_0.mp4", init_bytes("0"))
    await ingest.receive("s", "0", "live3.m4s", segment_bytes("0", 0))
    clip = await ClipService(ingest.store, 3600.0).create_clip("s", 1.0, start=T0 - 1.5)
    late = b"#EXTM3U\n#EXTINF:2.0,\n#EXT-X-PROGRAM-DATE-TIME:0001-01-01T00:00:00+23:59\nlive3.m4s\n"
    with pytest.raises(BadMedia, match="PROGRAM-DATE-TIME"):
        await ingest.receive("s", "0", "index.m3u8", late)
    await _playable(ingest, clip)


@pytest.mark.parametrize(
    "date", ["0001-01-01T00:00:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00"]
)
def test_a_program_date_time_at_the_ends_of_the_calendar_is_bad_media(date: str) -> None:
    from packager.service.ingest import parse_playlist

    body = f"\ufeff#EXTM3U\n#EXTINF:2.000000,\n#EXT-X-PROGRAM-DATE-TIME:{date}\nx.m4s\n".encode()
    with pytest.raises(BadMedia):  # the m3u8 parser or our range check, never a ValueError
        parse_playlist(body)


def test_a_program_date_time_without_a_zone_is_read_as_utc() -> None:
    from packager.service.ingest import parse_playlist

    body = b"#EXTM3U\n#EXTINF:2.0,\n#EXT-X-PROGRAM-DATE-TIME:2027-01-15T08:00:00\nx.m4s\n"
    assert parse_playlist(body)["x.m4s"].program_date_time == 1800000000.0
