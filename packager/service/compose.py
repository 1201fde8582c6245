"""The composition root: every service of a packager process, built from its settings in one
place. http/ only maps requests onto these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from packager.clock import Clock
from packager.config import STORE_SCHEMES, Config
from packager.service.clips import ClipService
from packager.service.frames import FrameCuts
from packager.service.ingest import Ingest
from packager.service.live import LivePlaylists
from packager.service.mp4 import Mp4Builds
from packager.service.playlists import Playlists
from packager.service.poster import Posters
from packager.service.timers import Timers
from packager.service.vod import VideoSaver
from packager.store.base import Limits, Store
from packager.store.memory import MemoryStore
from packager.store.videos import VideoLibrary


@dataclass
class Services:
    config: Config
    store: Store
    ingest: Ingest
    clips: ClipService
    mp4: Mp4Builds
    playlists: Playlists
    frames: FrameCuts
    timers: Timers
    videos: VideoLibrary
    saver: VideoSaver
    live: LivePlaylists
    posters: Posters

    @property
    def clock(self) -> Clock:
        return self.store.clock


def build_store(config: Config, clock: Clock) -> Store:
    """The in-memory store, or a Redis one every process shares (`--store redis://...`)."""
    limits = Limits(completion_grace=config.completion_grace)
    if config.store == "memory":
        return MemoryStore(clock, config.memory_budget, limits)
    if config.store.startswith(STORE_SCHEMES):
        from packager.store.redis import RedisStore  # only a Redis deployment imports redis-py

        return RedisStore.from_url(
            config.store, clock, config.memory_budget, limits, cache_size=config.cache_size
        )
    raise ValueError(f"unknown store {config.store!r}: memory, redis://... or redis+cluster://...")


def build_library(config: Config) -> VideoLibrary:
    """VOD files under the data dir; with a Redis store, their index and ids are shared."""
    if config.store == "memory":
        return VideoLibrary(config.data_dir)
    from packager.store.shared_videos import SharedVideoLibrary

    return SharedVideoLibrary(config.data_dir, config.store)


def build_services(
    config: Config,
    clock: Clock,
    store: Store | None = None,
    observe_build: Callable[[float], None] = lambda seconds: None,
) -> Services:
    store = store or build_store(config, clock)
    ingest = Ingest(
        store, config.dvr_duration, config.ingest_key, anonymous=config.anonymous_ingest
    )
    clips = ClipService(store, config.dvr_duration)
    frames = FrameCuts(store)
    mp4 = Mp4Builds(store, observe_build, config.max_concurrent_remuxes, frames)
    playlists = Playlists(store, frames)
    timers = Timers(store)
    videos = build_library(config)
    saver = VideoSaver(store, videos, mp4)
    for complete in (ingest.on_complete, clips.on_complete, timers.on_complete):
        complete.append(mp4.prebuild)
        complete.append(saver.on_complete)
    clips.settle = mp4.settle
    # A frame-accurate clip's re-encodes start when it is cut, and when its tail arrives.
    clips.on_create.append(frames.start)
    for complete in (ingest.on_complete, timers.on_complete):
        complete.append(frames.start)
    timers.on_expire.append(mp4.forget)
    timers.on_expire.append(playlists.forget)
    timers.on_expire.append(frames.forget)
    live = LivePlaylists(store)
    posters = Posters(store)
    timers.on_expire.append(posters.forget)
    return Services(
        config, store, ingest, clips, mp4, playlists, frames, timers, videos, saver, live, posters
    )
