"""Shared test fixtures: the committed ladder, a manual clock, services fed like a live encoder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import pytest

from packager.clock import ManualClock
from packager.config import Config
from packager.demo import DemoFeed, RecordedRendition, load_ladder
from packager.service.clips import ClipService
from packager.service.compose import Services, build_services
from packager.store.base import Limits, Store
from packager.store.memory import MemoryStore
from packager.store.redis import RedisStore
from tests.store.redis_support import RedisServer, redis_server

__all__ = ["redis_server"]  # the session's redis-server, a fixture for every suite

LADDER_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "ladder"
T0 = 1_800_000_000.0  # a fixed "now" for tests with a manual clock


@pytest.fixture(scope="session")
def ladder() -> list[RecordedRendition]:
    return load_ladder(LADDER_DIR)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    return exe


@dataclass(frozen=True)
class Hev1:
    """libx265 HLS fMP4 tagged `hev1`, as ffmpeg pushes it: the init and 1 s segments."""

    init: bytes
    segments: list[bytes]


@pytest.fixture(scope="session")
def hev1(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Hev1]:
    """2 s of 320x180 each, encoded once a session (about a second in all):
    - in_band: parameter sets in hvcC (incomplete) and in every keyframe's sample;
    - entry_only: ffmpeg's default, in hvcC only;
    - other_sets: another SPS and PPS under the same ids (ultrafast's 32x32 coding tree
      units made 16x16);
    - with_audio: in_band with an AAC track beside."""
    from tests.media.real_media import hevc_hls

    tmp = tmp_path_factory.mktemp("hev1")
    made = {
        "in_band": hevc_hls(ffmpeg_exe, tmp / "in_band", x265="repeat-headers=1"),
        "entry_only": hevc_hls(ffmpeg_exe, tmp / "entry_only"),
        "other_sets": hevc_hls(ffmpeg_exe, tmp / "other", x265="repeat-headers=1:ctu=16"),
        "with_audio": hevc_hls(ffmpeg_exe, tmp / "audio", x265="repeat-headers=1", audio=True),
    }
    return {name: Hev1(init, segments) for name, (init, segments) in made.items()}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def feed_past(feed: DemoFeed, clock: ManualClock, count: int) -> float:
    """Push `count` replay segments that all ended by now; returns the first one's start."""
    origin = clock() - sum(feed.durations[k % len(feed.durations)] for k in range(count))
    for k in range(count):
        await feed.push(k, feed.segment_start(k, origin))
    return origin


MakeStore = Callable[..., Store]


BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
async def make_store(
    request: pytest.FixtureRequest, clock: ManualClock
) -> AsyncIterator[MakeStore]:
    """A new, empty store of the backend under test, with the given budget and limits: every
    suite built on it runs against the in-memory store and against a real Redis (flushed
    first)."""
    made: list[Store] = []
    url = None
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        with server.client() as admin:
            admin.flushall()
        url = server.url

    def make(budget: int = 1 << 30, **limits: float) -> Store:
        store: Store
        if url is None:
            store = MemoryStore(clock, budget, Limits(**limits))  # type: ignore[arg-type]
        else:
            store = RedisStore.from_url(url, clock, budget, Limits(**limits))  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@dataclass
class Fed:
    """The services over a store, and the demo feed that filled stream 'demo'."""

    services: Services
    feed: DemoFeed
    origin: float  # start of the first fed segment

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def clips(self) -> ClipService:
        return self.services.clips

    async def push(self, k: int) -> None:
        await self.feed.push(k, self.feed.segment_start(k, self.origin))


MakeFed = Callable[..., Awaitable[Fed]]


@pytest.fixture
def make_fed(
    make_store: MakeStore,
    ladder: list[RecordedRendition],
    clock: ManualClock,
    tmp_path: Path,
) -> MakeFed:
    """Services whose stream 'demo' holds `segments` replayed segments ending now."""

    async def make(
        segments: int = 15, dvr: float = 3600.0, budget: int = 1 << 30, **limits: float
    ) -> Fed:
        store = make_store(budget, **limits)
        config = Config(
            api_keys=("test-key",), memory_budget=budget, data_dir=tmp_path, dvr_duration=dvr
        )
        services = build_services(config, clock, store)
        feed = DemoFeed(services.ingest, ladder, clock)
        origin = await feed_past(feed, clock, segments) if segments else clock()
        return Fed(services, feed, origin)

    return make


@pytest.fixture
async def fed(make_fed: MakeFed) -> Fed:
    """Stream 'demo' holding 30 s (15 segments) of the ladder, ending now."""
    return await make_fed()


@pytest.fixture(scope="session")
def ladder_bytes(ladder: list[RecordedRendition]) -> int:
    """Bytes of one 12 s loop of the whole ladder: a budget for about 6 segments a rendition."""
    return sum(len(s) for r in ladder for s in r.segments)
