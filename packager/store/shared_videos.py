"""The VOD library of a scaled-out deployment: the index and the id counter in Redis, the
files in the data dir (which every host must share: NFS or the like).

Every process keeps `VideoLibrary`'s in-memory index, so lookups stay synchronous and cheap;
it follows Redis, where every write and delete is recorded and a version number bumped:
`refresh()` (run every REFRESH seconds, in a thread) reloads the index when the version
moved. Ids come from one Redis counter, so two processes never hand out the same one.
Blocking calls throughout: the library already runs its disk work in threads.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from packager.store.redis import parse_url
from packager.store.videos import META, SLUG, Video, VideoFile, VideoLibrary

log = logging.getLogger(__name__)

REFRESH = 0.5  # seconds between looks at the shared index's version
STALE_PARTIAL = 3600.0  # a half-written video this old is a crash's leftover, not a writer's

# The counter starts past every id already used (saved videos, the old on-disk counter).
_RAISE_TO = "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end"


class SharedVideoLibrary(VideoLibrary):
    def __init__(self, data_dir: Path, url: str) -> None:
        super().__init__(data_dir)
        plain, cluster, prefix = parse_url(url)
        self._redis: Any = (
            redis.cluster.RedisCluster.from_url(plain) if cluster else redis.Redis.from_url(plain)
        )
        tag = f"{prefix}:{{videos}}"  # one slot: the three keys change together
        self._index_key = f"{tag}:index"
        self._seq_key = f"{tag}:seq"
        self._version_key = f"{tag}:version"
        self._version: bytes | None = None

    def load(self) -> None:
        """Adopt what the data dir holds into the shared index, then read the index. A
        partial directory is another process's write under way unless it is old."""
        self.root.mkdir(parents=True, exist_ok=True)
        highest = self._read_counter() - 1
        for entry in sorted(self.root.iterdir()):
            if entry.name.endswith(".partial"):
                if time.time() - entry.stat().st_mtime > STALE_PARTIAL:
                    shutil.rmtree(entry, ignore_errors=True)
                continue
            if not (SLUG.fullmatch(entry.name) and (entry / META).is_file()):
                continue
            try:
                data = json.loads((entry / META).read_text())
                if isinstance(data.get("id"), str):
                    self._upgrade(entry, data)  # takes an id from the shared counter
                    video = self._by_slug.get(entry.name)
                    if video is None:
                        continue
                else:
                    video = Video.from_json(data)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("unreadable video %s: %s", entry.name, exc)
                continue
            highest = max(highest, video.id)
            if self._redis.hsetnx(self._index_key, str(video.id), json.dumps(video.to_json())):
                self._redis.incr(self._version_key)
        self._redis.eval(_RAISE_TO, 1, self._seq_key, highest)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Follow the shared index: reload it if another process changed it."""
        version = self._redis.get(self._version_key)
        if version == self._version and not force:
            return
        raw: dict[bytes, bytes] = self._redis.hgetall(self._index_key)
        videos = [Video.from_json(json.loads(v)) for v in raw.values()]
        self.videos, self._by_slug, self._by_clip = {}, {}, {}
        for video in sorted(videos, key=lambda v: v.id):
            self._index(video)
        self._version = version

    def reserve(self) -> tuple[int, str]:
        """The next id from the shared counter (Redis keeps it: the on-disk one is each
        process's own and would hand the same id to two)."""
        return int(self._redis.incr(self._seq_key)), secrets.token_hex(16)

    def write(
        self, video: Video, bodies: Iterable[tuple[VideoFile, Iterator[memoryview]]]
    ) -> Video:
        done = super().write(video, bodies)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._index_key, str(done.id), json.dumps(done.to_json()))
        pipe.incr(self._version_key)
        pipe.execute()
        return done

    def delete(self, video_id: int) -> bool:
        self.refresh()
        deleted = super().delete(video_id)
        if deleted:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hdel(self._index_key, str(video_id))
            pipe.incr(self._version_key)
            pipe.execute()
        return deleted

    def close(self) -> None:
        self._redis.close()
