"""What only a shared store does: several processes (here, several `RedisStore`s on one real
redis-server, each with its own caches, as separate processes have) see one state; timers
fire once; TTLs free Redis' memory with no process left; a Redis Cluster keeps each stream on
one node. The behaviour both backends share is tested in test_store.py and the HTTP suites."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from redis.crc import key_slot

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition
from packager.errors import ClipNotFound
from packager.http.app import create_app
from packager.http.keys import SERVICES
from packager.service.compose import Services, build_services
from packager.store.base import Limits, SegmentGone, TimerKind
from packager.store.model import Clip, ClipRendition, ClipState
from packager.store.redis import LocalCache, RedisStore
from packager.store.shared_videos import SharedVideoLibrary
from packager.store.videos import Video, VideoFile
from tests.conftest import feed_past
from tests.store.redis_support import LocalCluster, RedisServer

API = {"Authorization": "apikey k"}


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server.url


@pytest.fixture
async def processes(
    redis_url: str, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[list[Services]]:
    """Two packager processes' services over one Redis: each its own store object and caches."""
    made = []
    for n in range(2):
        store = RedisStore.from_url(redis_url, clock, 1 << 30)
        config = Config(api_keys=("k",), data_dir=tmp_path / str(n))
        made.append(build_services(config, clock, store))
    yield made
    for services in made:
        await services.store.close()


async def test_ingest_on_one_process_cut_and_play_on_another(
    processes: list[Services], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 10)
    clip = await b.clips.create_clip("demo", duration=6, start=origin + 2)
    assert clip.state is ClipState.COMPLETE
    seen_by_a = await a.store.clip("demo", clip.id)
    assert seen_by_a == clip
    for cr in clip.renditions:
        for ref in cr.segments:
            assert await a.store.segment_data(ref.key) == await b.store.segment_data(ref.key)
            assert await b.store.segment_tables(ref.key) == await a.store.segment_tables(ref.key)
    built_a = await a.mp4.get(clip, clip.reference, clock())
    built_b = await b.mp4.get(seen_by_a, seen_by_a.reference, clock())
    bodies = []
    for built, services in ((built_a, a), (built_b, b)):
        data = {k: await services.mp4.read(k) for k in built.layout.keys()}
        bodies.append(b"".join(built.layout.iter_range(read=data.__getitem__)))
    assert bodies[0] == bodies[1] and len(bodies[0]) == built_a.layout.size


async def test_a_growing_clip_is_fed_by_whichever_process_ingests(
    processes: list[Services], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 10)
    clip = await b.clips.create_clip("demo", duration=6)  # from now on: growing
    assert clip.state is ClipState.GROWING
    completed: list[Clip] = []
    a.ingest.on_complete.append(completed.append)
    for k in range(10, 13):
        clock.advance(2)
        await feed.push(k, feed.segment_start(k, origin))
        growing = await b.store.clip("demo", clip.id)  # read fresh by the other process
        assert [len(cr.segments) for cr in growing.renditions] == [k - 9] * 3
    assert growing.state is ClipState.COMPLETE
    assert [c.id for c in completed] == [clip.id]  # the ingesting process ran the hooks


async def test_timers_fire_once_and_a_dead_process_lease_comes_round_again(
    processes: list[Services], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 10)
    first = await a.clips.create_clip("demo", duration=4, start=origin, expiration=clock() + 100)
    second = await a.clips.create_clip("demo", duration=4, start=origin, expiration=clock() + 200)
    clock.advance(150)
    fired = await asyncio.gather(a.store.fire_due(), b.store.fire_due())
    # Process a read both clips (it cut them): a local notice on top of the real expiry
    # lets its caches go; the expiry itself ran once, in one of the two.
    assert (await a.store.stats()).expired_clips == 1
    assert [t.clip.id for t in fired[0] + fired[1]].count(first.id) >= 1
    # A process takes the next timer and dies before handling it (the script alone).
    assert isinstance(a.store, RedisStore)
    clock.advance(100)
    taken = await a.store._scripts["TAKE_TIMERS"](
        keys=[a.store._due, a.store._leased], args=[repr(clock()), repr(clock() + 60), 10]
    )
    assert [m.decode().rsplit("|", 1)[1] for m in taken] == [second.id]
    assert await b.store.fire_due() == []  # leased: not yet anyone else's
    assert (await b.store.stats()).clips == 1
    clock.advance(61)
    fired_b = await b.store.fire_due()
    assert [(t.kind, t.clip.id) for t in fired_b] == [(TimerKind.EXPIRE, second.id)]
    stats = await b.store.stats()
    assert (stats.clips, stats.expired_clips, stats.pinned_bytes) == (0, 2, 0)


async def test_a_clip_whose_segment_left_the_dvr_meanwhile_is_refused(
    processes: list[Services], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 10)
    held = await a.clips.create_clip("demo", duration=4, start=origin)
    # Process a cuts [origin + 10, origin + 14) ...
    later = [
        tuple(await a.store.dvr_segments("demo", r.name, origin + 10, origin + 14))
        for r in await a.store.ladder("demo")
    ]
    cut = dataclasses.replace(
        held,
        id="f" * 32,
        renditions=tuple(
            dataclasses.replace(cr, segments=segs)
            for cr, segs in zip(held.renditions, later, strict=True)
        ),
    )
    assert all(len(cr.segments) == 2 for cr in cut.renditions)
    # ... process b lets the DVR go before a pins it: the pin is refused as a whole.
    await b.store.delete_stream("demo")
    with pytest.raises(SegmentGone):
        await a.store.add_clip(cut)
    stats = await a.store.stats()
    assert stats.clips == 1 and stats.pinned_bytes == stats.clip_only_bytes > 0
    # What `held` pins outlived the DVR and still plays.
    for ref in held.reference.segments:
        assert len(await b.store.segment_data(ref.key)) == ref.size


async def test_counters_are_recounted_when_redis_expired_a_clip_no_process_saw(
    processes: list[Services],
    ladder: list[RecordedRendition],
    clock: ManualClock,
    redis_server: RedisServer,
) -> None:
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 5)
    clip = await a.clips.create_clip("demo", duration=4, start=origin, expiration=clock() + 100)
    assert (await a.store.stats()).pinned_bytes > 0
    # Every process was down when the clip's TTL ran out: Redis dropped its keys itself.
    with redis_server.client() as admin:
        for key in admin.scan_iter(match=f"pk:{{demo}}:clip:{clip.id}*"):
            admin.delete(key)
    clock.advance(101)
    assert await b.store.fire_due() == []  # nothing to tell of a clip it cannot read
    stats = await b.store.stats()
    assert (stats.pinned_bytes, stats.clip_only_bytes, stats.clips) == (0, 0, 0)
    assert stats.dvr_segments == 15


async def test_clip_ttl_frees_redis_memory_with_no_process_running(
    redis_url: str, redis_server: RedisServer, ladder: list[RecordedRendition]
) -> None:
    """No timer runs here: only Redis' own expiry (lazy plus sampled, hence the polling)."""
    clock = ManualClock(time.time())  # TTLs are relative to the store's clock: real seconds
    store = RedisStore.from_url(redis_url, clock, 1 << 30, expiry_grace=0.5)
    services = build_services(Config(), clock, store)
    try:
        await services.clips.create_stream("short", "short", 2.0)  # a 2 s DVR
        feed = DemoFeed(services.ingest, ladder, clock, stream_id="short")
        for rendition in ladder:  # the inits first: what stays while the stream exists
            await services.ingest.receive("short", rendition.name, "init_0.mp4", rendition.init)
        with redis_server.client() as admin:
            base_keys = set(admin.keys())
            await feed_past(feed, clock, 3)
            now = clock()
            cuts = [
                (r, await store.dvr_segments("short", r.name, now - 2, now))
                for r in await store.ladder("short")
            ]
            renditions = tuple(
                ClipRendition(
                    number=n,
                    height=r.height,
                    source=r.name,
                    target_duration=r.target_duration,
                    init_id=r.init_id,
                    bandwidth=r.peak_bitrate,
                    average_bandwidth=int(r.bitrate),
                    source_frame_rate=r.frame_rate,
                    segments=tuple(segs),
                )
                for n, (r, segs) in enumerate(cuts, start=1)
            )
            clip = await store.add_clip(
                Clip(
                    id="c" * 32,
                    stream_id="short",
                    created_at=now,
                    requested_start=now - 2,
                    requested_end=now,
                    expiration=now + 2,
                    vod_required=False,
                    renditions=renditions,
                    state=ClipState.COMPLETE,
                    completed_at=now,
                )
            )
            assert all(len(cr.segments) == 1 for cr in clip.renditions)
            grown = _held(admin, base_keys)
            assert grown > sum(cr.segments[0].size for cr in clip.renditions)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                left = {k for k in set(admin.keys()) - base_keys if b":data:" in k or b":seg:" in k}
                left |= {k for k in set(admin.keys()) - base_keys if b":clip:" in k}
                if not left:
                    break
                await asyncio.sleep(0.2)
            assert not left, left
            # What remains beyond the baseline is the stream's bookkeeping, small and bounded:
            # its DVR index (entries naming keys that are gone, dropped by the next sweep),
            # its counters and clip index, the timers.
            extra = set(admin.keys()) - base_keys
            assert all(
                b":ring:" in k or b":td:" in k or k.endswith((b":acct", b":clips", b":due"))
                for k in extra
            ), extra
            left_over = _held(admin, base_keys)
            assert left_over < grown / 20, (left_over, grown)
            with pytest.raises(ClipNotFound):
                clock.now = time.time()
                await store.clip("short", clip.id)
    finally:
        await store.close()


def _held(admin: redis.Redis, before: set[bytes]) -> int:
    """Bytes Redis holds in the keys made since `before` (MEMORY USAGE, every element
    counted). INFO's used_memory_dataset moved with client buffers by more than a segment."""
    return sum(admin.memory_usage(k, samples=0) or 0 for k in set(admin.keys()) - before)


def test_local_cache_keeps_its_byte_bound() -> None:
    cache = LocalCache(100)
    for n in range(10):
        cache.put(n, b"x" * 30, 30)
    assert cache.size <= 100 and len(cache) == 3
    assert cache.get(9) is not None and cache.get(0) is None
    cache.put("big", b"x" * 101, 101)  # larger than the whole cache: not kept
    assert cache.get("big") is None


# ---- Redis Cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(tmp_path_factory.mktemp("cluster"))
    yield made
    made.stop()


def _stream_on_each_master(cluster: LocalCluster) -> list[tuple[str, int]]:
    """A stream id whose hash tag lands on each master, with that master's port."""
    slots = cluster.servers[0].client().cluster("slots")
    owners = [(int(lo), int(hi), int(nodes[0][1])) for lo, hi, *nodes in slots]
    found: dict[int, str] = {}
    for n in range(1000):
        sid = f"s{n}"
        slot = key_slot(sid.encode())
        port = next(p for lo, hi, p in owners if lo <= slot <= hi)
        found.setdefault(port, sid)
        if len(found) == 3:
            break
    return [(sid, port) for port, sid in found.items()]


async def test_cluster_cuts_and_plays_a_clip_on_each_master(
    cluster: LocalCluster, ladder: list[RecordedRendition], tmp_path: Path
) -> None:
    clock = ManualClock(time.time())
    store = RedisStore.from_url(cluster.url, clock, 1 << 30, Limits())
    app = create_app(
        Config(api_keys=("k",), data_dir=tmp_path), clock=clock, timers=False, store=store
    )
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        streams = _stream_on_each_master(cluster)
        assert len({port for _, port in streams}) == 3
        services = app[SERVICES]
        for sid, port in streams:
            feed = DemoFeed(services.ingest, ladder, clock, stream_id=sid)
            origin = await feed_past(feed, clock, 4)
            resp = await client.post(
                f"/streams/{sid}/clip_recording",
                json={"duration": 4, "start": origin},
                headers=API,
            )
            assert resp.status == 201, await resp.text()
            made = await resp.json()
            master = await client.get(f"/rec/{sid}/rec_{made['id']}_media_1_360.m3u8")
            assert master.status == 200
            segment = await client.get(f"/rec/{sid}/rec_{made['id']}_media_1_360_seg0.m4s")
            assert segment.status == 200
            assert await segment.read() == await store.segment_data(
                (await store.clip(sid, made["id"])).renditions[0].segments[0].key
            )
            mp4 = await client.get(f"/rec/{sid}/rec_{made['id']}_master.mp4")
            assert mp4.status == 200 and len(await mp4.read()) > 100_000
            # The stream's keys are all on the master its hash tag names.
            node = next(s for s in cluster.servers if s.port == port)
            with node.client() as admin:
                assert admin.exists(f"pk:{{{sid}}}:info")
                assert len(list(admin.scan_iter(match=f"pk:{{{sid}}}:data:*"))) == 12
        stats = await store.stats()
        assert stats.streams == 3 and stats.clips == 3
        # Another process (an empty cache) reads the tables of every stream's segments in one
        # call: each master answers for its own stream's keys.
        keys = [s.key for sid, _ in streams for s in await store.dvr_segments(sid, "0")]
        other = RedisStore.from_url(cluster.url, clock, 1 << 30, Limits())
        try:
            assert await other.segments_tables(keys) == [
                await store.segment_tables(key) for key in keys
            ]
        finally:
            await other.close()
    finally:
        await client.close()


def test_a_video_saved_by_one_process_is_listed_by_every_other(
    redis_url: str, tmp_path: Path
) -> None:
    a = SharedVideoLibrary(tmp_path, redis_url)
    b = SharedVideoLibrary(tmp_path, redis_url)
    try:
        a.load()
        b.load()
        ids = [a.reserve()[0], b.reserve()[0], a.reserve()[0]]
        assert len(set(ids)) == 3  # one counter for all
        video_id, slug = b.reserve()
        draft = Video(video_id, slug, "c" * 32, "demo", None, 0.0, 0.0, 1.0)
        info = VideoFile("media_1_360", 0, "", 640, 360, "avc1", 1000)
        written = a.write(draft, [(info, iter([memoryview(b"mp4 bytes")]))])
        assert b.get(video_id) is None
        b.refresh()
        assert b.get(video_id) == written and b.for_clip("c" * 32) == written
        assert b.delete(video_id)
        a.refresh()
        assert a.get(video_id) is None
        restarted = SharedVideoLibrary(tmp_path, redis_url)
        restarted.load()
        assert restarted.reserve()[0] > video_id  # ids are never handed out twice
        restarted.close()
    finally:
        a.close()
        b.close()


async def test_a_burst_of_requests_waits_for_connections_rather_than_failing(
    processes: list[Services], ladder: list[RecordedRendition], clock: ManualClock
) -> None:
    """200 clients at once made redis-py's default pool raise "Too many connections" (500s in
    the bench): the pool is bounded and waits, and reads of one clip are shared."""
    a, b = processes
    feed = DemoFeed(a.ingest, ladder, clock)
    origin = await feed_past(feed, clock, 10)
    clip = await a.clips.create_clip("demo", duration=8, start=origin)
    keys = [ref.key for cr in clip.renditions for ref in cr.segments]
    reads = [b.store.clip("demo", clip.id) for _ in range(500)]
    datas = [b.store.segment_data(keys[n % len(keys)]) for n in range(300)]
    got = await asyncio.gather(*reads, *datas)
    assert all(c == clip for c in got[:500])
    assert all(isinstance(d, bytes) and d for d in got[500:])
