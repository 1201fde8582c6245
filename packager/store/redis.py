"""The shared store: streams, DVR rings, clips, timers and memory accounting in Redis (or a
Redis Cluster), so any number of packager processes on any number of hosts serve one state.

Same observable behaviour as `MemoryStore` (the test suites run over both). How:

- Every key of a stream carries its id as a hash tag (`pk:{stream}:...`, layout in
  redis_lua.py), so a Cluster keeps a stream on one node, and each multi-key step (add a
  segment and feed the growing clips, pin a clip's segments, expire a clip, delete a stream)
  is one Lua script, atomic there. A few keys are global, each used alone: `pk:streams`
  (zset of stream ids), `pk:accounts` (streams whose counters still count, deleted ones
  included while their clips live), `pk:init:ID` (init segments, shared by content),
  `pk:where:CLIP` (a clip's stream, for `update_clip`), and `pk:{timers}:due` /
  `pk:{timers}:lease` (one slot, so taking due timers is one script).
- Pinned and held bytes are counters the scripts change (`pk:{stream}:acct`); figures across
  streams (stats, the global budget) are sums over those. Within a stream they are exact;
  across streams two processes ingesting into different streams at once may each see room
  for their own segment: the budget can be passed by the segments in flight at that moment.
- Expiry is Redis TTL as the safety net: a segment's keys live until its end + dvr_duration,
  a clip that pins it raises that to the clip's expiration (`PEXPIRE ... GT`, never
  shortened), a clip's keys live until its expiration; each plus EXPIRY_GRACE, so the explicit
  steps (sweep, expiry timer), which run on time while any process lives, always find what
  they free. TTLs are set relative to the packager's clock, which is PEXPIREAT on a synced
  clock and immune to skew between hosts. If every process is down when a clip expires,
  Redis frees its keys; the expiry timer, run at the next start, then recounts that stream.
- Timers are a sorted set of deadlines; `fire_due` leases the due ones in one script, so one
  process handles each, and a lease whose process died comes round again.
- Each process keeps a bounded LRU of what never changes: segment bytes and parsed tables by
  key, inits by id, complete clips' manifests (their life's fields are read fresh: one HMGET).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import orjson
import redis as sync_redis
import redis.asyncio as aioredis
import redis.cluster
from redis.asyncio.cluster import RedisCluster

from packager.clock import Clock
from packager.errors import (
    BudgetExceeded,
    ClipNotFound,
    LimitReached,
    NotFound,
    StreamExists,
    StreamNotFound,
)
from packager.media.init import parse_init
from packager.media.model import InitSegment
from packager.media.prepared import PreparedSegment
from packager.store import redis_lua as lua
from packager.store.base import (
    OVERLAP_EPSILON,
    Limits,
    PlaylistEntry,
    RenditionState,
    SegmentGone,
    Timer,
    TimerKind,
)
from packager.store.codec import (
    clip_from_parts,
    clip_head_to_bytes,
    num,
    playlist_from_bytes,
    playlist_to_bytes,
    ref_from_bytes,
    ref_to_bytes,
    stream_from_bytes,
    stream_to_bytes,
)
from packager.store.model import (
    TRANSITIONS,
    Clip,
    ClipState,
    InvalidTransition,
    RenditionInfo,
    SegmentKey,
    SegmentRef,
    StoreStats,
    StreamInfo,
    Timing,
)

EXPIRY_GRACE = 300.0  # seconds keys outlive their deadline, so the explicit step finds them
TIMER_LEASE = 60.0  # seconds a process has to handle the timers it took before others may
TIMERS_PER_TAKE = 200
MGET_KEYS = 256  # prepared tables per MGET: about 0.4 MB of reply (1080p, 2 s segments)
DEFAULT_CACHE_SIZE = 256 << 20
# Request bodies in flight in one process: memory of its own, bounded apart from the store.
UPLOAD_LIMIT = 512 << 20
# A complete clip's life fields (state, video_id, vod_error) read from Redis are reused this
# long: playback does not depend on them, and the API shows another process's VOD save at most
# this late (this process's own changes at once). Saves a round trip per playback request.
LIFE_FRESH = 1.0
_ACCT = ("dvr_bytes", "clip_only", "pinned", "dvr_segments", "evicted", "expired", "clips")
_ACCT_MORE = ("growing", "init_bytes")
POOL_CONNECTIONS = 64  # per process: requests wait for one rather than open more
POOL_WAIT = 10.0  # seconds a request waits for a free connection
CLUSTER_CONNECTIONS = 256  # per node (redis-py's cluster client cannot wait for one)
_MANIFEST_REF_COST = 400  # bytes a cached SegmentRef takes, for the local cache's bound
_EXPIRE, _DEADLINE, _SAVE = "E", "D", "S"
Redis = aioredis.Redis | RedisCluster


class LocalCache:
    """A byte-bounded LRU of immutable things (bytes, parsed tables, complete manifests)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        if size > self.capacity:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]
        self._items[key] = (value, size)
        self.size += size
        while self.size > self.capacity:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size -= dropped

    def drop(self, key: Any) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= old[1]

    def __len__(self) -> int:
        return len(self._items)


def parse_url(url: str) -> tuple[str, bool, str]:
    """`redis://host:port/db` or `redis+cluster://host:port` (any node of the cluster), with
    `?prefix=` naming the keys (pk): the plain URL redis-py takes, cluster or not, prefix."""
    parts = urlsplit(url)
    prefix = parse_qs(parts.query).get("prefix", ["pk"])[0]
    plain = urlunsplit(
        (parts.scheme.removesuffix("+cluster"), parts.netloc, parts.path, "", parts.fragment)
    )
    return plain, parts.scheme.endswith("+cluster"), prefix


def connect(url: str) -> tuple[Redis, str]:
    """An asyncio client for the URL (see parse_url), and the key prefix.

    A bounded pool that waits for a free connection: redis-py's default pool raises "Too many
    connections" past its size, which 200 clients at once turned into 500s (the bench)."""
    plain, cluster, prefix = parse_url(url)
    if cluster:
        return RedisCluster.from_url(plain, max_connections=CLUSTER_CONNECTIONS), prefix
    pool = aioredis.BlockingConnectionPool.from_url(
        plain, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT
    )
    return aioredis.Redis(connection_pool=pool), prefix


class RedisStore:
    """`Store` in Redis (see packager.store.base for the contract, this module's docstring
    for how)."""

    def __init__(
        self,
        client: Redis,
        clock: Clock,
        memory_budget: int,
        limits: Limits | None = None,
        *,
        prefix: str = "pk",
        cache_size: int = DEFAULT_CACHE_SIZE,
        expiry_grace: float = EXPIRY_GRACE,
        timer_lease: float = TIMER_LEASE,
        upload_limit: int = UPLOAD_LIMIT,
    ) -> None:
        self.clock = clock
        self.upload_limit = upload_limit
        self._uploading = 0
        self.budget = memory_budget
        self.limits = limits or Limits()
        self.unavailable: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        # Typed Any: redis-py types replies `bytes | str` whatever the client was built with;
        # this one always answers bytes (decode_responses is off).
        self.redis: Any = client
        self.prefix = prefix
        self.cache = LocalCache(cache_size)
        self.expiry_grace = expiry_grace
        self.timer_lease = timer_lease
        self._due = f"{prefix}:{{timers}}:due"
        self._leased = f"{prefix}:{{timers}}:lease"
        self._streams_key = f"{prefix}:streams"
        self._accounts_key = f"{prefix}:accounts"
        # Clips this process read, by expiration: when one passes, fire_due tells this
        # process's hooks even if another process ran the expiry (its caches let go).
        self._seen: list[tuple[float, str]] = []
        self._seen_clips: dict[str, Clip] = {}
        self._life: dict[str, tuple[float, Clip]] = {}  # clip id -> (read at, clip)
        # One read of a clip at a time, shared by the requests that want it meanwhile: a
        # burst of requests for a hot clip costs Redis one round trip, not one each.
        self._reading: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._scripts = {
            name: client.register_script(getattr(lua, name))
            for name in (
                "CREATE_STREAM",
                "DELETE_STREAM",
                "PUT_INIT",
                "REVISE_INIT",
                "SET_PLAYLIST",
                "SET_DEMUX",
                "RETIME",
                "RENDITION",
                "LADDER",
                "DVR_SEGMENTS",
                "SWEEP",
                "ADD_SEGMENT",
                "ADD_CLIP",
                "READ_CLIP",
                "EXPIRE_CLIP",
                "PUT_CLIP_MEDIA",
                "DEADLINE",
                "UPDATE_CLIP",
                "RECONCILE",
                "RESERVED",
                "OLDEST",
                "MAKE_ROOM",
                "TAKE_TIMERS",
            )
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        clock: Clock,
        memory_budget: int,
        limits: Limits | None = None,
        **options: Any,
    ) -> RedisStore:
        client, prefix = connect(url)
        return cls(client, clock, memory_budget, limits, prefix=prefix, **options)

    # ---- keys and calls --------------------------------------------------------------------

    def _base(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}"

    def _init_key(self, init_id: str) -> str:
        return f"{self.prefix}:init:{init_id}"

    def _where_key(self, clip_id: str) -> str:
        return f"{self.prefix}:where:{clip_id}"

    async def _run(self, name: str, stream_id: str, *args: Any) -> Any:
        """A script on the stream's slot: KEYS[1] routes it, ARGV[1] is the key base."""
        base = self._base(stream_id)
        return await self._scripts[name](keys=[f"{base}:acct"], args=[base, *args])

    def _ttl_ms(self, deadline: float) -> int:
        """Milliseconds from now (the packager's clock) to `deadline` plus the grace."""
        return max(1000, math.ceil((deadline + self.expiry_grace - self.clock()) * 1000))

    async def _accounts(self, fields: Sequence[str]) -> dict[str, list[int]]:
        """Per-stream counters of every stream that still counts."""
        members = sorted(m.decode() for m in await self.redis.smembers(self._accounts_key))
        if not members:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for sid in members:
            pipe.hmget(f"{self._base(sid)}:acct", list(fields))
        rows = await pipe.execute()
        return {sid: [int(v or 0) for v in row] for sid, row in zip(members, rows, strict=True)}

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    # ---- streams ---------------------------------------------------------------------------

    async def create_stream(self, info: StreamInfo) -> StreamInfo:
        if await self.redis.zcard(self._streams_key) >= self.limits.max_streams:
            raise LimitReached(f"at most {self.limits.max_streams} streams")
        made = await self._run(
            "CREATE_STREAM", info.id, stream_to_bytes(info), num(info.dvr_duration)
        )
        if self._text(made) == "exists":
            raise StreamExists(f"stream {info.id!r} already exists")
        order = await self.redis.incr(f"{self.prefix}:stream-seq")
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self._streams_key, {info.id: order})
        pipe.sadd(self._accounts_key, info.id)
        await pipe.execute()
        return info

    async def stream(self, stream_id: str) -> StreamInfo:
        data = await self.redis.hget(f"{self._base(stream_id)}:info", "json")
        if data is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream_from_bytes(data)

    async def _stream_ids(self) -> list[str]:
        return [m.decode() for m in await self.redis.zrange(self._streams_key, 0, -1)]

    async def streams(self) -> list[StreamInfo]:
        ids = await self._stream_ids()
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hget(f"{self._base(sid)}:info", "json")
        return [stream_from_bytes(d) for d in await pipe.execute() if d is not None]

    async def delete_stream(self, stream_id: str) -> None:
        """The stream and its DVR go; segments that clips hold stay until those clips expire."""
        if self._text(await self._run("DELETE_STREAM", stream_id)) == "nostream":
            raise StreamNotFound(f"no stream {stream_id!r}")
        await self.redis.zrem(self._streams_key, stream_id)

    async def ladder(self, stream_id: str) -> list[RenditionInfo]:
        """Renditions that have media, lowest first (by height, then bitrate)."""
        rows = await self._run("LADDER", stream_id)
        if isinstance(rows, bytes):
            raise StreamNotFound(f"no stream {stream_id!r}")
        out = []
        for name_b, init_b, size, dur, count, first_start, td, recent_raw, note in rows:
            name, init_id = name_b.decode(), init_b.decode()
            init = await self.init(init_id)
            video = init.video
            recent = [ref_from_bytes(stream_id, name, r) for r in recent_raw][::-1]
            duration = float(dur)
            out.append(
                RenditionInfo(
                    name=name,
                    init_id=init_id,
                    width=video.width if video else 0,
                    height=video.height if video else 0,
                    codecs=init.codecs,
                    bitrate=int(size) * 8 / duration if duration > 0 else 0.0,
                    segments=int(count),
                    start=float(first_start),
                    end=recent[0].end,
                    target_duration=max(1, int(td)),
                    peak_bitrate=math.ceil(max(s.bitrate for s in recent)),
                    frame_rate=next((s.frames / s.duration for s in recent if s.frames), None),
                    note=note.decode() or None,
                )
            )
        return sorted(out, key=lambda r: (r.height, r.bitrate, r.name))

    async def dvr_segments(
        self, stream_id: str, rendition: str, start: float | None = None, end: float | None = None
    ) -> list[SegmentRef]:
        """The DVR's segments of a rendition, oldest first; with a range, those whose span meets
        [start, end) by more than a program-date-time's millisecond of rounding."""
        ranged = start is not None and end is not None
        lo = num(start + OVERLAP_EPSILON) if start is not None else "0"
        hi = num(end - OVERLAP_EPSILON) if end is not None else "0"
        rows = await self._run("DVR_SEGMENTS", stream_id, rendition, int(ranged), lo, hi)
        if isinstance(rows, bytes):
            raise StreamNotFound(f"no stream {stream_id!r}")
        return [ref_from_bytes(stream_id, rendition, r) for r in rows]

    # ---- ingest side -----------------------------------------------------------------------

    async def rendition(self, stream_id: str, name: str) -> RenditionState | None:
        got = await self._run("RENDITION", stream_id, name)
        if got is None:
            return None
        fields, refs = got
        init_b, changed, next_seq, end_dts, digest, playlist, demux = fields[:7]
        resent, arrival, shift, source, note = fields[7:12]
        recent = tuple(ref_from_bytes(stream_id, name, r) for r in refs)
        init_id = init_b.decode() if init_b else None
        if init_id is not None:
            await self._keep_init(stream_id, name, init_id)
        return RenditionState(
            name=name,
            init_id=init_id,
            init_changed=changed == b"1",
            last=recent[-1] if recent else None,
            last_end_dts=int(end_dts) if end_dts else None,
            last_digest=digest.decode() if digest else None,
            playlist=playlist_from_bytes(playlist),
            recent=recent,
            next_seq=int(next_seq or 0),
            demux=demux.decode() if demux else None,
            init_resent=resent == b"1",
            last_arrival=float(arrival) if arrival else None,
            shift=tuple((int(t), int(v)) for t, v in orjson.loads(shift)) if shift else (),
            init_source=source.decode() if source else None,
            init_note=note.decode() if note else None,
        )

    async def _keep_init(self, stream_id: str, rendition: str, init_id: str) -> None:
        """The rendition's current init stays readable by id however long the encoder paused:
        its key may have expired with the last segment that used it; the rendition keeps a
        copy to put it back."""
        if self.cache.get(("init", init_id)) is not None:
            return
        if await self.redis.exists(self._init_key(init_id)):
            return
        data = await self.redis.hget(f"{self._base(stream_id)}:r:{rendition}", "init_data")
        if data is not None:
            stream = await self.stream(stream_id)
            ttl = self._ttl_ms(self.clock() + stream.dvr_duration + 4 * 3600)
            await self.redis.set(self._init_key(init_id), data, px=ttl, nx=True)

    async def put_init(
        self, stream_id: str, rendition: str, init: InitSegment, init_id: str
    ) -> bool:
        """Make `init` the rendition's current one (created if new); True if it changed. The
        init a revision was made from (`revise_init`) is the current one re-sent."""
        await self._put_init_key(stream_id, init_id, init.data)
        for _ in range(8):
            held, unpinned = await self._held_elsewhere(stream_id)
            result = self._text(
                await self._run(
                    "PUT_INIT",
                    stream_id,
                    rendition,
                    init_id,
                    init.data,
                    self.limits.max_renditions,
                    self.budget,
                    held,
                    unpinned,
                )
            )
            if result == "nostream":
                raise StreamNotFound(f"no stream {stream_id!r}")
            if result == "limit":
                raise LimitReached(
                    f"stream {stream_id!r} has {self.limits.max_renditions} renditions already"
                )
            if result == "budget":
                raise BudgetExceeded(
                    f"init of {len(init.data)} bytes does not fit the memory budget of "
                    f"{self.budget} bytes beside what clips hold"
                )
            if result.startswith("room:"):  # this stream's DVR is empty: others give way
                await self._make_room_elsewhere(stream_id, int(result[5:]))
                continue
            self.cache.put(("init", init_id), init, 2 * len(init.data))
            return result == "changed"
        raise BudgetExceeded(f"init of {len(init.data)} bytes does not fit the memory budget")

    async def put_clip_media(self, stream_id: str, clip_id: str, name: str, data: bytes) -> None:
        """Keep bytes a clip made (its re-encoded segments) with it until it expires: held by
        that clip alone, so counted as its pinned bytes; dropped if the clip is gone."""
        for _ in range(8):
            held, unpinned = await self._held_elsewhere(stream_id)
            result = self._text(
                await self._run(
                    "PUT_CLIP_MEDIA", stream_id, clip_id, name, data, self.budget, held, unpinned
                )
            )
            if result in ("ok", "gone"):
                return
            if result == "budget":
                raise BudgetExceeded(
                    f"{len(data)} bytes made for clip {clip_id} do not fit the memory budget "
                    f"of {self.budget} bytes beside what clips hold"
                )
            await self._make_room_elsewhere(stream_id, int(result[5:]))
        raise BudgetExceeded(f"{len(data)} bytes made for clip {clip_id} do not fit the budget")

    async def clip_media(self, stream_id: str, clip_id: str, name: str) -> bytes | None:
        data: bytes | None = await self.redis.hget(
            f"{self._base(stream_id)}:clip:{clip_id}:media", name
        )
        return data

    async def _held_elsewhere(self, stream_id: str) -> tuple[int, int]:
        """Bytes the other streams hold against the budget (DVR, clip-only, inits), and how
        many of them their DVRs could give up (not pinned by a clip)."""
        others = await self._accounts(("dvr_bytes", "clip_only", "pinned", "init_bytes"))
        others.pop(stream_id, None)
        held = sum(d + c + i for d, c, _, i in others.values())
        unpinned = sum(d - (p - c) for d, c, p, _ in others.values())
        return held, unpinned

    async def revise_init(
        self,
        stream_id: str,
        rendition: str,
        current_id: str,
        init: InitSegment,
        init_id: str,
        *,
        source_id: str | None,
        note: str | None,
        changed: bool = False,
    ) -> bool:
        if init_id != current_id:
            await self._put_init_key(stream_id, init_id, init.data)
            self.cache.put(("init", init_id), init, 2 * len(init.data))
        result = self._text(
            await self._run(
                "REVISE_INIT",
                stream_id,
                rendition,
                current_id,
                init_id,
                init.data if init_id != current_id else b"",
                source_id or "",
                note or "",
                int(changed),
            )
        )
        if result == "nostream":
            raise StreamNotFound(f"no stream {stream_id!r}")
        return result == "ok"

    async def _put_init_key(self, stream_id: str, init_id: str, data: bytes) -> None:
        """An init's bytes by id, shared by content. Long enough for any segment or clip that
        will use it; each raises it (GT) again."""
        stream = await self.stream(stream_id)
        ttl = self._ttl_ms(self.clock() + stream.dvr_duration + 4 * 3600)
        key = self._init_key(init_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, data, px=ttl, nx=True)
        pipe.pexpire(key, ttl, gt=True)
        await pipe.execute()

    async def set_playlist(
        self, stream_id: str, rendition: str, entries: dict[str, PlaylistEntry]
    ) -> None:
        result = self._text(
            await self._run(
                "SET_PLAYLIST",
                stream_id,
                rendition,
                playlist_to_bytes(entries),
                self.limits.max_renditions,
            )
        )
        if result == "nostream":
            raise StreamNotFound(f"no stream {stream_id!r}")
        if result == "limit":
            raise LimitReached(f"stream {stream_id!r} has {self.limits.max_renditions} renditions")

    async def set_demux_state(self, stream_id: str, rendition: str, state: str) -> None:
        if self._text(await self._run("SET_DEMUX", stream_id, rendition, state)) == "nostream":
            raise StreamNotFound(f"no stream {stream_id!r}")

    async def retime(self, key: SegmentKey, start: float) -> None:
        """A late program-date-time gives a stored segment its encoder's clock. Clips keep the
        refs they already took."""
        base = self._base(key.stream_id)
        data = await self.redis.hget(f"{base}:seg:{key.rendition}:{key.seq}", "ref")
        if data is None:
            return
        ref = dataclasses.replace(
            ref_from_bytes(key.stream_id, key.rendition, data), start=start, timing=Timing.PDT
        )
        await self._run(
            "RETIME",
            key.stream_id,
            key.rendition,
            key.seq,
            ref_to_bytes(ref),
            num(ref.start),
            num(ref.end),
        )

    async def next_seq(self, stream_id: str, rendition: str) -> int:
        await self.stream(stream_id)
        seq = await self.redis.hget(f"{self._base(stream_id)}:r:{rendition}", "next_seq")
        return int(seq or 0)

    async def add_segment(
        self,
        ref: SegmentRef,
        data: bytes,
        tables: PreparedSegment,
        end_dts: int,
        digest: str,
        shift: tuple[tuple[int, int], ...] = (),
    ) -> list[Clip]:
        """Put a segment into the DVR: roll the window, keep the budget, feed growing clips
        (all one script). Returns the clips this segment completed."""
        sid = ref.key.stream_id
        stream = await self.stream(sid)
        keep_until = ref.end + stream.dvr_duration
        await self.redis.pexpire(self._init_key(ref.init_id), self._ttl_ms(keep_until), gt=True)
        args = [
            ref.key.rendition,
            ref.key.seq,
            ref_to_bytes(ref),
            num(ref.start),
            num(ref.end),
            num(ref.duration),
            ref.size,
            ref.cost,
            ref.init_id,
            max(1, math.ceil(ref.duration - 1e-3)),
            end_dts,
            digest,
            data,
            self._ttl_ms(keep_until),
            num(self.expiry_grace),
            tables.to_bytes(),
            orjson.dumps([list(pair) for pair in shift]),
        ]
        for _ in range(8):
            held, unpinned = await self._held_elsewhere(sid)
            now = self.clock()
            got = await self._run("ADD_SEGMENT", sid, num(now), self.budget, held, unpinned, *args)
            status = self._text(got[0])
            if status == "ok":
                completed = [await self._read_clip(sid, c.decode()) for c in got[1:]]
                self.cache.put(("data", ref.key), data, len(data))
                self.cache.put(("tables", ref.key), tables, tables.nbytes)
                return [c for c in completed if c is not None]
            if status == "nostream":
                raise StreamNotFound(f"no stream {sid!r}")
            if status == "budget":
                raise BudgetExceeded(
                    f"segment of {ref.cost} bytes does not fit the memory budget of "
                    f"{self.budget} bytes: {int(got[1])} bytes of this stream are held by clips"
                )
            # 'room': this stream's DVR is empty and others must give up their oldest.
            await self._make_room_elsewhere(sid, int(got[1]))
        raise BudgetExceeded(f"segment of {ref.cost} bytes does not fit the memory budget")

    async def _make_room_elsewhere(self, sid: str, need: int) -> None:
        """Other streams give up their oldest DVR segments: the stream whose DVR begins
        earliest first (the in-memory store takes the single oldest segment each time)."""
        firsts = []
        for other in await self._stream_ids():
            if other != sid:
                start = await self._run("OLDEST", other)
                if start is not None:
                    firsts.append((float(start), other))
        for _, other in sorted(firsts):
            need = int(await self._run("MAKE_ROOM", other, need))
            if need <= 0:
                return

    async def sweep(self) -> None:
        """Segments that ended more than dvr_duration ago leave every DVR."""
        now = num(self.clock())
        for sid in await self._stream_ids():
            await self._run("SWEEP", sid, now)

    # ---- clips -----------------------------------------------------------------------------

    async def add_clip(self, clip: Clip) -> Clip:
        """Keep a new clip: check the count limits and the budget, pin its segments (one
        script: a segment gone meanwhile refuses with SegmentGone), schedule its timers."""
        sid = clip.stream_id
        others = await self._accounts(("clips", "pinned", "growing"))
        others.pop(sid, None)
        committed = sum(p for _, p, _ in others.values())
        growing = [o for o, (_, _, g) in others.items() if g > 0]
        for other in growing:
            committed += int(await self._run("RESERVED", other))
        args: list[Any] = [
            clip.id,
            clip_head_to_bytes(clip),
            clip.state.value,
            num(clip.completed_at) if clip.completed_at is not None else "",
            num(clip.requested_start),
            num(clip.requested_end),
            num(clip.expiration),
            ",".join(cr.source for cr in clip.renditions),
            num(clip.created_at),
            self._ttl_ms(clip.expiration),
            self.limits.max_clips_per_stream,
            self.limits.max_clips,
            sum(c for c, _, _ in others.values()),
            self.budget,
            committed,
            len(clip.renditions),
        ]
        for cr in clip.renditions:
            args.append(len(cr.segments))
            args.extend(f"{s.key.rendition}:{s.key.seq}" for s in cr.segments)
            args.extend(ref_to_bytes(s) for s in cr.segments)
        got = await self._run("ADD_CLIP", sid, *args)
        status = self._text(got[0])
        if status == "total":
            raise LimitReached(f"at most {self.limits.max_clips} clips at once")
        if status == "per_stream":
            raise LimitReached(f"at most {self.limits.max_clips_per_stream} clips per stream")
        if status == "gone":
            raise SegmentGone("a segment of the cut left the DVR meanwhile")
        if status == "budget":
            raise BudgetExceeded(
                f"the clip would hold {int(got[1])} more bytes; clips already hold "
                f"{int(got[2])} of the {self.budget}-byte memory budget"
            )
        timers = {f"{_EXPIRE}|{sid}|{clip.id}": clip.expiration}
        if clip.state is ClipState.GROWING:
            deadline = clip.requested_end + self.limits.completion_grace
            timers[f"{_DEADLINE}|{sid}|{clip.id}"] = deadline
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._where_key(clip.id), sid, px=self._ttl_ms(clip.expiration))
        pipe.zadd(self._due, timers)
        await pipe.execute()
        self._note(clip)
        if clip.complete:  # its manifest never changes: the first GET, right after, needs no read
            self._keep_manifest(clip)
            self._life[clip.id] = (time.monotonic(), clip)
        return clip

    def _decode_clip(self, sid: str, raw: list[Any]) -> Clip:
        flat = raw[0]
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
        head = fields[b"head"]
        sources = fields[b"srcs"].decode().split(",")
        segments = [
            tuple(ref_from_bytes(sid, src, r) for r in refs)
            for src, refs in zip(sources, raw[1:], strict=True)
        ]
        return clip_from_parts(head, fields, segments)

    async def _read_clip(self, sid: str, clip_id: str) -> Clip | None:
        raw = await self._run("READ_CLIP", sid, clip_id)
        return self._decode_clip(sid, raw) if raw else None

    def _note(self, clip: Clip) -> None:
        """Remember that this process knows the clip, to let go of it at its expiration."""
        if clip.id in self._seen_clips:
            return
        bare = tuple(dataclasses.replace(cr, segments=()) for cr in clip.renditions)
        self._seen_clips[clip.id] = dataclasses.replace(clip, renditions=bare)
        heapq.heappush(self._seen, (clip.expiration, clip.id))

    async def clip(self, stream_id: str, clip_id: str) -> Clip:
        """A live clip of that stream; an expired one is gone even before its timer fires."""
        now = self.clock()
        cached: Clip | None = self.cache.get(("clip", clip_id))
        if cached is not None and cached.stream_id == stream_id:
            if cached.expiration <= now:
                raise ClipNotFound(f"no clip {clip_id!r} on stream {stream_id!r}")
            life = self._life.get(clip_id)
            if life is not None and time.monotonic() - life[0] < LIFE_FRESH:
                return life[1]
            fresh: Clip = await self._once(("life", clip_id), self._read_life(cached))
            return fresh
        read = self._read_clip(stream_id, clip_id)
        clip: Clip | None = await self._once(("clip", f"{stream_id}/{clip_id}"), read)
        if clip is None or clip.expiration <= now:
            raise ClipNotFound(f"no clip {clip_id!r} on stream {stream_id!r}")
        if clip.complete:
            self._keep_manifest(clip)
        self._note(clip)
        return clip

    def _keep_manifest(self, clip: Clip) -> None:
        refs = sum(len(cr.segments) for cr in clip.renditions)
        self.cache.put(("clip", clip.id), clip, 1000 + refs * _MANIFEST_REF_COST)

    async def _once(self, key: tuple[str, str], read: Coroutine[Any, Any, Any]) -> Any:
        """Await `read`, or the same read another request started and has not finished."""
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(read)
            self._reading[key] = pending
            pending.add_done_callback(lambda _: self._reading.pop(key, None))
        else:
            read.close()
        return await asyncio.shield(pending)

    async def _read_life(self, cached: Clip) -> Clip:
        """A complete clip's life fields, fresh from Redis, on its cached manifest."""
        state, video_id, vod_error = await self.redis.hmget(
            f"{self._base(cached.stream_id)}:clip:{cached.id}", ["state", "video_id", "vod_error"]
        )
        if state is None:
            self.cache.drop(("clip", cached.id))
            raise ClipNotFound(f"no clip {cached.id!r} on stream {cached.stream_id!r}")
        fresh = dataclasses.replace(
            cached,
            state=ClipState(state.decode()),
            video_id=int(video_id) if video_id else None,
            vod_error=vod_error.decode() if vod_error else None,
        )
        self._life[cached.id] = (time.monotonic(), fresh)
        return fresh

    async def clips(self, stream_id: str) -> list[Clip]:
        ids = await self.redis.zrange(f"{self._base(stream_id)}:clips", 0, -1)
        out = []
        for cid in ids:
            try:
                out.append(await self.clip(stream_id, cid.decode()))
            except ClipNotFound:
                continue
        return sorted(out, key=lambda c: c.created_at)  # stable: cut order among equals

    async def all_clips(self) -> list[Clip]:
        out = []
        for sid in sorted(m.decode() for m in await self.redis.smembers(self._accounts_key)):
            out.extend(await self.clips(sid))
        return out

    async def update_clip(
        self,
        clip_id: str,
        state: ClipState,
        *,
        video_id: int | None = None,
        vod_error: str | None = None,
    ) -> Clip:
        """Move a clip along its life (the VOD steps); the transition table says what may,
        checked in the script against the state Redis holds."""
        sid_b = await self.redis.get(self._where_key(clip_id))
        if sid_b is None:
            raise ClipNotFound(f"no clip {clip_id!r}")
        sid = sid_b.decode()
        allowed = [s.value for s, nexts in TRANSITIONS.items() if state in nexts]
        got = await self._run(
            "UPDATE_CLIP",
            sid,
            clip_id,
            state.value,
            "" if video_id is None else video_id,
            vod_error or "",
            *allowed,
        )
        status = self._text(got[0])
        self._life.pop(clip_id, None)
        if status == "notfound":
            raise ClipNotFound(f"no clip {clip_id!r}")
        if status == "invalid":
            raise InvalidTransition(f"a {self._text(got[1])} clip cannot become {state.value}")
        clip = await self._read_clip(sid, clip_id)
        if clip is None:
            raise ClipNotFound(f"no clip {clip_id!r}")
        return clip

    # ---- timers ----------------------------------------------------------------------------

    async def hold_save(self, clip_id: str, until: float | None) -> None:
        sid_b = await self.redis.get(self._where_key(clip_id))
        if sid_b is None:
            return
        member = f"{_SAVE}|{sid_b.decode()}|{clip_id}"
        pipe = self.redis.pipeline(transaction=False)
        if until is None:
            pipe.zrem(self._due, member)
            pipe.zrem(self._leased, member)
        else:
            pipe.zadd(self._due, {member: until})
        await pipe.execute()

    async def next_deadline(self) -> float | None:
        first = await self.redis.zrange(self._due, 0, 0, withscores=True)
        due = float(first[0][1]) if first else None
        if self._seen:
            local = self._seen[0][0]
            due = local if due is None else min(due, local)
        return due

    async def fire_due(self) -> list[Timer]:
        """Take the due timers (leased: one process each) and fire them: completion deadlines
        complete growing clips with what they have, expiries free clips. Also reports clips
        this process had read whose expiry another process ran, so local caches let go."""
        now = self.clock()
        taken = await self._scripts["TAKE_TIMERS"](
            keys=[self._due, self._leased],
            args=[num(now), num(now + self.timer_lease), TIMERS_PER_TAKE],
        )
        fired: list[Timer] = []
        for member in taken:
            kind, sid, cid = member.decode().split("|", 2)
            if kind == _EXPIRE:
                raw = await self._run("EXPIRE_CLIP", sid, cid)
                if raw:
                    clip = self._decode_clip(sid, raw)
                    fired.append(
                        Timer(TimerKind.EXPIRE, dataclasses.replace(clip, state=ClipState.EXPIRED))
                    )
                else:
                    # Redis expired it while no process was up: recount what it held.
                    await self._run("RECONCILE", sid, num(now))
                await self.redis.delete(self._where_key(cid))
                self.cache.drop(("clip", cid))
                self._life.pop(cid, None)
            elif kind == _SAVE:
                held = await self._read_clip(sid, cid)
                if held is not None and held.state is ClipState.SAVING:
                    fired.append(Timer(TimerKind.SAVE, held))
            else:
                note = "the ingest stopped before the clip's end"
                if await self._run("DEADLINE", sid, cid, num(now), note):
                    done = await self._read_clip(sid, cid)
                    if done is not None:
                        fired.append(Timer(TimerKind.DEADLINE, done))
            await self.redis.zrem(self._leased, member)
        expired = {t.clip.id for t in fired if t.kind is TimerKind.EXPIRE}
        while self._seen and self._seen[0][0] <= now:
            _, cid = heapq.heappop(self._seen)
            seen = self._seen_clips.pop(cid, None)
            self.cache.drop(("clip", cid))
            self._life.pop(cid, None)
            if seen is not None and cid not in expired:
                fired.append(
                    Timer(TimerKind.EXPIRE, dataclasses.replace(seen, state=ClipState.EXPIRED))
                )
        return fired

    # ---- reading ---------------------------------------------------------------------------

    async def init(self, init_id: str) -> InitSegment:
        cached: InitSegment | None = self.cache.get(("init", init_id))
        if cached is not None:
            return cached
        data = await self.redis.get(self._init_key(init_id))
        if data is None:
            raise NotFound(f"no init segment {init_id}")
        init = parse_init(data)
        self.cache.put(("init", init_id), init, 2 * len(data))
        return init

    async def segment_data(self, key: SegmentKey) -> bytes:
        cached: bytes | None = self.cache.get(("data", key))
        if cached is not None:
            return cached
        data = await self.redis.get(f"{self._base(key.stream_id)}:data:{key.rendition}:{key.seq}")
        if data is None:
            raise NotFound(f"segment {key.rendition}/{key.seq} of {key.stream_id!r} is gone")
        self.cache.put(("data", key), data, len(data))
        return bytes(data)

    async def segment_tables(self, key: SegmentKey) -> PreparedSegment:
        """The segment's prepared sample tables (bytes in Redis beside its data), cached."""
        return (await self.segments_tables((key,)))[0]

    async def segments_tables(self, keys: Sequence[SegmentKey]) -> list[PreparedSegment]:
        """Cached ones from the cache, the others by MGET, MGET_KEYS at a time and one
        stream at a time (a stream's keys share a hash slot, which a cluster's MGET needs):
        one round trip for an hour's MP4, not one per segment."""
        got: list[PreparedSegment | None] = [self.cache.get(("tables", key)) for key in keys]
        by_stream: dict[str, list[int]] = {}
        for i, tables in enumerate(got):
            if tables is None:
                by_stream.setdefault(keys[i].stream_id, []).append(i)
        batches = [
            (stream_id, missing[at : at + MGET_KEYS])
            for stream_id, missing in by_stream.items()
            for at in range(0, len(missing), MGET_KEYS)
        ]
        for stream_id, batch in batches:
            base = self._base(stream_id)
            names = [f"{base}:tables:{keys[i].rendition}:{keys[i].seq}" for i in batch]
            for i, raw in zip(batch, await self.redis.mget(names), strict=True):
                key = keys[i]
                if raw is None:
                    raise NotFound(
                        f"segment {key.rendition}/{key.seq} of {key.stream_id!r} is gone"
                    )
                tables = got[i] = PreparedSegment.from_bytes(raw)
                self.cache.put(("tables", key), tables, tables.nbytes)
        return [tables for tables in got if tables is not None]

    def reserve_upload(self, size: int) -> None:
        """Request bodies in flight are this process's memory, with their own bound (the
        store's budget is Redis's): past it, 507 until some finish."""
        if self._uploading + size > self.upload_limit:
            raise BudgetExceeded(
                f"{self._uploading} bytes of uploads are in flight here; "
                f"{size} more would pass this process's bound of {self.upload_limit}"
            )
        self._uploading += size

    def release_upload(self, size: int) -> None:
        self._uploading -= size

    async def stats(self) -> StoreStats:
        accounts = await self._accounts((*_ACCT, *_ACCT_MORE))
        total = [
            sum(row[i] for row in accounts.values()) for i in range(len(_ACCT) + len(_ACCT_MORE))
        ]
        dvr, clip_only, pinned, segments, evicted, expired, clips, growing, inits = total
        return StoreStats(
            dvr_bytes=dvr,
            clip_only_bytes=clip_only,
            pinned_bytes=pinned,
            budget=self.budget,
            streams=await self.redis.zcard(self._streams_key),
            clips=clips,
            growing_clips=growing,
            dvr_segments=segments,
            evicted_segments=evicted,
            expired_clips=expired,
            uploading_bytes=self._uploading,
            init_bytes=inits,
        )

    async def close(self) -> None:
        await self.redis.aclose()


def shared_secret(url: str, name: str, proposal: str) -> str:
    """The deployment's secret `name`: `proposal` if none was agreed yet (SET NX), else the
    one agreed; every process and host reading the same Redis gets the same value."""
    plain, cluster, prefix = parse_url(url)
    client: Any = (
        sync_redis.cluster.RedisCluster.from_url(plain)
        if cluster
        else sync_redis.Redis.from_url(plain)
    )
    try:
        key = f"{prefix}:secret:{name}"
        client.set(key, proposal, nx=True)
        value: bytes = client.get(key)
        return value.decode()
    finally:
        client.close()
